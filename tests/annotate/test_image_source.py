"""Image layers as stacks of slices; geometry of our layers (no Qt)."""

import numpy as np
import pytest

from napari_sam.annotate.image_source import UnsupportedImage, make_source


def test_2d_grey_and_rgb():
    src = make_source(np.zeros((30, 40), np.uint16))
    assert src.shape == (1, 30, 40) and not src.is_3d
    assert src.stack[0].shape == (30, 40)
    assert src.layer_shape == (30, 40)
    assert src.to_zyx([[3, 4]]).tolist() == [[0, 3, 4]]
    rgb = make_source(np.zeros((30, 40, 4), np.uint8), rgb=True)
    assert rgb.stack[0].shape == (30, 40, 3) and rgb.layer_shape == (30, 40)


def test_3d_stack_and_slice_index():
    src = make_source(np.arange(5 * 6 * 7).reshape(5, 6, 7))
    assert src.is_3d and src.n_slices == 5
    assert np.array_equal(src.stack[2], np.arange(5 * 6 * 7).reshape(5, 6, 7)[2])
    assert src.slice_of([2.6, 0, 0]) == 3
    assert src.slice_of([99, 0, 0]) == 4


def test_channel_axis_becomes_rgb_and_layers_span_channels():
    data = np.random.default_rng(0).integers(0, 100, (4, 2, 8, 9)).astype(np.uint16)
    src = make_source(data, channel_axis=1)
    assert src.shape == (4, 8, 9) and src.stack.shape == (4, 8, 9, 3)
    sl = src.stack[3]
    assert np.array_equal(sl[..., 0], data[3, 0]) and np.array_equal(sl[..., 1], data[3, 1])
    assert not sl[..., 2].any()
    assert src.layer_shape == (4, 1, 8, 9)
    assert src.to_zyx([[2, 0.7, 5, 6]]).tolist() == [[2, 5, 6]]
    scale, translate = src.derived_geometry([2, 1, 0.5, 0.5], [0, 0, 0, 0])
    assert scale.tolist() == [2, 2, 0.5, 0.5] and translate.tolist() == [0, 0.5, 0, 0]
    labels = np.zeros(src.layer_shape, np.uint32)
    src.zyx_view(labels)[1, 2, 3] = 7
    assert labels[1, 0, 2, 3] == 7


def test_unsupported_layouts_say_what_to_do():
    with pytest.raises(UnsupportedImage, match="channel axis"):
        make_source(np.zeros((2, 3, 4, 5, 6)))
    with pytest.raises(UnsupportedImage, match="before the last two"):
        make_source(np.zeros((3, 4, 5)), channel_axis=2)
    with pytest.raises(UnsupportedImage, match="RGB"):
        make_source(np.zeros((4, 5, 3)), rgb=True, channel_axis=0)
    with pytest.raises(UnsupportedImage, match="no levels"):
        make_source([], multiscale=True)


def test_a_pyramid_is_segmented_at_its_full_resolution_level():
    """A multiscale image (napari's ``layer.data``: levels, level 0 the full resolution):
    level 0 is the stack, in its pixel grid (it was refused)."""
    level0 = np.arange(4 * 8 * 8, dtype=np.uint16).reshape(4, 8, 8)
    src = make_source([level0, level0[:, ::2, ::2], level0[:, ::4, ::4]], multiscale=True)
    assert src.shape == (4, 8, 8) and src.layer_shape == (4, 8, 8) and src.is_3d
    assert np.array_equal(src.stack[2], level0[2])


@pytest.mark.parametrize("multiscale", [False, True])
def test_the_4d_refusal_console_line_takes_one_time_point(multiscale):
    """The line the 4D refusal gives adds one time point when typed in napari's console; for
    a pyramid ``data[0]`` is level 0, the whole (T, Z, Y, X) array (the reviewer's catch), so
    the line takes ``data[0][0]``. The new layer keeps the other axes' scale, translate and
    units (session 40: it was added in pixels, drawn at another size than the original and
    its labels saved without the voxel size)."""
    from types import SimpleNamespace

    level0 = np.zeros((3, 4, 16, 16), np.uint8)
    data = [level0, level0[:, :, ::2, ::2]] if multiscale else level0
    with pytest.raises(UnsupportedImage) as info:
        make_source(data, multiscale=multiscale)
    line = str(info.value).split("type in napari's console: ", 1)[1].split("; then pick")[0]
    added = []
    layer = SimpleNamespace(data=data, name="movie", scale=np.array([60.0, 2.0, 0.5, 0.5]),
                            translate=np.array([0.0, 4.0, 1.0, 3.0]),
                            units=("second", "micrometer", "micrometer", "micrometer"))
    viewer = SimpleNamespace(add_image=lambda d, **kw: added.append((d, kw)),
                             layers=SimpleNamespace(selection=SimpleNamespace(active=layer)))
    exec(line, {"viewer": viewer})
    (image, kw), = added
    assert image.shape == (4, 16, 16)
    np.testing.assert_array_equal(kw["scale"], [2.0, 0.5, 0.5])
    np.testing.assert_array_equal(kw["translate"], [4.0, 1.0, 3.0])
    assert tuple(kw["units"]) == ("micrometer",) * 3 and kw["name"] == "movie t0"
    make_source(image)  # one time point is a stack the dock segments


