import numpy as np
import pytest
from PIL import Image

from napari_sam.preprocess import (
    ResizeSpec,
    boxes_to_model,
    intensity_limits,
    points_to_model,
    resize_longest_side,
    to_uint8_rgb,
)


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.uint16, np.int16, np.int32, np.int64, np.float32, np.float64]
)
@pytest.mark.parametrize("shape", [(40, 60), (40, 60, 1), (40, 60, 3), (40, 60, 4)])
def test_every_dtype_and_shape_gives_uint8_rgb(dtype, shape):
    rng = np.random.default_rng(0)
    img = (rng.random(shape) * 1000 - (200 if np.dtype(dtype).kind in "if" else 0)).astype(dtype)
    out = to_uint8_rgb(img)
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    # the percentile stretch uses (almost) the whole range
    assert out.min() == 0 and out.max() == 255
    if len(shape) == 2 or shape[-1] == 1:
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_uint8_with_full_contrast_limits_is_unchanged():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (30, 20, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8_rgb(img, contrast_limits=(0, 255)), img)


def test_contrast_limits_map_linearly_and_clip():
    img = np.array([[0.0, 50.0, 100.0, 150.0]], np.float32)
    out = to_uint8_rgb(img, contrast_limits=(50, 150))[..., 0]
    np.testing.assert_array_equal(out, [[0, 0, 128, 255]])


def test_nan_inf_and_negative_values():
    img = np.array([[-5.0, np.nan, np.inf, -np.inf], [0.0, 5.0, 10.0, 2.5]])
    out = to_uint8_rgb(img, percentiles=(0, 100))[..., 0]
    assert out[0, 0] == 0 and out[1, 2] == 255  # finite min and max
    assert out[0, 2] == 255 and out[0, 3] == 0
    assert 0 < out[1, 0] < out[1, 3] < out[1, 1] < 255
    # NaN: the Gaussian-weighted mean of its finite neighbours as they are displayed
    assert 0 < out[0, 1] < 255


def test_scattered_nan_pixels_take_their_surroundings_and_nan_areas_stay_black():
    """1 % NaN pixels inside a bright square look like the square (they were black spots the
    model read as holes); the inside of a 20 px wide NaN band stays 0, its rim takes the
    values beside it; without NaN nothing changes."""
    rng = np.random.default_rng(0)
    img = np.full((80, 80), 1000.0)
    img[20:50, 20:50] = 5000.0
    clean = to_uint8_rgb(img)[..., 0]
    holes = img.copy()
    holes[rng.random(img.shape) < 0.01] = np.nan
    holes[:, 60:] = np.nan
    out = to_uint8_rgb(holes)[..., 0]
    nan = np.isnan(holes)
    assert nan[22:48, 22:48].sum() >= 3
    assert out[22:48, 22:48].min() >= 240  # the speckles inside the square (were 0)
    np.testing.assert_array_equal(out[~nan], clean[~nan])  # finite pixels unchanged
    assert (out[:, 66:74] == 0).all()  # the band's inside
    holes[:, 60:] = 5000.0  # a bright band: its NaN rim is bright, its inside black
    out = to_uint8_rgb(holes, contrast_limits=(1000, 5000))[..., 0]
    assert (out[5:75, 61] == 255).all() and (out[5:75, 75] == 255).all()


def test_constant_and_all_nan_images_are_black():
    assert to_uint8_rgb(np.full((5, 5), 7.0)).max() == 0
    assert to_uint8_rgb(np.full((5, 5), np.nan)).max() == 0


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros(10), "shape"),
        (np.zeros((2, 3, 4, 5, 6)), "shape"),
        (np.zeros((0, 5)), "empty"),
        (np.zeros((5, 5, 2)), "shape"),
        (np.array([["a"]]), "numeric"),
    ],
)
def test_bad_images_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        to_uint8_rgb(bad)


def test_bad_contrast_limits_and_percentiles():
    with pytest.raises(ValueError, match="contrast_limits"):
        to_uint8_rgb(np.zeros((3, 3)), contrast_limits=(10, 5))
    with pytest.raises(ValueError, match="percentiles"):
        intensity_limits(np.zeros(3), (90, 10))


def test_resize_spec_matches_meta_rounding():
    # Meta: scale = 1024 / max(h, w); newh = int(h * scale + 0.5)
    spec = ResizeSpec.for_image((333, 500), 1024)
    assert spec.input_size == (int(333 * 1024 / 500 + 0.5), 1024)
    spec = ResizeSpec.for_image((700, 90), 256)
    assert spec.input_size == (256, int(90 * 256 / 700 + 0.5))


def test_resize_is_pil_bilinear():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (50, 80, 3), dtype=np.uint8)
    spec = ResizeSpec.for_image((50, 80), 128)
    out = resize_longest_side(rgb, spec)
    ref = np.asarray(Image.fromarray(rgb).resize((128, 80), Image.BILINEAR))
    np.testing.assert_array_equal(out, ref)


def test_coordinates_swap_to_xy_and_scale():
    spec = ResizeSpec.for_image((100, 200), 400)  # scale 2
    np.testing.assert_allclose(points_to_model([[10, 30]], spec), [[60, 20]])
    np.testing.assert_allclose(boxes_to_model([[1, 2, 11, 22]], spec), [[4, 2, 44, 22]])


def test_contrast_limits_name_is_short_and_tells_limits_apart():
    """Store names of the layer's-limits embeddings (dock and batch): 190-270 as before, and
    limits that agree to 6 digits (a float image's slider) no longer share one name."""
    from napari_sam.preprocess import contrast_limits_name

    assert contrast_limits_name((190.0, 270)) == "190-270"
    assert contrast_limits_name((0.5, 90)) == "0.5-90"
    a = contrast_limits_name((0, 100.00001))
    b = contrast_limits_name((0, 100.00002))
    assert a != b and a.startswith("0-100.0000")
    assert float(a.split("-")[1]) == 100.00001  # every digit kept
