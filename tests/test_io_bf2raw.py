"""The bioformats2raw layout of OME-Zarr (what converting microscopy files with
bioformats2raw writes): read through ``read_image`` and the command line, named after the
store; and zarr advice for a ``.zarr`` folder zarr cannot open."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cli_runner import cli
from napari_sam import io as nio
from napari_sam.batch import stem_of

OME_XML = ('<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/'
           'Schemas/OME/2016-06"><Image ID="Image:0"/><Image ID="Image:1"/></OME>')


def _blobs(shape, seed=0) -> np.ndarray:
    """A (Z, Y, X) uint16 stack with one bright ball in the middle and some noise."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    r2 = (z - shape[0] // 2) ** 2 * 4 + (y - shape[1] // 2) ** 2 + (x - shape[2] // 2) ** 2
    return (rng.random(shape) * 100 + (r2 < 14 ** 2) * 2000).astype(np.uint16)


def _image_group(group, data: np.ndarray, voxel=(2.0, 0.5, 0.5)) -> None:
    """An OME-Zarr 0.4 image as bioformats2raw writes one: (T, C, Z, Y, X) levels ``0`` and
    ``1`` (half in Y and X), '/'-separated chunk keys, scale per level, micrometre axes."""
    datasets = []
    for level in range(2):
        step = 2 ** level
        arr = data[None, None, :, ::step, ::step]
        group.create_array(str(level), data=arr, chunks=(1, 1, 1, 32, 32),
                           chunk_key_encoding={"name": "v2", "separator": "/"})
        datasets.append({"path": str(level), "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, 1.0, voxel[0], voxel[1] * step, voxel[2] * step]}]})
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}] + [
        {"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets,
                                   "name": "image"}]


def bf2raw_store(path, images, *, series_list=True):
    """A bioformats2raw store at ``path`` (zarr v2, as bioformats2raw writes): the root marked
    ``"bioformats2raw.layout": 3``, one image group per array of ``images`` (``0/``,
    ``1/``, ...) and the ``OME`` group with ``METADATA.ome.xml`` and, with ``series_list``,
    its ``series`` attribute."""
    import zarr

    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.attrs["bioformats2raw.layout"] = 3
    for i, data in enumerate(images):
        _image_group(root.create_group(str(i)), data)
    ome = root.create_group("OME")
    if series_list:
        ome.attrs["series"] = [str(i) for i in range(len(images))]
    (path / "OME" / "METADATA.ome.xml").write_text(OME_XML)
    return path


@pytest.mark.parametrize("series_list", [True, False])
def test_read_image_follows_the_layout_to_the_first_series(tmp_path, series_list):
    """``read_image("b2r.zarr")`` said "the zarr group holds 0 arrays [] and no OME-Zarr
    multiscales"; it now reads series 0's full-resolution level with its axes and voxel size,
    and records the series it read and the others (with or without OME's ``series`` list)."""
    first, second = _blobs((6, 64, 64)), _blobs((4, 48, 48), seed=1)
    store = bf2raw_store(tmp_path / "b2r.zarr", [first, second], series_list=series_list)
    assert (store / "0" / "0" / "0" / "0" / "0" / "0").is_dir()  # '/' chunk keys
    img = nio.read_image(store, lazy=True)
    assert img.axes == "TCZYX" and img.shape == (1, 1, 6, 64, 64)
    assert img.pixel_size == (2.0, 0.5, 0.5) and img.unit == "um"
    np.testing.assert_array_equal(np.asarray(img.data[0, 0]), first)
    md = img.metadata
    assert md["format"] == "ome-zarr" and md["series"] == "0" and md["series_count"] == 2
    assert md["series_paths"] == [str(store / "0"), str(store / "1")]
    assert md["other_series"] == [("TCZYX", (1, 1, 4, 48, 48))]
    std = nio.read_image(store / "1").to_standard()  # another series: by its group
    assert std.axes == "ZYX" and std.data.shape == (4, 48, 48)


