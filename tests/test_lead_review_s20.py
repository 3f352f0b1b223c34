"""Mends of session 20's reviews outside the fixers' files: SAM 2's unused negative points
said by the CLI, and the output metadata's ``is_demo`` for the bundled demo loaded by path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cli_runner import cli
from sam2_checkpoint import save_sam2_checkpoint

pytestmark = pytest.mark.timeout(900)


@pytest.fixture
def stack_file(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 3000, (5, 40, 48)).astype(np.uint16)
    stack[:, 8:30, 10:34] += 4000
    path = tmp_path / "data" / "stack.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "ZYX"})
    return path


def test_sam2_unused_negative_points_are_a_note_and_in_the_metadata(tmp_path, stack_file,
                                                                    offline_cli, capsys):
    """Negative points on a slice without a positive point of the object: SAM 2 does not use
    them. ``segment --method sam2`` says so as a note naming the file, the object and the
    slice (not a raw Python warning line), and the output metadata keeps the note."""
    model = save_sam2_checkpoint(tmp_path / "sam2.pt")
    csv = tmp_path / "p.csv"
    csv.write_text("file,id,slice,row,col,label\n,1,2,20,24,1\n,1,4,20,24,0\n")
    rc, _, err = cli(["segment", stack_file.parent, "-o", tmp_path / "out", "-p", csv,
                      "--model", model, "--method", "sam2", "--device", "cpu"], capsys)
    assert rc == 0, err
    tag = "napari-sam: note: stack.tif: "  # after the progress bar's cursor codes
    notes = [ln[ln.index(tag):] for ln in err.splitlines() if tag in ln]
    assert len(notes) == 1, err
    assert "object 1" in notes[0] and "slice 4" in notes[0] and "not used" in notes[0]
    assert "UserWarning" not in err
    meta = json.loads((tmp_path / "out" / "stack_labels.tif.json").read_text())
    assert meta["extra"]["notes"] == [notes[0].split("stack.tif: ", 1)[1]]


def test_the_bundled_demo_loaded_by_its_path_is_the_demo_in_the_metadata(
        tmp_path, stack_file, tiny_model, offline_cli, capsys):
    """``--model .../weights/demo.pt`` is the demo model (``is_demo`` true in the output
    metadata, as with ``--model demo``); another CNN checkpoint is not."""
    from napari_sam.models.registry import where

    demo = where("demo")
    if not demo.is_file():
        reason = f"the bundled demo model is not installed ({demo} is missing)"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    image = tmp_path / "data" / "one.tif"
    tifffile.imwrite(image, tifffile.imread(stack_file)[2])
    stack_file.unlink()
    for model, want in ((demo, True), ("demo", True), (tiny_model, False)):
        out = tmp_path / f"out-{want}-{Path(str(model)).name}"
        rc, _, err = cli(["auto", image, "-o", out, "--model", model, "--device", "cpu",
                          "-q"], capsys)
        assert rc == 0, err
        meta = json.loads((out / "one_labels.tif.json").read_text())
        assert meta["model"]["is_demo"] is want, (model, meta["model"])


def test_a_rerun_over_a_zarr_input_rewritten_in_place_recomputes(tmp_path, tiny_model,
                                                                 offline_cli, capsys):
    """Another acquisition of the same shape written into a zarr input (its folder's size
    and mtime unchanged): the rerun recomputes the labels instead of skipping the old ones."""
    import zarr

    rng = np.random.default_rng(0)
    a = (rng.random((2, 64, 64)) * 1000).astype(np.uint16)
    store = tmp_path / "data" / "raw.zarr"
    z = zarr.create_array(str(store), shape=a.shape, chunks=(1, 64, 64), dtype=a.dtype,
                          compressors=None)
    z[:] = a
    argv = ["auto", store, "-o", tmp_path / "out", "--model", tiny_model, "--device", "cpu",
            "--points-per-side", "4", "-q"]
    rc, _, err = cli(argv, capsys)
    assert rc == 0, err
    zarr.open_array(str(store), mode="r+")[:] = a[::-1].copy()  # other pixels, same size
    rc, out, err = cli(argv[:-1], capsys)
    assert rc == 0, err
    assert "1 done (1 replaced an earlier output), 0 skipped" in out, out
    assert "(recomputed: the input changed)" in out, out


def _ome_zarr(path: Path, data: np.ndarray) -> Path:
    """An OME-Zarr 0.4 group with two resolution levels ("0", "1")."""
    import zarr

    group = zarr.open_group(str(path), mode="w")
    for level, arr in enumerate([data, data[:, ::2, ::2]]):
        group.create_array(str(level), shape=arr.shape, dtype=arr.dtype,
                           chunks=(1, *arr.shape[1:]))[...] = arr
    axes = [{"name": n, "type": "space"} for n in "zyx"]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [
        {"path": str(level), "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, 2.0 ** level, 2.0 ** level]}]}
        for level in (0, 1)]}]
    return path


def test_a_zarr_store_in_a_folder_is_one_input_and_never_searched_inside(tmp_path):
    """``auto folder/ -r`` and a ``folder/**/*`` glob over a folder holding an OME-Zarr: the
    store is one input; its resolution levels and chunk files are not inputs (they were
    segmented as images of their own, and outputs were written inside the user's store)."""
    from napari_sam.batch.inputs import collect_inputs

    data = (np.random.default_rng(0).random((2, 32, 32)) * 1000).astype(np.uint16)
    store = _ome_zarr(tmp_path / "rec" / "pos1" / "nuc.ome.zarr", data)
    tif = tmp_path / "rec" / "pos2" / "img.tif"
    tif.parent.mkdir()
    tifffile.imwrite(tif, data)
    want = [store, tif]
    assert collect_inputs([tmp_path / "rec"], recursive=True) == want
    assert collect_inputs([str(tmp_path / "rec" / "**" / "*")]) == want
    # the arrays of a store named by a glob that does not match the store itself stay inputs
    assert collect_inputs([str(store / "[0-9]")]) == [store / "0", store / "1"]


def test_an_ome_zarr_scale_for_every_level_multiplies_the_levels_scale(tmp_path):
    """OME-NGFF: a ``coordinateTransformations`` scale on the multiscale applies after each
    dataset's own, so the voxel size is their product (it was read as the dataset's only)."""
    import zarr

    from napari_sam import io as nio

    data = np.zeros((2, 16, 16), np.uint16)
    store = _ome_zarr(tmp_path / "x.ome.zarr", data)
    group = zarr.open_group(str(store), mode="r+")
    ms = group.attrs["multiscales"]
    ms[0]["coordinateTransformations"] = [{"type": "scale", "scale": [2.0, 0.5, 0.5]}]
    group.attrs["multiscales"] = ms
    image = nio.read_image(store)
    assert image.axes == "ZYX"
    assert image.pixel_size == pytest.approx((2.0, 0.5, 0.5))


def test_a_npy_stack_read_with_guessed_axes_into_elongated_slices_gets_a_note(
        tmp_path, tiny_model, offline_cli, capsys):
    """A (Y, X, Z) ``.npy`` (no axes metadata) is read as (Z, Y, X): 64 slices of 64 x 8 px.
    The run says so and names ``--axes YXZ``; a (Z, Y, X) one and ``--axes`` get no note."""
    rng = np.random.default_rng(0)
    yxz = tmp_path / "d1" / "yxz.npy"
    yxz.parent.mkdir()
    np.save(yxz, (rng.random((64, 64, 8)) * 1000).astype(np.uint16))
    zyx = tmp_path / "d2" / "zyx.npy"
    zyx.parent.mkdir()
    np.save(zyx, (rng.random((4, 64, 64)) * 1000).astype(np.uint16))
    base = ["embed", "--model", tiny_model, "--device", "cpu"]
    rc, _, err = cli([*base, yxz, "-o", tmp_path / "e1"], capsys)
    assert rc == 0, err
    assert ("napari-sam: note: yxz.npy: no metadata names its axes; read as ZYX (64, 64, 8), "
            "i.e. 64 slices of 64 x 8 px") in err and "--axes YXZ" in err, err
    for argv in ([*base, zyx, "-o", tmp_path / "e2"],
                 [*base, yxz, "-o", tmp_path / "e3", "--axes", "YXZ"]):
        rc, _, err = cli(argv, capsys)
        assert rc == 0, err
        assert "no metadata names its axes" not in err, err


def test_embedding_a_zarr_group_says_to_pass_one_of_its_arrays(tmp_path, tiny_sam):
    """``ns.embed(zarr.open_group("x.ome.zarr"), model)``: a TypeError that names the group
    and what to pass (it said "got (2,)")."""
    import zarr

    import napari_sam as ns

    store = _ome_zarr(tmp_path / "x.ome.zarr", np.zeros((2, 16, 16), np.uint16))
    with pytest.raises(TypeError, match=r"got a zarr group \(arrays \['0', '1'\]\); pass one of "
                       r"its arrays \(an OME-Zarr's full resolution is group\['0'\]\)"):
        ns.embed(zarr.open_group(str(store), mode="r"), tiny_sam)
