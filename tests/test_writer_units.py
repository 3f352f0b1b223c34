"""The labels writer keeps the layer's units: a layer in pixels claims no physical unit, a
layer in lengths writes that unit (other axes converted to it), and napari_sam.io.read_image
reads the same scale back (napari_sam._writer; no viewer needed)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tifffile

from napari_sam._writer import physical_scale, write_labels_tiff
from napari_sam.io import read_image


def _labels(big: bool = False) -> np.ndarray:
    lab = np.zeros((4, 30, 40), np.uint32 if big else np.uint16)
    lab[1, 5:10, 5:12] = 3
    lab[2, 20:25, 30:38] = 70_000 if big else 700  # above uint16: an OME-TIFF
    return lab


def _layer_meta(data, **kwargs) -> dict:
    """The metadata napari hands the writer for a labels layer made with ``kwargs``."""
    from napari.layers import Labels

    _, meta, _ = Labels(data, **kwargs).as_layer_data_tuple()
    return meta


def _save(tmp_path, data, meta, name="seg.tif"):
    out = tmp_path / name
    assert write_labels_tiff(str(out), data, meta) == [str(out)]
    with tifffile.TiffFile(out) as tif:
        assert np.array_equal(tif.asarray(), data)
        return (tif.imagej_metadata or {}), (tif.ome_metadata or ""), read_image(out)


def test_a_layer_in_pixels_with_a_scale_claims_no_micron(tmp_path):
    meta = _layer_meta(_labels(), scale=(2.0, 0.5, 0.5))
    assert [str(u) for u in meta["units"]] == ["pixel"] * 3  # napari's default
    ij, _, back = _save(tmp_path, _labels(), meta)
    assert ij["unit"] == "pixel" and ij["spacing"] == pytest.approx(2.0)
    assert back.pixel_size == pytest.approx((2.0, 0.5, 0.5)) and back.unit is None


def test_a_layer_in_pixels_without_a_scale_writes_no_calibration(tmp_path):
    ij, _, back = _save(tmp_path, _labels(), _layer_meta(_labels()))
    assert "unit" not in ij and "spacing" not in ij
    assert back.pixel_size is None and back.unit is None


@pytest.mark.parametrize(("units", "written", "read"), [
    (("nm", "nm", "nm"), "nm", "nm"),
    (("micrometer",) * 3, "micron", "um"),
    (("angstrom",) * 3, "angstrom", "angstrom"),  # ImageJ metadata is ASCII
])
def test_a_layer_in_lengths_writes_its_unit(tmp_path, units, written, read):
    ij, _, back = _save(tmp_path, _labels(), _layer_meta(_labels(), scale=(2.0, 0.5, 0.5),
                                                         units=units))
    assert ij["unit"] == written
    assert back.pixel_size == pytest.approx((2.0, 0.5, 0.5)) and back.unit == read


def test_a_z_axis_in_another_length_unit_is_converted(tmp_path):
    meta = _layer_meta(_labels(), scale=(2.0, 0.5, 0.5), units=("mm", "um", "um"))
    ij, _, back = _save(tmp_path, _labels(), meta)
    assert ij["unit"] == "micron" and ij["spacing"] == pytest.approx(2000.0)  # 2 mm
    assert back.pixel_size == pytest.approx((2000.0, 0.5, 0.5)) and back.unit == "um"


@pytest.mark.parametrize(("units", "unit_attr", "read"), [
    (None, 'PhysicalSizeXUnit="pixel"', None),
    (("nm",) * 3, 'PhysicalSizeXUnit="nm"', "nm"),
    (("angstrom",) * 3, 'PhysicalSizeXUnit="Å"', "Å"),  # OME's symbol, not ImageJ's name
])
def test_ome_tiff_labels_write_the_layers_unit(tmp_path, units, unit_attr, read):
    kwargs = {"scale": (2.0, 0.5, 0.5)} | ({"units": units} if units else {})
    _, ome, back = _save(tmp_path, _labels(big=True), _layer_meta(_labels(big=True), **kwargs))
    assert unit_attr in ome and "µm" not in ome
    assert re.search(r'PhysicalSizeZ="2(\.0)?"', ome)
    assert back.pixel_size == pytest.approx((2.0, 0.5, 0.5)) and back.unit == read


def test_the_units_of_a_dropped_channel_axis_are_dropped_too(tmp_path):
    lab = _labels()[:, None]  # (Z, 1, Y, X) as the widget makes for channel images
    meta = _layer_meta(lab, scale=(2.0, 1.0, 0.5, 0.5), units=("um", "pixel", "um", "um"))
    out = tmp_path / "c.tif"
    write_labels_tiff(str(out), lab, meta)
    back = read_image(out)
    assert np.array_equal(tifffile.imread(out), lab[:, 0])
    assert back.pixel_size == pytest.approx((2.0, 0.5, 0.5)) and back.unit == "um"


@pytest.mark.parametrize(("units", "expected"), [
    (None, ([2.0, 0.5], "pixel")),
    (["pixel", "pixel"], ([2.0, 0.5], "pixel")),
    (["second", "um"], ([2.0, 0.5], "pixel")),  # not all lengths: no physical claim
    (["not-a-unit", "um"], ([2.0, 0.5], "pixel")),
    (["um", "nm"], ([2000.0, 0.5], "nm")),
])
def test_physical_scale(units, expected):
    sizes, unit = physical_scale([2.0, 0.5], units)
    assert unit == expected[1] and sizes == pytest.approx(expected[0])