def test_segment_a_bioformats2raw_store_names_the_output_after_it(tmp_path, tiny_model,
                                                                 capsys):
    """``napari-sam segment b2r.zarr`` failed to read the store; it now segments series 0
    into ``b2r_labels.tif`` (voxel size kept) and says the other series was not read and how
    to pick it. ``b2r.zarr/0`` and ``stack.zarr/0`` wrote one ``0_labels.tif`` ("several
    inputs would write the same output"): each is now named after its store, and a level
    opened directly reads its axes and voxel size from its group's multiscales."""
    data = tmp_path / "e"
    data.mkdir()
    store = bf2raw_store(data / "b2r.zarr", [_blobs((6, 64, 64)), _blobs((4, 48, 48), 1)])
    (tmp_path / "p.csv").write_text("id,slice,row,col\n1,3,32,32\n")
    common = ["-p", tmp_path / "p.csv", "--model", tiny_model, "--device", "cpu",
              "--iou-threshold", "0", "--min-area", "0"]
    rc, _, err = cli(["segment", store, "-o", tmp_path / "o", *common], capsys)
    assert rc == 0, err
    out = tmp_path / "o" / "b2r_labels.tif"
    with tifffile.TiffFile(out) as tif:
        assert tif.asarray().shape == (6, 64, 64)
        assert tif.imagej_metadata["spacing"] == pytest.approx(2.0)
    assert "the file holds 2 image series; only the first (ZYX (6, 64, 64))" in err
    assert f"pass each one's group, e.g. {str(store / '1')!r}" in err

    import zarr
    other = zarr.open_group(str(data / "stack.zarr"), mode="w", zarr_format=2)
    _image_group(other, _blobs((6, 64, 64), 2))
    rc, _, err = cli(["segment", store / "0", data / "stack.zarr" / "0", "-o", tmp_path / "o2",
                      *common], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "o2").glob("*.tif")) == [
        "b2r_labels.tif", "stack_labels.tif"]
    with tifffile.TiffFile(tmp_path / "o2" / "stack_labels.tif") as tif:  # the level's
        assert tif.asarray().shape == (6, 64, 64)  # axes and voxel size: its group's
        assert tif.imagej_metadata["spacing"] == pytest.approx(2.0)


def test_output_stems_of_paths_inside_a_zarr_store():
    """A path inside a store is named after the store (its first series or full-resolution
    level ``0`` is the store's image); other groups add their names."""
    assert stem_of("e/b2r.zarr/0") == "b2r"
    assert stem_of("e/stack.zarr/0") == "stack"
    assert stem_of("e/b2r.zarr/1") == "b2r_1"
    assert stem_of("plate.zarr/A/1/0") == "plate_A_1"
    assert stem_of("b.zarr") == "b" and stem_of("x/a.ome.tif") == "a"


def test_a_zarr_folder_zarr_cannot_open_gets_zarr_advice(tmp_path):
    """A folder named ``notzarr.zarr`` holding TIFFs was told to "Check that the file is a
    complete TIFF ..."; it is now told it has no zarr metadata, what it holds and what to
    do."""
    folder = tmp_path / "notzarr.zarr"
    folder.mkdir()
    tifffile.imwrite(folder / "x.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(nio.ImageReadError) as info:
        nio.read_image(folder)
    msg = str(info.value)
    assert "not a readable zarr store" in msg and "TIFF" not in msg.split("). ", 1)[1]
    assert "no zarr metadata (.zarray, .zgroup, zarr.json)" in msg
    assert "it holds x.tif" in msg and "pass the files themselves" in msg


def test_a_zarr_v3_bioformats2raw_store_reads_the_series_omes_list_names_first(tmp_path):
    """The OME-Zarr 0.5 form (zarr v3, attributes under ``ome``): the series are read in the
    order of OME's ``series`` (names, not numbers), and the second is named to pass."""
    import zarr

    from napari_sam.io.ome_zarr import second_series

    root = zarr.open_group(str(tmp_path / "v3.zarr"), mode="w", zarr_format=3)
    root.attrs["ome"] = {"version": "0.5", "bioformats2raw.layout": 3}
    axes = [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    for value, name in enumerate(["A", "B"]):
        image = root.create_group(name)
        image.create_array("0", data=np.full((3, 32, 32), value, np.uint8))
        image.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": [
            {"path": "0", "coordinateTransformations": [{"type": "scale",
                                                         "scale": [3.0, 1.0, 1.0]}]}]}]}
    root.create_group("OME").attrs["ome"] = {"version": "0.5", "series": ["B", "A"]}
    img = nio.read_image(tmp_path / "v3.zarr")
    assert img.axes == "ZYX" and img.pixel_size == (3.0, 1.0, 1.0) and img.data.max() == 1
    assert img.metadata["series"] == "B" and img.metadata["series_count"] == 2
    assert second_series(tmp_path / "v3.zarr") == tmp_path / "v3.zarr" / "A"
    assert second_series(tmp_path / "v3.zarr" / "A") is None
