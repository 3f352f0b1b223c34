"""The labels writer: compressed TIFF, scale kept as pixel size, atomic, via napari's save."""

from __future__ import annotations

import numpy as np
import pytest


def _labels():
    lab = np.zeros((4, 30, 40), np.uint16)
    lab[1, 5:10, 5:12] = 3
    lab[2, 20:25, 30:38] = 700
    return lab


def test_writer_function_keeps_data_and_scale(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    from napari_sam._writer import write_labels_tiff

    lab = _labels()
    out = tmp_path / "labels.tif"
    written = write_labels_tiff(str(out), lab, {"scale": (2.0, 0.5, 0.5), "name": "seg"})
    assert written == [str(out)]
    with tifffile.TiffFile(out) as tif:
        assert np.array_equal(tif.asarray(), lab)
        page = tif.pages[0]
        assert page.compression != tifffile.COMPRESSION.NONE
        xres = page.tags["XResolution"].value
        assert xres[0] / xres[1] == pytest.approx(2.0)  # 1 / 0.5 pixels per unit
        assert tif.imagej_metadata["spacing"] == pytest.approx(2.0)
    assert not [p for p in tmp_path.iterdir() if p.name != "labels.tif"]  # no temporaries


def test_writer_drops_our_singleton_channel_axis(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    from napari_sam._writer import write_labels_tiff

    lab = _labels()[:, None]  # (Z, 1, Y, X) as the widget makes for channel images
    out = tmp_path / "c.tif"
    write_labels_tiff(str(out), lab, {"scale": (1.0, 3.0, 1.0, 1.0)})
    assert np.array_equal(tifffile.imread(out), lab[:, 0])


def test_save_labels_layer_through_napari(make_napari_viewer, tmp_path):
    tifffile = pytest.importorskip("tifffile")
    viewer = make_napari_viewer()
    layer = viewer.add_labels(_labels(), scale=(3.0, 0.25, 0.25), name="seg")
    out = tmp_path / "seg.tif"
    paths = layer.save(str(out), plugin="napari-sam-stacks")
    assert paths == [str(out)]
    with tifffile.TiffFile(out) as tif:
        assert np.array_equal(tif.asarray(), layer.data)
        xres = tif.pages[0].tags["XResolution"].value
        assert xres[0] / xres[1] == pytest.approx(4.0)


def test_save_through_napari_keeps_the_layers_units(make_napari_viewer, tmp_path):
    """A layer in nm is saved in nm; one in napari's default pixels claims no micron; both
    read back (napari_sam.io.read_image) with the layer's scale."""
    tifffile = pytest.importorskip("tifffile")
    from napari_sam.io import read_image

    viewer = make_napari_viewer()
    scale = (3.0, 0.25, 0.25)
    for name, units, written, read in (("nm", ("nm",) * 3, "nm", "nm"),
                                       ("px", None, "pixel", None)):
        kwargs = {"units": units} if units else {}
        layer = viewer.add_labels(_labels(), scale=scale, name=name, **kwargs)
        out = tmp_path / f"{name}.tif"
        assert layer.save(str(out), plugin="napari-sam-stacks") == [str(out)]
        with tifffile.TiffFile(out) as tif:
            assert tif.imagej_metadata["unit"] == written
        back = read_image(out)
        assert np.array_equal(np.asarray(back.data), layer.data)
        assert back.pixel_size == pytest.approx(scale) and back.unit == read
