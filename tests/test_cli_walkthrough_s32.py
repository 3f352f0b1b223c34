"""Batch runs after session 32's cluster-and-large-data walk-through: an input replaced while
its job runs (acquisition software writes a file, then renames it over the old one) gave
labels of the old data with the new file's fingerprint in the output metadata, marked
complete, so every rerun skipped it. Now the job fails, says why, writes nothing and keeps
what was there; a rerun computes the new file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from cli_runner import cli, md5s


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in offline_cli's surroundings (tests/conftest.py)."""


def _replace_input_when_the_job_starts(monkeypatch, path, new):
    """Rename ``new`` (an array) over ``path`` once the job has started (after its output was
    marked partial), before the runner reads it."""
    import napari_sam.batch.runners as R

    done = []

    def wrap(real):
        def runner(job, ctx, model):
            if not done:
                tmp = path.with_name(".incoming.tif")
                tifffile.imwrite(tmp, new)
                tmp.replace(path)
                done.append(job.input)
            return real(job, ctx, model)
        return runner

    for command in list(R.RUNNERS):
        monkeypatch.setitem(R.RUNNERS, command, wrap(R.RUNNERS[command]))
    return done


@pytest.mark.parametrize("command", ["auto", "embed", "segment"])
def test_an_input_replaced_during_its_job_is_not_taken_as_done(tmp_path, tiny_model, capsys,
                                                               monkeypatch, command):
    from stacks import blob_stack

    data = tmp_path / "data"
    data.mkdir()
    path = data / "x.tif"
    tifffile.imwrite(path, blob_stack(z=6))
    new = blob_stack(z=5, seed=5)
    out = tmp_path / "out"
    argv = [command, str(path), "-o", str(out), "--model", str(tiny_model), "--device", "cpu",
            "-q"]
    if command == "segment":
        csv = tmp_path / "clicks.csv"
        csv.write_text("file,slice,row,col,label,object\nx.tif,1,20,20,1,1\n")
        argv += ["--prompts", str(csv)]
    replaced = _replace_input_when_the_job_starts(monkeypatch, path, new)
    rc, so, err = cli(argv, capsys)
    assert replaced and rc == 1, so + err
    said = so + err
    assert ("x.tif changed while it was being read (a file still being written or replaced "
            "during the run): nothing was written for it; rerun when the file is complete"
            ) in said, said
    output = next(iter(out.glob("x*")), None)
    sidecar = None if output is None else out / f"{output.name}.json"
    if sidecar is not None and sidecar.exists():
        assert json.loads(sidecar.read_text())["status"] != "complete"
    before = md5s(path)

    rc, so, err = cli(argv, capsys)  # (the file is replaced once only)
    assert rc == 0, so + err
    assert md5s(path) == before  # the input is never touched
    if command != "embed":
        labels = tifffile.imread(out / "x_labels.tif")
        assert labels.shape == new.shape  # the new file's, not the old one's (6 slices)
    rc, so, err = cli([a for a in argv if a != "-q"], capsys)  # the per-file line
    assert rc == 0 and "skipped" in so + err, so + err


@pytest.mark.parametrize("planes", [3, 4])
def test_a_stack_of_colour_pages_is_said_to_be_read_so(tmp_path, tiny_model, capsys, planes):
    """A (2, 4, Y, X) uint16 TIFF without axes metadata is stored by tifffile as 2 pages of 4
    colour samples: it was segmented as 2 RGBA slices (the 4th plane dropped as alpha) with
    no note, where the 2D case had one. The note names the way out (--axes ZCYX --channel N),
    and that way segments one plane."""
    rng = np.random.default_rng(0)
    path = tmp_path / "planes.tif"
    tifffile.imwrite(path, rng.integers(0, 999, (2, planes, 48, 40)).astype(np.uint16))
    argv = ["auto", str(path), "-o", str(tmp_path / "out"), "--model", str(tiny_model),
            "--device", "cpu"]
    rc, so, err = cli(argv, capsys)
    assert rc == 0, so + err
    alpha = ", the 4th dropped as alpha" if planes == 4 else ""
    assert ("napari-sam: note: planes.tif: read as 2 slices of colour images (each of the "
            f"file's 2 pages stores {planes} planes as colour samples, read as red, green, "
            f"blue{alpha}); if the planes are channels (stains), rerun with --axes ZCYX "
            f"--channel N (0 to {planes - 1})") in err, err
    rc, so, err = cli([*argv, "--axes", "ZCYX", "--channel", "1", "--overwrite"], capsys)
    assert rc == 0 and "colour images" not in err, err
    assert tifffile.imread(tmp_path / "out" / "planes_labels.tif").shape == (2, 48, 40)
