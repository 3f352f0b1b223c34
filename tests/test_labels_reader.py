"""The npe2 reader of label TIFFs (napari_sam._reader, no viewer): what it takes, what it
refuses (napari then offers its own reader), and the layer data of files written by the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam._reader import get_reader, read_labels_tiff
from napari_sam.io import write_labels


def _ids() -> np.ndarray:
    lab = np.zeros((3, 20, 30), np.uint16)
    lab[1, 4:9, 5:12] = 5
    return lab


@pytest.mark.parametrize(("name", "data"), [
    ("float_labels.tif", _ids().astype(np.float32)),  # no ids
    ("rgb_labels.tif", np.zeros((20, 30, 3), np.uint8)),  # colour
    ("cells.tif", _ids()),  # not one of our names (napari's reader alone gets it)
])
def test_refuses_what_is_no_label_tiff(tmp_path, name, data):
    path = tmp_path / name
    tifffile.imwrite(path, data, photometric="rgb" if data.ndim == 3 and data.shape[-1] == 3
                     else "minisblack")
    assert get_reader(str(path)) is None


def test_refuses_a_stack_of_files_and_a_broken_file(tmp_path):
    path = tmp_path / "a_labels.tif"
    write_labels(path, _ids(), axes="ZYX")
    assert get_reader([str(path), str(path)]) is None
    broken = tmp_path / "b_labels.tif"
    broken.write_bytes(b"not a tiff")
    assert get_reader(str(broken)) is None


def test_cli_labels_come_back_with_scale_and_units(tmp_path):
    """What `napari-sam segment/auto` writes (write_labels, out/<stem>_labels.tif)."""
    path = tmp_path / "stack_labels.TIF"  # napari lower-cases the extension; so do we
    write_labels(path, _ids(), axes="ZYX", pixel_size=(2.0, 0.5, 0.5), unit="um")
    assert get_reader(str(path)) is read_labels_tiff
    ((data, meta, kind),) = read_labels_tiff(str(path))
    assert kind == "labels" and data.dtype == np.uint16 and np.array_equal(data, _ids())
    assert meta["scale"] == pytest.approx((2.0, 0.5, 0.5))
    assert meta["units"] == ("um",) * 3 and meta["name"] == "stack_labels"


def test_pixel_sized_labels_claim_no_unit(tmp_path):
    path = tmp_path / "p_labels.tiff"
    write_labels(path, _ids()[0], axes="YX", pixel_size=(3.0, 3.0), unit="pixel")
    ((data, meta, _),) = get_reader(str(path))(str(path))
    assert data.shape == (20, 30) and meta["scale"] == pytest.approx((3.0, 3.0))
    assert "units" not in meta


@pytest.mark.parametrize("slices", [3, 4])
def test_a_short_stack_without_axes_metadata_is_read_as_slices(tmp_path, slices):
    """tifffile or scikit-image write 3 or 4 slices without axes: the shape alone guesses
    channels, which labels never have."""
    lab = np.zeros((slices, 20, 30), np.uint16)
    lab[-1, 2:6, 3:9] = 7
    path = tmp_path / "exp.v2_labels.tif"
    tifffile.imwrite(path, lab)
    assert get_reader(str(path)) is read_labels_tiff
    ((data, meta, _),) = read_labels_tiff(str(path))
    assert np.array_equal(data, lab) and len(meta["scale"]) == 3
    assert meta["name"] == "exp.v2_labels"  # only the suffix is dropped


def test_declared_channels_are_refused(tmp_path):
    path = tmp_path / "c_labels.tif"
    tifffile.imwrite(path, _ids(), imagej=True, metadata={"axes": "CYX"})
    assert get_reader(str(path)) is None


@pytest.mark.parametrize(("name", "ours"), [
    ("Cells_labels.TIF", True), ("CELLS_labels.tiff", True), ("a_labels.ome.TIF", True),
    ("Cells_Labels.tif", False), ("CELLS_LABELS.TIF", False)])
def test_napari_offers_our_reader_for_a_lower_case_labels_name_only(tmp_path, name, ours):
    """napari (npe2) matches reader patterns case-sensitively but for the extension, so a
    ``_Labels`` name from Windows software is never offered our reader; docs/gui.md says so
    and to rename it (session 41's walk-through)."""
    from pathlib import Path

    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    path = tmp_path / name
    write_labels(path, _ids(), axes="ZYX")
    readers = {r.plugin_name for r in pm.iter_compatible_readers([str(path)])}
    assert ("napari-sam-stacks" in readers) is ours
    assert get_reader(str(path)) is read_labels_tiff  # ours reads it when napari asks
    docs = Path(__file__).resolve().parents[1] / "docs" / "gui.md"
    text = " ".join(docs.read_text().split())
    assert ("`Cells_Labels.tif` or `CELLS_LABELS.TIF` (names from Windows software) open with "
            "napari's reader only" in text)
