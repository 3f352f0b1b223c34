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


def _save_with_our_filter(viewer, name):
    """File > Save Selected Layers... with our writer's filter picked and ``name`` typed."""
    from unittest import mock

    from napari.plugins import _npe2
    from qtpy.QtWidgets import QFileDialog

    ext_str, _ = _npe2.file_extensions_string_for_layers(list(viewer.layers.selection))
    ours = next(f for f in ext_str.split(";;") if "napari-sam" in f)
    with mock.patch.object(QFileDialog, "getSaveFileName", return_value=(name, ours)):
        viewer.window._qt_viewer._save_layers_dialog(selected=True)


def test_save_dialog_adds_tif_to_a_name_without_extension(make_napari_viewer, tmp_path):
    from napari_sam.io import read_image

    viewer = make_napari_viewer()
    viewer.add_labels(_labels(), scale=(3.0, 0.25, 0.25), units=("um",) * 3, name="seg")
    _save_with_our_filter(viewer, str(tmp_path / "seg"))
    assert [p.name for p in tmp_path.iterdir()] == ["seg.tif"]
    back = read_image(tmp_path / "seg.tif")
    assert np.array_equal(back.data, _labels()) and back.data.dtype == np.uint16
    assert back.pixel_size == pytest.approx((3.0, 0.25, 0.25)) and back.unit == "um"


def test_save_dialog_refuses_npy_under_the_tiff_filter(make_napari_viewer, tmp_path,
                                                      notifications):
    """Our filter says TIFF: seg.npy is not written (it would lose the scale); the error
    names the extension and what to type, in one sentence each (no '..')."""
    viewer = make_napari_viewer()
    viewer.add_labels(_labels(), scale=(3.0, 0.25, 0.25), name="seg")
    with pytest.raises(ValueError, match="TIFF files only"):  # napari passes it on
        _save_with_our_filter(viewer, str(tmp_path / "seg.npy"))
    assert list(tmp_path.iterdir()) == []
    (message,) = [m for s, m in notifications if s == "error"]
    assert "TIFF files only, not '.npy'" in message and "'seg.tif'" in message
    assert ".." not in message and "Nothing was written." in message


def test_docs_name_our_save_filter_as_napari_lists_it(make_napari_viewer):
    """docs/gui.md tells which file type to pick in File > Save Selected Layers... (napari
    preselects its own labels writer, which drops the scale): by the name napari shows."""
    from pathlib import Path

    from napari.plugins import _npe2

    layer = make_napari_viewer().add_labels(_labels())
    ext_str, _ = _npe2.file_extensions_string_for_layers([layer])
    filters = ext_str.split(";;")
    ours = next(f for f in filters if "napari-sam" in f)
    docs = (Path(__file__).resolve().parents[2] / "docs" / "gui.md").read_text()
    docs = " ".join(docs.replace("\\*", "*").split())
    assert f"*{ours}*" in docs
    assert "napari builtins labels" in docs and any(f.startswith("napari builtins labels")
                                                   for f in filters)


@pytest.mark.parametrize(("typed", "written"), [
    ("seg", "seg.tif"), ("seg.TIFF", "seg.TIFF"), ("seg.tif.", "seg.tif"),
    ("cells_2024.01.05", "cells_2024.01.05.tif"), ("a.ome.tif", "a.ome.tif")])
def test_tiff_name_of_what_was_typed(typed, written):
    from napari_sam._writer import tiff_name

    assert tiff_name(typed) == written
