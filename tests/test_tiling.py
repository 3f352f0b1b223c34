"""Geometry of tiled embeddings (napari_sam.tiling): windows, cores, depth, choose_tiling."""

import numpy as np
import pytest

from napari_sam.tiling import AUTO_FACTOR, Tiling, choose_tiling, default_halo

SHAPES = [(1024, 1024), (1000, 777), (256, 900), (257, 256), (100, 80), (4096, 300)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("window, halo", [(256, 32), (256, 0), (64, 20), (1024, 128)])
def test_cores_partition_the_image(shape, window, halo):
    t = Tiling(shape, window, halo)
    count = np.zeros(shape, np.int32)
    for w in t.windows:
        r0, c0, r1, c1 = w.core
        assert r1 > r0 and c1 > c0
        count[r0:r1, c0:c1] += 1
    assert (count == 1).all()
    assert len(t.windows) == len(t) == t.grid_shape[0] * t.grid_shape[1]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("window, halo", [(256, 32), (64, 20), (1024, 128)])
def test_every_core_pixel_is_halo_inside_its_window(shape, window, halo):
    t = Tiling(shape, window, halo)
    h, w = shape
    for win in t.windows:
        r0, c0, r1, c1 = win.outer
        assert 0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w
        assert r1 - r0 <= window and c1 - c0 <= window
        cr0, cc0, cr1, cc1 = win.core
        assert r0 <= cr0 and cr1 <= r1 and c0 <= cc0 and cc1 <= c1
        assert r0 == 0 or cr0 - r0 >= halo
        assert c0 == 0 or cc0 - c0 >= halo
        assert r1 == h or r1 - cr1 >= halo
        assert c1 == w or c1 - cc1 >= halo
        # depth agrees: a core pixel is >= halo from every edge that is not the image border
        d = t.depth(win)
        assert d.shape == win.shape
        core = d[cr0 - r0:cr1 - r0, cc0 - c0:cc1 - c0]
        assert core.min() >= halo


@pytest.mark.parametrize("length, window, halo", [(1024, 256, 32), (4096, 1024, 128),
                                                  (1000, 256, 32), (300, 64, 8)])
def test_window_starts_are_evenly_spaced_and_cover_the_axis(length, window, halo):
    t = Tiling((length, 10), window, halo)
    starts = sorted({w.outer[0] for w in t.windows})
    assert starts[0] == 0 and starts[-1] + window == length
    steps = np.diff(starts)
    assert steps.max() - steps.min() <= 1  # evenly spaced up to rounding
    assert steps.max() <= window - 2 * halo  # every overlap is >= 2 halo
    # no more windows than needed: one fewer would leave an overlap below 2 halo
    n = len(starts)
    assert n >= 2 and (n == 2 or (length - window) / (n - 2) > window - 2 * halo)


def test_owner_is_the_core_holding_the_position():
    t = Tiling((1024, 1024), 256, 32)
    rng = np.random.default_rng(0)
    for r, c in rng.uniform(0, 1024, (200, 2)):
        win = t.owner(r, c)
        assert bool(win.contains(r, c, core=True))
    assert t.owner(-5, 5000).index == t.owner(0, 1023).index  # clipped to the image


def test_depth_is_infinite_at_the_image_border_only():
    t = Tiling((1024, 1024), 256, 32)
    first = t.windows[0]
    d = t.depth(first)
    assert d[0, 0] == pytest.approx(255.5)  # the image border is not an edge
    assert t.depth(t.windows[5])[0, 0] == pytest.approx(0.5)  # an inner window's corner
    assert d[100, 255] == pytest.approx(0.5) and d[255, 100] == pytest.approx(0.5)


def test_depth_is_made_once_per_window_read_only_and_depth_at_reads_it():
    t = Tiling((700, 1000), 256, 32)
    rng = np.random.default_rng(1)
    for win in t.windows:
        d = t.depth(win)
        assert d.shape == win.shape and d.dtype == np.float32
        assert t.depth(win) is d  # made once
        with pytest.raises(ValueError):
            d[0, 0] = 7  # shared: nobody may change it
        for r, c in zip(rng.integers(0, win.shape[0], 20), rng.integers(0, win.shape[1], 20)):
            assert t.depth_at(win, r, c) == float(d[r, c])


@pytest.mark.parametrize("shape, img_size, tiling, expect", [
    ((384, 384), 256, "auto", None),          # exactly 1.5 model inputs: not tiled
    ((385, 100), 256, "auto", (256, 32)),     # just above
    ((4096, 4096), 1024, "auto", (1024, 128)),
    ((4096, 4096), 1024, None, None),
    ((4096, 4096), 1024, False, None),
    ((100, 100), 256, True, (256, 32)),       # forced on a small image: one window
    ((1000, 1000), 256, 16, (256, 16)),       # an int is the halo
    ((1000, 1000), 256, (128, 16), (128, 16)),
    ((1000, 1000, 3), 256, "auto", (256, 32)),  # channels last do not count
])
def test_choose_tiling(shape, img_size, tiling, expect):
    t = choose_tiling(shape, img_size, tiling)
    if expect is None:
        assert t is None
    else:
        assert (t.window, t.halo) == expect and t.image_shape == tuple(shape[:2])
    assert AUTO_FACTOR == 1.5 and default_halo(img_size) == img_size // 8


def test_choose_tiling_passes_a_tiling_through():
    t = Tiling((1000, 1000), 256, 32)
    assert choose_tiling((1000, 1000), 256, t) is t
    assert len(choose_tiling((100, 100), 256, True)) == 1


@pytest.mark.parametrize("shape, img_size, tiling, match", [
    ((1000, 1000), 256, "always", "tiling must be 'auto'"),
    ((1000, 1000), 256, "x", "tiling must be 'auto'"),
    ((1000, 1000), 256, (512, 32), "larger than the model input"),
    ((1000, 1000), 256, (256, 128), "halo .* less than half the window"),
    ((1000, 1000), 256, -1, "halo .* must be >= 0"),
    ((1000, 1000), 256, (4, 1), "at least 8 pixels"),
    ((1000, 1000), 256, Tiling((999, 1000), 256, 32), "for images of shape"),
    ((1000, 1000), 256, (1, 2, 3), "tiling must be 'auto'"),
    ((0, 1000), 256, True, "empty image"),
])
def test_choose_tiling_bad_inputs(shape, img_size, tiling, match):
    with pytest.raises(ValueError, match=match):
        choose_tiling(shape, img_size, tiling)


def test_window_batch_is_one_on_a_cpu_for_large_windows_only():
    import torch

    from napari_sam.tiling import window_batch

    assert window_batch(1024, torch.device("cpu")) == 1
    assert window_batch(1024, "cpu") == 1
    assert window_batch(256, torch.device("cpu")) == 4
    assert window_batch(1024, torch.device("cuda")) == 4