def test_the_4d_refusal_names_the_command_line_that_segments_every_time_point():
    """Without a time point (or, in the dock, with a first axis short enough to be
    channels) a (T, Z, Y, X) image is refused; the refusal also names the command that
    segments a whole movie file, time point by time point."""
    with pytest.raises(UnsupportedImage) as info:
        make_source(np.zeros((3, 4, 16, 16), np.uint8))
    assert str(info.value).endswith(
        "then pick that layer in 'Image'. To segment every time point of a movie file, each as "
        "its own volume, run `napari-sam auto movie.tif -o out/` in a shell (or `napari-sam "
        "segment` with prompts that have a 't' column)")


class _LazyArray:
    """An array-like that is not numpy or dask (as a zarr array is): counts what is read."""

    def __init__(self, arr):
        self._arr, self.shape, self.dtype, self.reads = arr, arr.shape, arr.dtype, []

    def __getitem__(self, key):
        out = self._arr[key]
        self.reads.append(out.size)
        return out


@pytest.mark.parametrize("lazy", [False, True], ids=["numpy", "zarr-like"])
def test_a_movie_of_volumes_is_read_at_its_time_point(lazy):
    """(T, Z, Y, X) with a time point: the stack is that time point's volume (read slice by
    slice from a lazy array), our layers keep every time point, and a (Z, Y, X) view, a
    volume and a commit land at that time point in the whole array."""
    from napari_sam.annotation import ObjectMask, apply_objects

    movie = np.arange(5 * 4 * 8 * 9, dtype=np.uint16).reshape(5, 4, 8, 9)
    data = _LazyArray(movie) if lazy else movie
    src = make_source(data, time_point=2)
    assert (src.time_axis, src.time_point, src.n_times, src.z_axis) == (0, 2, 5, 1)
    assert src.shape == (4, 8, 9) and src.layer_shape == (5, 4, 8, 9)
    np.testing.assert_array_equal(src.stack[3], movie[2, 3])
    if lazy:
        assert data.reads == [8 * 9]  # one slice read, not the movie
    points = [[2, 1, 5, 6], [0, 1, 5, 6]]
    np.testing.assert_array_equal(src.at_time_point(points), [True, False])
    np.testing.assert_array_equal(src.to_zyx(points), [[1, 5, 6], [1, 5, 6]])
    layer = src.to_layer(np.ones((4, 8, 9), np.uint8))
    assert layer.shape == movie.shape and layer[2].all() and not np.delete(layer, 2, 0).any()
    labels = np.zeros(src.layer_shape, np.uint32)
    mask = np.zeros((8, 9), bool)
    mask[2:4, 3:5] = True
    commit = src.in_layer(apply_objects(src.zyx_view(labels), [ObjectMask(mask, 1)]))
    assert commit.shape == movie.shape and commit.time_point == 2
    np.testing.assert_array_equal(np.flatnonzero(labels), commit.changes[0].index)
    assert labels[2, 1][mask].tolist() == [1] * 4


def test_a_movie_with_channels_and_the_time_point_clipped():
    """(T, Z, C, Y, X) with its channel axis: time is the first axis, the channel alone the
    stack; a time point past the last is the last."""
    movie = np.random.default_rng(0).random((6, 3, 2, 8, 9)).astype(np.float32)
    src = make_source(movie, channel_axis=2, channel=1, time_point=9)
    assert src.time_point == 5 and src.layer_shape == (6, 3, 1, 8, 9)
    np.testing.assert_array_equal(src.stack[2], movie[5, 2, 1])


def test_a_4d_image_whose_first_axis_may_be_channels_is_not_read_as_a_movie():
    """A first axis of at most 4 with no channel axis may hold channels: refused, naming it
    (not segmented as time points); a 5D image without a channel axis too."""
    with pytest.raises(UnsupportedImage, match="axis 0 \\(size 3\\) is short enough"):
        make_source(np.zeros((3, 4, 16, 16), np.uint8), time_point=0)
    with pytest.raises(UnsupportedImage, match="5 spatial dimensions"):
        make_source(np.zeros((6, 2, 4, 16, 16), np.uint8), time_point=0)
