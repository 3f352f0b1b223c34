"""Walkthrough s39 (CLI outputs): what napari-sam did not write is never replaced, even with
``--overwrite``; napari-sam's own companions are not inputs; outputs of inputs inside stores
make no ``.zarr`` folders; the summary table fits names of any width."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cli_runner import cli


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""


def _stack(path: Path, shape=(3, 48, 48), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, (rng.random(shape) * 1000).astype(np.uint16),
                     photometric="minisblack")
    return path


def _tree(root: Path) -> dict:
    """``{relative path: md5}`` of every file under ``root`` (a folder or one file)."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root.parent)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in files}


def _ome_zarr(path: Path) -> Path:
    """A user's OME-Zarr image (v2, two levels, multiscales attributes) at ``path``."""
    import zarr

    g = zarr.open_group(str(path), mode="w", zarr_format=2)
    data = (np.random.default_rng(1).random((3, 48, 48)) * 1000).astype(np.uint16)
    g.create_array("0", data=data, chunks=(1, 48, 48))
    g.create_array("1", data=data[:, ::2, ::2], chunks=(1, 24, 24))
    g.attrs["multiscales"] = [{"version": "0.4", "name": "img", "axes": [
        {"name": a, "type": "space"} for a in "zyx"], "datasets": [
        {"path": str(i), "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, 2.0 ** i, 2.0 ** i]}]} for i in range(2)]}]
    return path


@pytest.mark.parametrize("overwrite", [False, True])
def test_embed_never_replaces_a_users_zarr_store(tmp_path, tiny_model, capsys, overwrite):
    """``embed ecopy/stack.tif -o ecopy/`` beside the user's OME-Zarr ``ecopy/stack.zarr``:
    with ``--overwrite`` too the image stays, byte for byte (was: replaced by embeddings)."""
    import zarr

    folder = tmp_path / "ecopy"
    inp = _stack(folder / "stack.tif")
    store = _ome_zarr(folder / "stack.zarr")
    before = _tree(store)
    argv = ["embed", inp, "-o", folder, "--model", tiny_model, "--device", "cpu", "-q"]
    rc, _, err = cli(argv + (["--overwrite"] if overwrite else []), capsys)
    assert rc == 1, err
    assert f"{store} exists and was not written by napari-sam" in err
    assert "not even with --overwrite" in err and "choose another output folder (-o)" in err
    assert "pass --overwrite" not in err
    assert _tree(store) == before
    g = zarr.open_group(str(store), mode="r")
    assert sorted(g.array_keys()) == ["0", "1"] and "multiscales" in g.attrs
    assert not (folder / "stack.zarr.json").exists()
    assert not any(p.name.endswith(".partial") for p in folder.iterdir())


def test_embed_overwrite_replaces_napari_sams_own_store_without_a_sidecar(tmp_path,
                                                                         tiny_model, capsys):
    """A store ``napari_sam.embed(..., store=)`` (or the dock) wrote has no sidecar but
    napari-sam's mark: ``--overwrite`` replaces it as before, and without it the reason says
    it is napari-sam's (reviewer 158: it was called "not written by napari-sam")."""
    import napari_sam as ns

    folder = tmp_path / "e"
    inp = _stack(folder / "a.tif")
    ns.embed(tifffile.imread(inp), ns.load_model(str(tiny_model)), store=folder / "out" / "a.zarr")
    argv = ["embed", inp, "-o", folder / "out", "--model", tiny_model, "--device", "cpu", "-q"]
    rc, _, err = cli(argv, capsys)
    assert rc == 1 and "was written by napari-sam (an embedding store" in err, err
    assert "not written by napari-sam" not in err and "pass --overwrite" in err
    rc, _, err = cli(argv + ["--overwrite"], capsys)
    assert rc == 0, err
    assert (folder / "out" / "a.zarr.json").is_file()


@pytest.mark.parametrize("command", ["auto", "segment"])
def test_overwrite_never_replaces_a_labels_file_napari_sam_did_not_write(
        tmp_path, tiny_model, capsys, command):
    inp = _stack(tmp_path / "a.tif")
    out = tmp_path / "out"
    mine = out / "a_labels.tif"
    out.mkdir()
    mine.write_bytes(b"my own labels")
    argv = [command, inp, "-o", out, "--model", tiny_model, "--device", "cpu", "-q",
            "--overwrite"]
    if command == "segment":
        csv = tmp_path / "p.csv"
        csv.write_text("file,id,slice,row,col\na.tif,1,1,20,20\n")
        argv += ["-p", csv]
    rc, _, err = cli(argv, capsys)
    assert rc == 1 and "not even with --overwrite" in err, err
    assert mine.read_bytes() == b"my own labels"
    assert not (out / "a_labels.tif.json").exists()


def test_export_overwrite_never_replaces_files_no_export_wrote(tmp_path, tiny_model, capsys):
    """``export onnx -o F --overwrite`` where F holds a user's ``export.json`` (or a
    ``decoder.onnx`` no export.json lists): refused, exit 2, the files unchanged; an earlier
    napari-sam export there is replaced."""
    out = tmp_path / "F"
    out.mkdir()
    (out / "export.json").write_text('{"my": "notes"}\n')
    before = _tree(out)
    argv = ["export", "onnx", tiny_model, "-o", out, "--decoder-only", "-q"]
    rc, _, err = cli([*argv, "--overwrite"], capsys)
    assert rc == 2 and f"{out / 'export.json'} in the output folder was not written" in err
    assert "not even with --overwrite" in err and "pass --overwrite" not in err
    assert _tree(out) == before
    ours = tmp_path / "G"
    assert cli([*argv[:4], ours, *argv[5:]], capsys)[0] == 0
    assert cli([*argv[:4], ours, *argv[5:], "--overwrite"], capsys)[0] == 0


def test_a_glob_leaves_out_napari_sams_own_files_and_non_images(tmp_path, tiny_model, capsys):
    """``auto "g1/*"`` over a folder holding an earlier output, its sidecar, a session file
    and a README: the image is done, the others are left out with a note, exit 0 (was:
    each .json and the README counted FAILED, exit 1); a file named itself still fails."""
    from napari_sam.session import FORMAT

    g1 = tmp_path / "g1"
    inp = _stack(g1 / "a.tif")
    base = ["--model", tiny_model, "--device", "cpu", "--points-per-side", "4"]
    assert cli(["auto", inp, "-o", g1, *base, "-q"], capsys)[0] == 0  # a_labels.tif(.json)
    (g1 / "a.tif.sam-session.json").write_text(json.dumps({"format": FORMAT}))
    # a session's label TIFF its session file no longer names (reviewer 158: segmented)
    tifffile.imwrite(g1 / "a.tif.sam-session.labels-0123456789ab.tif",
                     np.zeros((3, 16, 16), np.uint16))
    (g1 / "README.txt").write_text("acquired on the spinning disk\n")
    rc, stdout, err = cli(["auto", str(g1 / "*"), "-o", tmp_path / "o", *base], capsys)
    assert rc == 0, err
    assert "FAILED" not in stdout + err
    assert (tmp_path / "o" / "a_labels.tif").is_file()
    assert not (tmp_path / "o" / "README_labels.tif").exists()
    assert not any("sam-session.labels" in p.name for p in (tmp_path / "o").iterdir())
    assert "left out 3 of napari-sam's own files" in err and "a_labels.tif.json" in err
    assert "a.tif.sam-session.json" in err
    assert f"left out 1 file that is not an image ({g1 / 'README.txt'})" in err
    rc, stdout, err = cli(["auto", g1 / "README.txt", "-o", tmp_path / "o2", *base], capsys)
    assert rc == 1 and "not a supported image type" in stdout + err


def test_outputs_of_arrays_inside_stores_make_no_zarr_folders(tmp_path, tiny_model, capsys):
    """``auto "e/*.zarr/0"`` wrote ``o/b2r.zarr/0_labels.tif``: a folder named .zarr that is
    no store, which a later ``auto o/ -r`` failed to read. The store's path folds into the
    name (``o/b2r_labels.tif``: level 0 of the first series is the store itself, as named
    alone; ``b2r.zarr/1`` -> ``b2r_1``), and a rerun over the outputs finds only napari-sam's."""
    _ome_zarr(tmp_path / "e" / "b2r.zarr")
    base = ["--model", tiny_model, "--device", "cpu", "--points-per-side", "4", "-q"]
    out = tmp_path / "o"
    rc, _, err = cli(["auto", str(tmp_path / "e" / "*.zarr" / "0"), "-o", out, *base], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["b2r_labels.tif", "b2r_labels.tif.json"]
    rc, _, err = cli(["embed", str(tmp_path / "e" / "*.zarr" / "1"), "-o", out, *base[:4], "-q"],
                     capsys)
    assert rc == 0 and (out / "b2r_1.zarr.json").is_file(), err
    assert not any(p.is_dir() and not (p.parent / f"{p.name}.json").is_file()
                   for p in out.iterdir())
    rc, _, err = cli(["auto", out, "-r", "-o", tmp_path / "o2", *base], capsys)
    assert rc == 2 and "every match is an output of napari-sam" in err, err
    assert "Cannot read image" not in err


def test_the_summary_table_aligns_wide_names_and_caps_long_ones(tmp_path, capsys):
    """The summary's columns line up in terminal columns after é, 日本 and 🦠 names, and a
    200-character name is shortened in the middle (was: the table padded to it)."""
    from napari_sam.batch import JobResult
    from napari_sam.cli.batch_command import summary
    from napari_sam.cli.table_text import NAME_COLUMN, display_width

    long = "x" * 200 + ".tif"
    names = ["emb é.tif", "日本.tif", "🦠.tif", "plain.tif", long]
    results = [JobResult(f"/d/{n}", f"/o/{n}_labels.tif", "failed", reason="bad") for n in names]
    summary(results, len(results), 1.0, names={r.input: n for r, n in zip(results, names)})
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  ")]
    assert len(lines) == 6
    starts = {display_width(ln[: ln.index("bad" if "bad" in ln else "output")]) for ln in lines}
    assert len(starts) == 1, lines  # the third column starts in one terminal column
    assert max(display_width(ln) for ln in lines) < 80
    short = next(ln for ln in lines if "…" in ln)
    assert "xxx….tif" not in short and short.split()[1].endswith("x.tif")
    assert display_width(short.split()[1]) == NAME_COLUMN


def test_a_folder_named_zarr_holding_files_is_a_folder_not_a_store():
    """``data.zarr/img.tif`` (a folder named .zarr holding TIFFs) was named
    ``data_img.tif_labels.tif``, and a preview in ``-o res.zarr`` ``res_a_labels.tif.png``
    (reviewer 158): only an array inside a store folds the store's path into its name."""
    from napari_sam.batch.inputs import output_folder_and_stem, stem_of

    assert stem_of("data.zarr/img.tif") == "img"
    assert stem_of("res.zarr/a_labels.tif") == "a_labels"
    assert output_folder_and_stem("data.zarr/img.tif", "data.zarr") == (Path("data.zarr"), "img")
    assert stem_of("e/b2r.zarr/0") == "b2r" and stem_of("e/b2r.zarr/1") == "b2r_1"
    assert output_folder_and_stem("e/b2r.zarr/1", "b2r.zarr") == (Path("."), "b2r_1")
