"""Tests for napari_sam.io with real files in tmp_path."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tifffile
import zarr

from napari_sam import io
from napari_sam.io import ImageReadError


def _labels3d(max_id=9, shape=(4, 24, 32)):
    lab = np.zeros(shape, np.int64)
    lab[1:3, 2:6, 3:9] = 1
    lab[0, 10:14, 10:20] = 2
    lab[2:4, 15:20, 20:30] = max_id
    return lab


def _tree(d):
    return sorted(p.name for p in d.iterdir())


# --------------------------------------------------------------------------- write/read labels


@pytest.mark.parametrize("suffix", [".tif", ".ome.tif"])
def test_roundtrip_3d_labels_with_metadata(tmp_path, suffix):
    lab = _labels3d()
    out = tmp_path / f"labels{suffix}"
    io.write_labels(out, lab, axes="ZYX", pixel_size=(2.5, 0.5, 0.25), metadata={"model": "demo"})
    im = io.read_image(out)
    assert im.axes == "ZYX"
    assert im.dtype == np.uint16
    np.testing.assert_array_equal(im.data, lab)
    assert im.pixel_size == pytest.approx((2.5, 0.5, 0.25))
    assert im.unit == "um"
    assert im.metadata["user"] == {"model": "demo"}
    assert im.metadata["format"] == ("ome-tiff" if suffix == ".ome.tif" else "imagej-tiff")
    assert im.scale == pytest.approx((2.5, 0.5, 0.25))
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE


def test_roundtrip_2d_labels(tmp_path):
    lab = np.zeros((30, 40), np.uint8)
    lab[5:10, 5:25] = 3
    out = tmp_path / "l2d.tif"
    io.write_labels(out, lab, axes="YX", pixel_size=(0.3, 0.2))
    im = io.read_image(out)
    assert im.axes == "YX"
    assert im.pixel_size == pytest.approx((0.3, 0.2))
    np.testing.assert_array_equal(im.data, lab)
    assert im.dtype == np.uint16


def test_roundtrip_tyx_labels_imagej(tmp_path):
    lab = _labels3d()
    out = tmp_path / "movie_labels.tif"
    io.write_labels(out, lab, axes="TYX", pixel_size=(0.5, 0.5))
    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej
        assert tif.imagej_metadata["frames"] == 4
    im = io.read_image(out)
    assert im.axes == "TYX"
    assert im.pixel_size == pytest.approx((0.5, 0.5))
    np.testing.assert_array_equal(im.data, lab)


def test_uint16_vs_uint32(tmp_path):
    small = _labels3d(max_id=65535)
    io.write_labels(tmp_path / "a.tif", small, axes="ZYX")
    a = io.read_image(tmp_path / "a.tif")
    assert a.dtype == np.uint16
    np.testing.assert_array_equal(a.data, small)

    big = _labels3d(max_id=65536)
    io.write_labels(tmp_path / "b.tif", big, axes="ZYX", pixel_size=(1.0, 0.5, 0.5))
    b = io.read_image(tmp_path / "b.tif")
    assert b.dtype == np.uint32
    assert int(b.data.max()) == 65536  # the id is not truncated to 0
    np.testing.assert_array_equal(b.data, big)
    assert b.pixel_size == pytest.approx((1.0, 0.5, 0.5))

    huge = _labels3d(max_id=2**32 - 1)
    io.write_labels(tmp_path / "c.npy", huge, axes="ZYX")
    assert np.load(tmp_path / "c.npy").dtype == np.uint32
    with pytest.raises(ValueError, match="uint32"):
        io.write_labels(tmp_path / "d.tif", _labels3d(max_id=2**32), axes="ZYX")


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.array([[0, -1], [2, 3]]), "negative"),
        (np.array([[0, 1.5], [2, 3]]), "whole numbers"),
        (np.array([[0, np.nan], [2, 3]]), "whole numbers"),
    ],
)
def test_invalid_label_values(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        io.write_labels(tmp_path / "x.tif", bad, axes="YX")
    assert _tree(tmp_path) == []


def test_integral_float_labels_accepted(tmp_path):
    lab = np.array([[0.0, 1.0], [2.0, 70000.0]])
    io.write_labels(tmp_path / "f.tif", lab, axes="YX")
    im = io.read_image(tmp_path / "f.tif")
    assert im.dtype == np.uint32
    np.testing.assert_array_equal(im.data, lab.astype(np.uint32))


def test_write_labels_validates_axes_and_pixel_size(tmp_path):
    lab = _labels3d()
    with pytest.raises(ValueError, match=r"\(4, 24, 32\)"):
        io.write_labels(tmp_path / "x.tif", lab, axes="YX")
    with pytest.raises(ValueError, match="pixel_size"):
        io.write_labels(tmp_path / "x.tif", lab, axes="ZYX", pixel_size=(1.0, 1.0))
    with pytest.raises(ValueError, match="ImageJ order"):
        io.write_labels(tmp_path / "x.tif", lab, axes="YXZ")
    with pytest.raises(ValueError, match="suffix"):
        io.write_labels(tmp_path / "x.png", lab, axes="ZYX")
    assert _tree(tmp_path) == []


@pytest.mark.parametrize("suffix", [".tif", ".npy", ".zarr"])
def test_overwrite_protection(tmp_path, suffix):
    out = tmp_path / f"out{suffix}"
    first = _labels3d(max_id=5)
    io.write_labels(out, first, axes="ZYX")
    second = _labels3d(max_id=6)
    with pytest.raises(FileExistsError) as err:
        io.write_labels(out, second, axes="ZYX")
    assert str(out) in str(err.value)
    assert "overwrite=True" in str(err.value) and "--overwrite" in str(err.value)
    np.testing.assert_array_equal(np.asarray(io.read_image(out).data), first)
    io.write_labels(out, second, axes="ZYX", overwrite=True)
    np.testing.assert_array_equal(np.asarray(io.read_image(out).data), second)
    assert _tree(tmp_path) == [out.name]  # no temporary or backup left behind


def test_atomic_write_failure_leaves_target_untouched(tmp_path, monkeypatch):
    out = tmp_path / "labels.tif"
    original = _labels3d(max_id=5)
    io.write_labels(out, original, axes="ZYX")
    before = out.read_bytes()
    calls = []

    def broken_imwrite(path, data, **kwargs):
        calls.append(path)
        with open(path, "wb") as f:  # partial bytes, then a crash
            f.write(b"II*\x00" + b"\x00" * 100)
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", broken_imwrite)
    with pytest.raises(OSError, match="disk full"):
        io.write_labels(out, _labels3d(max_id=7), axes="ZYX", overwrite=True)
    assert calls and os.path.dirname(calls[0]) == str(tmp_path)  # temp in the same directory
    assert os.path.basename(calls[0]) != out.name
    assert out.read_bytes() == before
    assert _tree(tmp_path) == ["labels.tif"]

    # a fresh target is not created either
    with pytest.raises(OSError):
        io.write_labels(tmp_path / "new.tif", original, axes="ZYX")
    assert _tree(tmp_path) == ["labels.tif"]


def test_zarr_labels_roundtrip(tmp_path):
    lab = _labels3d()
    out = tmp_path / "labels.zarr"
    io.write_labels(out, lab, axes="ZYX", pixel_size=(3.0, 1.0, 1.0), metadata={"a": [1, 2]})
    im = io.read_image(out)
    assert im.axes == "ZYX"
    assert im.pixel_size == pytest.approx((3.0, 1.0, 1.0))
    assert im.metadata["user"] == {"a": [1, 2]}
    np.testing.assert_array_equal(im.data, lab)


# --------------------------------------------------------------------------- reading: axes


def test_imagej_tzyx_axes_and_pixel_size(tmp_path):
    data = np.arange(2 * 5 * 6 * 7, dtype=np.uint16).reshape(2, 5, 6, 7)
    p = tmp_path / "movie.tif"
    tifffile.imwrite(
        p,
        data,
        imagej=True,
        resolution=(1 / 0.2, 1 / 0.3),
        metadata={"axes": "TZYX", "spacing": 1.5, "unit": "micron"},
    )
    im = io.read_image(p)
    assert im.axes == "TZYX"
    assert im.metadata["format"] == "imagej-tiff"
    assert im.pixel_size == pytest.approx((1.5, 0.3, 0.2))  # z, y, x
    assert im.unit == "um"
    np.testing.assert_array_equal(im.data, data)
    with pytest.raises(ValueError, match="both a time axis"):
        im.to_standard()
    one_t = im.to_standard(select={"T": 1})
    assert one_t.axes == "ZYX"
    np.testing.assert_array_equal(one_t.data, data[1])
    assert one_t.pixel_size == pytest.approx((1.5, 0.3, 0.2))


def test_imagej_2d_rows_taller_than_columns_keep_their_scale(tmp_path):
    """A 2D ImageJ TIFF in pixel units whose rows are twice as tall as its columns are wide
    (what the napari writer saves for a layer of scale (2, 1)): the Y size is read back even
    though the X size is 1."""
    p = tmp_path / "tall.tif"
    tifffile.imwrite(p, np.zeros((6, 7), np.uint16), imagej=True, resolution=(1.0, 0.5),
                     metadata={"unit": "pixel"})
    im = io.read_image(p)
    assert im.pixel_size == pytest.approx((2.0, 1.0))  # y, x


@pytest.mark.parametrize("shape", [(1, 5, 32, 32), (5, 1, 32, 32)])
def test_a_plain_4d_tiff_with_a_singleton_axis_is_a_stack_not_a_time_series(tmp_path, shape):
    """tifffile's unknown axes (QQYX) of a (1, Z, Y, X) or (Z, 1, Y, X) array: the singleton
    is the time axis, so the file is read as a 5-slice Z stack either way (a (1, Z, Y, X) file
    was read as ZTYX, a time series, and propagated without the fade rule)."""
    p = tmp_path / "stack.tif"
    tifffile.imwrite(p, np.arange(np.prod(shape), dtype=np.uint16).reshape(shape))
    std = io.read_image(p).to_standard()
    assert std.axes == "ZYX" and std.data.shape == (5, 32, 32)


def test_slices_too_narrow_to_segment_are_refused_with_the_channel_hint(tmp_path):
    """A 2-channel (Y, X, 2) TIFF without axes metadata is 64 pages of 64 x 2 pixels to
    tifffile; segmenting that gave a meaningless label stack with exit 0."""
    p = tmp_path / "two_channel.tif"
    tifffile.imwrite(p, np.zeros((64, 64, 2), np.uint16))
    with pytest.raises(ImageReadError, match=r"64 x 2 pixels.*too small.*--axes YXC --channel N"):
        io.read_image(p)
    std = io.read_image(p, axes="YXC").to_standard(channel=1)
    assert std.axes == "YX" and std.data.shape == (64, 64)
    npy = tmp_path / "tiny.npy"
    np.save(npy, np.zeros((4, 4)))  # guessed YX: 4 x 4 pixels
    with pytest.raises(ImageReadError, match="4 x 4 pixels"):
        io.read_image(npy)


def test_ome_zyxc_axes(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, (5, 8, 9, 3), dtype=np.uint8)
    p = tmp_path / "rgb_stack.ome.tif"
    tifffile.imwrite(
        p,
        data,
        ome=True,
        photometric="rgb",
        metadata={"axes": "ZYXS", "PhysicalSizeX": 0.4, "PhysicalSizeY": 0.4, "PhysicalSizeZ": 2.0},
    )
    im = io.read_image(p)
    assert im.metadata["source_axes"] == "ZYXS"
    assert im.axes == "ZYXC"
    assert im.metadata["format"] == "ome-tiff"
    assert im.pixel_size == pytest.approx((2.0, 0.4, 0.4))
    np.testing.assert_array_equal(im.data, data)
    std, axes = io.to_standard(im.data, im.axes)
    assert axes == "ZYXC" and std.shape == (5, 8, 9, 3)


def test_ome_czyx_needs_channel(tmp_path):
    data = np.random.default_rng(1).integers(0, 1000, (5, 4, 8, 9), dtype=np.uint16)
    p = tmp_path / "channels.ome.tif"
    tifffile.imwrite(p, data, ome=True, metadata={"axes": "CZYX"})
    im = io.read_image(p)
    assert im.axes == "CZYX"
    assert im.pixel_size is None
    with pytest.raises(ValueError, match="channel="):
        io.to_standard(im.data, im.axes)
    std, axes = io.to_standard(im.data, im.axes, channel=3)
    assert axes == "ZYX"
    np.testing.assert_array_equal(std, data[3])


def test_plain_multipage_tiff_is_zyx(tmp_path):
    p = tmp_path / "pages.tif"
    data = np.random.default_rng(2).integers(0, 100, (6, 10, 11), dtype=np.uint16)
    with tifffile.TiffWriter(p) as w:
        for plane in data:
            w.write(plane, metadata=None)
    im = io.read_image(p)
    assert im.metadata["source_axes"] in ("IYX", "QYX")
    assert im.axes == "ZYX"
    np.testing.assert_array_equal(im.data, data)


def test_rgb_tiff_is_yxc(tmp_path):
    p = tmp_path / "rgb.tif"
    data = np.zeros((10, 12, 3), np.uint8)
    data[..., 1] = 200
    tifffile.imwrite(p, data, photometric="rgb")
    im = io.read_image(p)
    assert im.axes == "YXC"
    std, axes = io.to_standard(im.data, im.axes)
    assert axes == "YXC" and std.shape == (10, 12, 3)


def test_user_axes_override_and_validation(tmp_path):
    data = np.zeros((3, 5, 10, 11), np.uint16)
    p = tmp_path / "x.tif"
    tifffile.imwrite(p, data, imagej=True, metadata={"axes": "TZYX"})
    assert io.read_image(p).axes == "TZYX"
    im = io.read_image(p, axes="czyx")
    assert im.axes == "CZYX" and im.metadata["axes_from"] == "user"

    for bad, problem in [
        ("ZYX", "3 letters but the data has 4"),
        ("TZYQ", "Q not allowed"),
        ("ZZYX", "more than once"),
        ("TZCY", "Y and X are required"),
    ]:
        with pytest.raises(ValueError, match=problem) as err:
            io.read_image(p, axes=bad)
        assert "(3, 5, 10, 11)" in str(err.value)


def test_shaped_tiff_axes_from_tifffile_metadata(tmp_path):
    p = tmp_path / "shaped.tif"
    data = np.zeros((2, 7, 10, 11), np.uint16)
    tifffile.imwrite(p, data, metadata={"axes": "ZCYX"})
    im = io.read_image(p)
    assert im.axes == "ZCYX"
    with pytest.raises(ValueError, match="7 channels"):
        im.to_standard()


# --------------------------------------------------------------------------- reading: lazy


def test_lazy_uncompressed_tiff_is_memmap(tmp_path):
    data = np.random.default_rng(3).integers(0, 60000, (6, 20, 30), dtype=np.uint16)
    p = tmp_path / "raw.tif"
    tifffile.imwrite(p, data, imagej=True, metadata={"axes": "ZYX"})
    im = io.read_image(p, lazy=True)
    assert isinstance(im.data, np.memmap)
    assert im.metadata["lazy"] == "memmap"
    assert im.axes == "ZYX"
    eager = io.read_image(p).data
    assert not isinstance(eager, np.memmap)
    for z in range(6):
        np.testing.assert_array_equal(im.data[z], eager[z])
    with pytest.raises(ValueError):  # read-only
        im.data[0, 0, 0] = 1


def test_lazy_compressed_tiff_is_zarr_and_reads_per_slice(tmp_path):
    data = np.random.default_rng(4).integers(0, 60000, (5, 16, 18), dtype=np.uint16)
    p = tmp_path / "compressed.tif"
    tifffile.imwrite(p, data, compression="zlib", metadata={"axes": "ZYX"})
    im = io.read_image(p, lazy=True)
    assert isinstance(im.data, zarr.Array)
    assert not isinstance(im.data, np.ndarray)
    assert im.metadata["lazy"] == "zarr"
    assert im.data.shape == data.shape
    np.testing.assert_array_equal(im.data[3], data[3])
    np.testing.assert_array_equal(im.data[1:4, 2:5], data[1:4, 2:5])


def test_lazy_to_standard_on_zarr_reads_only_requested(tmp_path):
    data = np.random.default_rng(5).integers(0, 255, (3, 4, 8, 9), dtype=np.uint8)  # CZYX
    p = tmp_path / "c.zarr"
    z = zarr.create_array(store=str(p), shape=data.shape, dtype=data.dtype, chunks=(1, 1, 8, 9))
    z[...] = data
    im = io.read_image(p, axes="CZYX", lazy=True)
    assert isinstance(im.data, zarr.Array)
    std = im.to_standard()  # 3 channels -> RGB last, stack along Z
    assert std.axes == "ZYXC"
    assert not isinstance(std.data, np.ndarray)
    assert std.data.shape == (4, 8, 9, 3)
    np.testing.assert_array_equal(std.data[2], np.moveaxis(data, 0, -1)[2])
    np.testing.assert_array_equal(np.asarray(std.data), np.moveaxis(data, 0, -1))
    one, axes = io.to_standard(im.data, "CZYX", channel=1)
    assert axes == "ZYX"
    np.testing.assert_array_equal(one[1:3, 2:5], data[1, 1:3, 2:5])
    np.testing.assert_array_equal(one[..., 4], data[1, :, :, 4])


def test_lazy_npy_is_memmap(tmp_path):
    data = np.random.default_rng(6).random((4, 10, 12)).astype(np.float32)
    p = tmp_path / "a.npy"
    np.save(p, data)
    im = io.read_image(p, lazy=True)
    assert isinstance(im.data, np.memmap)
    assert im.axes == "ZYX" and im.metadata["axes_from"] == "guess"
    np.testing.assert_array_equal(im.data[2], data[2])
    eager = io.read_image(p)
    assert type(eager.data) is np.ndarray


def test_bigtiff(tmp_path):
    data = np.random.default_rng(7).integers(0, 100, (3, 16, 16), dtype=np.uint16)
    p = tmp_path / "big.btf"
    tifffile.imwrite(p, data, bigtiff=True, photometric="minisblack", metadata={"axes": "ZYX"})
    im = io.read_image(p)
    assert im.metadata["bigtiff"] is True
    assert im.axes == "ZYX"
    np.testing.assert_array_equal(im.data, data)
    lazy = io.read_image(p, lazy=True)
    np.testing.assert_array_equal(lazy.data[1], data[1])


# --------------------------------------------------------------------------- zarr / npy inputs


def test_zarr_group_with_single_array_and_ome_zarr(tmp_path):
    data = np.random.default_rng(8).integers(0, 100, (3, 10, 12), dtype=np.uint16)
    g = zarr.open_group(str(tmp_path / "single.zarr"), mode="w")
    a = g.create_array("raw", shape=data.shape, dtype=data.dtype, chunks=(1, 10, 12))
    a[...] = data
    im = io.read_image(tmp_path / "single.zarr")
    assert im.axes == "ZYX"
    np.testing.assert_array_equal(im.data, data)

    g.create_array("other", shape=(2, 2), dtype="u1")
    with pytest.raises(ImageReadError, match="2 arrays"):
        io.read_image(tmp_path / "single.zarr")

    ome = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w")
    for level, arr in enumerate([data, data[:, ::2, ::2]]):
        ome.create_array(str(level), shape=arr.shape, dtype=arr.dtype)[...] = arr
    ome.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [
                {"name": "z", "type": "space", "unit": "micrometer"},
                {"name": "y", "type": "space", "unit": "micrometer"},
                {"name": "x", "type": "space", "unit": "micrometer"},
            ],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [{"type": "scale", "scale": [2.0, 0.5, 0.5]}],
                },
                {
                    "path": "1",
                    "coordinateTransformations": [{"type": "scale", "scale": [2.0, 1.0, 1.0]}],
                },
            ],
        }
    ]
    im = io.read_image(tmp_path / "ome.zarr", lazy=True)
    assert im.metadata["format"] == "ome-zarr"
    assert im.axes == "ZYX"
    assert im.shape == data.shape  # level 0
    assert im.pixel_size == pytest.approx((2.0, 0.5, 0.5))
    assert im.unit == "um"
    np.testing.assert_array_equal(im.data[1], data[1])


def test_npy_axes_guess_and_override(tmp_path):
    p = tmp_path / "rgb.npy"
    np.save(p, np.zeros((10, 12, 3), np.uint8))
    assert io.read_image(p).axes == "YXC"
    assert io.read_image(p, axes="ZYX").axes == "ZYX"


# --------------------------------------------------------------------------- errors


def test_corrupted_tiff_raises_image_read_error(tmp_path):
    p = tmp_path / "broken.tif"
    p.write_bytes(b"this is not a tiff at all" * 10)
    with pytest.raises(ImageReadError) as err:
        io.read_image(p)
    assert isinstance(err.value, ValueError)
    assert str(p) in str(err.value)
    assert err.value.path == p


def test_truncated_tiff_raises_image_read_error(tmp_path):
    good = tmp_path / "good.tif"
    tifffile.imwrite(
        good, np.ones((4, 64, 64), np.uint16), compression="zlib", photometric="minisblack"
    )
    p = tmp_path / "truncated.tif"
    p.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageReadError, match="truncated.tif"):
        io.read_image(p)
    # all page headers intact, the last strip cut: lazy reading must fail now, not later
    with tifffile.TiffFile(good) as tif:
        last = tif.pages[-1].dataoffsets[0]
    p.write_bytes(good.read_bytes()[: last + 10])
    for lazy in (False, True):
        with pytest.raises(ImageReadError, match="truncated") as err:
            io.read_image(p, lazy=lazy)
        assert str(p) in str(err.value)


def test_missing_file_and_bad_npy(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tif"):
        io.read_image(tmp_path / "nope.tif")
    p = tmp_path / "bad.npy"
    p.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ImageReadError, match="bad.npy"):
        io.read_image(p)
    d = tmp_path / "folder"
    d.mkdir()
    with pytest.raises(ImageReadError, match="directory"):
        io.read_image(d)


# --------------------------------------------------------------------------- to_standard


def test_to_standard_numpy_views_and_choices():
    data = np.arange(4 * 3 * 5 * 6).reshape(4, 3, 5, 6)  # C? no: Z C Y X with 3 channels
    std, axes = io.to_standard(data, "ZCYX")
    assert axes == "ZYXC" and std.shape == (4, 5, 6, 3)
    assert np.shares_memory(std, data)
    np.testing.assert_array_equal(std[2, :, :, 1], data[2, 1])

    t = np.zeros((1, 7, 5, 6))
    std, axes = io.to_standard(t, "TZYX")  # size-1 T squeezed, Z stays the stack axis
    assert axes == "ZYX" and std.shape == (7, 5, 6)
    std, axes = io.to_standard(np.zeros((8, 1, 5, 6)), "TZYX")
    assert axes == "TYX" and std.shape == (8, 5, 6)
    std, axes = io.to_standard(np.zeros((5, 6, 1)), "YXC")
    assert axes == "YX"
    std, axes = io.to_standard(np.zeros((5, 6, 4)), None)
    assert axes == "YXC"
    std, axes = io.to_standard(np.zeros((3, 5, 6)), None, channel_axis=0)
    assert axes == "YXC" and std.shape == (5, 6, 3)
    with pytest.raises(ValueError, match="no channel axis"):
        io.to_standard(np.zeros((3, 5, 6)), "ZYX", channel=0)
    with pytest.raises(ValueError, match="out of range"):
        io.to_standard(np.zeros((5, 5, 6)), "CYX", channel=5)
    with pytest.raises(ValueError, match="Z slice"):
        io.to_standard(np.zeros((2, 3, 5, 6)), "TZYX")


# --------------------------------------------------------------------------- sidecars


def _write_output(tmp_path):
    inp = tmp_path / "input.tif"
    tifffile.imwrite(inp, np.zeros((4, 24, 32), np.uint16), photometric="minisblack")
    lab = _labels3d()
    out = io.write_labels(tmp_path / "out" / "input_labels.tif", lab, axes="ZYX")
    objects = io.label_objects_summary(lab, scores={1: 0.9, 2: 0.8, 9: np.float32(0.7)})
    return inp, out, objects


def test_sidecar_roundtrip(tmp_path):
    inp, out, objects = _write_output(tmp_path)
    sc = io.write_sidecar(
        out,
        model="demo",
        version="0.1.0",
        parameters={"points_per_side": np.int64(16), "iou": 0.88},
        objects=objects,
        input_path=inp,
    )
    assert sc == io.sidecar_path(out) == out.with_name("input_labels.tif.json")
    rec = io.read_sidecar(out)
    assert rec["status"] == "complete"
    assert rec["model"] == "demo" and rec["version"] == "0.1.0"
    assert rec["parameters"] == {"points_per_side": 16, "iou": 0.88}
    assert rec["objects"] == [
        {"id": 1, "slice_range": [1, 2], "area": 2 * 4 * 6, "score": pytest.approx(0.9)},
        {"id": 2, "slice_range": [0, 0], "area": 4 * 10, "score": pytest.approx(0.8)},
        {"id": 9, "slice_range": [2, 3], "area": 2 * 5 * 10, "score": pytest.approx(0.7)},
    ]
    assert rec["input"]["size"] == inp.stat().st_size
    assert rec["output"]["size"] == out.stat().st_size
    assert io.is_complete(out, inp)
    assert io.is_complete(out)
    assert [p.name for p in out.parent.iterdir()] != []
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "input_labels.tif",
        "input_labels.tif.json",
    ]


def test_is_complete_false_cases(tmp_path):
    inp, out, objects = _write_output(tmp_path)
    # missing sidecar
    assert not io.is_complete(out, inp)
    # partial status
    io.write_sidecar(
        out,
        model="demo",
        version="0",
        parameters={},
        objects=objects,
        input_path=inp,
        status="partial",
    )
    assert not io.is_complete(out, inp)
    io.write_sidecar(out, model="demo", version="0", parameters={}, objects=objects, input_path=inp)
    assert io.is_complete(out, inp)
    # corrupt sidecar
    good = io.sidecar_path(out).read_text()
    io.sidecar_path(out).write_text(good[: len(good) // 2])
    assert io.read_sidecar(out) is None
    assert not io.is_complete(out, inp)
    io.sidecar_path(out).write_text(good)
    assert io.is_complete(out, inp)
    # output size changed (e.g. truncated copy)
    data = out.read_bytes()
    out.write_bytes(data[:-10])
    assert not io.is_complete(out, inp)
    out.write_bytes(data)
    assert io.is_complete(out, inp)
    # input changed (new mtime) or gone
    st = inp.stat()
    os.utime(inp, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert not io.is_complete(out, inp)
    assert io.is_complete(out)  # input not checked
    os.utime(inp, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert io.is_complete(out, inp)
    inp.unlink()
    assert not io.is_complete(out, inp)
    # output missing
    out.unlink()
    assert not io.is_complete(out)


def test_write_json_atomic(tmp_path, monkeypatch):
    p = tmp_path / "a.json"
    io.write_json_atomic(p, {"x": np.float32(1.5), "arr": np.arange(3), "t": (1, 2)})
    assert json.loads(p.read_text()) == {"x": 1.5, "arr": [0, 1, 2], "t": [1, 2]}
    with pytest.raises(TypeError):
        io.write_json_atomic(p, {"bad": object()})
    assert json.loads(p.read_text())["x"] == 1.5  # untouched
    assert _tree(tmp_path) == ["a.json"]

    def failing_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        io.write_json_atomic(p, {"x": 2})
    assert json.loads(p.read_text())["x"] == 1.5
    assert _tree(tmp_path) == ["a.json"]


def test_zarr_output_sidecar_size(tmp_path):
    inp, _, objects = _write_output(tmp_path)
    out = io.write_labels(tmp_path / "z.zarr", _labels3d(), axes="ZYX")
    io.write_sidecar(out, model="demo", version="0", parameters={}, objects=objects, input_path=inp)
    assert io.sidecar_path(out).name == "z.zarr.json"
    assert io.is_complete(out, inp)


# --------------------------------------------------------------------------- summaries


def test_label_objects_summary_3d_and_2d():
    lab = _labels3d()
    s = io.label_objects_summary(lab)
    assert [o["id"] for o in s] == [1, 2, 9]
    assert s[0] == {
        "id": 1,
        "slice_range": [1, 2],
        "area": 48,
        "bbox": [1, 2, 3, 3, 6, 9],
        "score": None,
    }
    assert s[2]["bbox"] == [2, 15, 20, 4, 20, 30]
    two = io.label_objects_summary(lab[1], scores=[0.0, 0.5])
    assert two == [{"id": 1, "slice_range": None, "area": 24, "bbox": [2, 3, 6, 9], "score": 0.5}]
    assert io.label_objects_summary(np.zeros((3, 3), np.uint16)) == []


def test_label_objects_summary_sparse_huge_ids():
    lab = np.zeros((3, 6, 6), np.uint32)
    lab[0, 1:3, 1:3] = 4_000_000_000
    lab[1:3, 4, 4] = 5
    s = io.label_objects_summary(lab)
    assert [(o["id"], o["area"], o["slice_range"]) for o in s] == [
        (5, 2, [1, 2]),
        (4_000_000_000, 4, [0, 0]),
    ]
    assert s[1]["bbox"] == [0, 1, 1, 1, 3, 3]
    full = np.full((2, 2), 7_000_000, np.uint32)  # no background at all
    assert io.label_objects_summary(full)[0]["area"] == 4


def test_core_does_not_import_napari():
    import subprocess
    import sys

    code = (
        "import sys, napari_sam.io; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui', 'torch')); "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("flavour", ["imagej", "ome", "shaped"])
@pytest.mark.parametrize("compression", ["zlib", None])
@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.9])
def test_truncated_tiff_never_reads_as_a_shorter_stack(tmp_path, capfd, flavour, compression,
                                                       fraction):
    """tifffile returns fewer slices (or one page) from a truncated file, logging a line on
    stderr; read_image raises instead, and prints nothing."""
    data = (np.random.default_rng(0).random((3, 64, 64)) * 1000).astype(np.uint16)
    kw = {"imagej": {"imagej": True, "metadata": {"axes": "ZYX"}}, "ome": {"ome": True},
          "shaped": {"photometric": "minisblack"}}[flavour]
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, data, compression=compression, **kw)
    raw = good.read_bytes()
    bad = tmp_path / "cut.tif"
    bad.write_bytes(raw[: int(len(raw) * fraction)])
    for lazy in (True, False):
        with pytest.raises(io.ImageReadError, match="truncated") as exc:
            np.asarray(io.read_image(bad, lazy=lazy).data)
        assert "copy or export it again" in str(exc.value)
    assert capfd.readouterr().err == ""


def test_complex_and_empty_arrays_are_refused(tmp_path):
    np.save(tmp_path / "c.npy", np.ones((2, 8, 8), np.complex64))
    with pytest.raises(io.ImageReadError, match="complex numbers.*numpy.abs"):
        io.read_image(tmp_path / "c.npy")
    np.save(tmp_path / "e.npy", np.ones((4, 0, 8), np.uint8))
    with pytest.raises(io.ImageReadError, match=r"the image is empty \(shape \(4, 0, 8\)\)"):
        io.read_image(tmp_path / "e.npy", lazy=True)
