"""A stack whose file names no axes (tifffile's default, a ``.npy``) is read as a z stack and
propagated with the z rules: a movie saved so was propagated as if its cells ended where
they fade, with no word, and the output metadata did not say how the file was read
(session 34)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from cli_runner import cli
from stacks import blob_stack

NOTE = "no metadata names its axes; read as ZYX (6, 64, 64), a z stack: objects are propagated"


def _sidecar(out, stem):
    return json.loads((out / f"{stem}_labels.tif.json").read_text())


@pytest.fixture
def inputs(tmp_path):
    stack = blob_stack()
    d = tmp_path / "d"
    d.mkdir()
    tifffile.imwrite(d / "plain.tif", stack)  # shape only: axes "QYX"
    np.save(d / "plain_npy.npy", stack)
    tifffile.imwrite(d / "movie.tif", stack, imagej=True, metadata={"axes": "TYX"})
    return d


def test_auto_notes_a_stack_read_with_guessed_axes_and_records_how_it_was_read(
        tmp_path, inputs, tiny_model, offline_cli, capsys):
    base = ["auto", "--model", tiny_model, "--device", "cpu", "--threads", "1"]
    rc, _, err = cli([*base, inputs, "-o", tmp_path / "o1"], capsys)
    assert rc == 0, err
    for name in ("plain.tif", "plain_npy.npy"):
        assert f"napari-sam: note: {name}: {NOTE} along z" in err, err
        assert "if its first axis is time (a movie), rerun with --axes TYX" in err, err
    assert "movie.tif: no metadata" not in err, err
    out = tmp_path / "o1"
    assert {k: _sidecar(out, "plain")["extra"][k] for k in ("axes", "axes_from")} == {
        "axes": "ZYX", "axes_from": "guessed"}
    assert _sidecar(out, "plain_npy")["extra"]["axes_from"] == "guessed"
    assert {k: _sidecar(out, "movie")["extra"][k] for k in ("axes", "axes_from")} == {
        "axes": "TYX", "axes_from": "metadata"}

    rc, _, err = cli([*base, inputs / "plain.tif", "-o", tmp_path / "o2", "--axes", "TYX"],
                     capsys)
    assert rc == 0 and "no metadata names its axes" not in err, err
    assert {k: _sidecar(tmp_path / "o2", "plain")["extra"][k] for k in ("axes", "axes_from")} == {
        "axes": "TYX", "axes_from": "--axes"}

    rc, _, err = cli([*base, inputs / "plain.tif", "-o", tmp_path / "o3", "--no-propagate"],
                     capsys)  # linking alone does not depend on the first axis
    assert rc == 0 and "no metadata names its axes" not in err, err
    assert _sidecar(tmp_path / "o3", "plain")["extra"]["axes_from"] == "guessed"


def test_segment_notes_it_too_and_embed_does_not(tmp_path, inputs, tiny_model, offline_cli,
                                                 capsys):
    prompts = tmp_path / "p.csv"
    prompts.write_text("object_id,slice,row,col,label\n1,3,32,32,1\n")
    rc, _, err = cli(["segment", inputs / "plain.tif", "-o", tmp_path / "o", "-p", prompts,
                      "--model", tiny_model, "--device", "cpu"], capsys)
    assert rc == 0, err
    assert f"napari-sam: note: plain.tif: {NOTE} along z" in err, err
    assert _sidecar(tmp_path / "o", "plain")["extra"]["axes"] == "ZYX"
    rc, _, err = cli(["embed", inputs / "plain.tif", "-o", tmp_path / "e", "--model", tiny_model,
                      "--device", "cpu"], capsys)
    assert rc == 0 and "no metadata names its axes" not in err, err


def test_segment_along_t_gets_no_z_note(tmp_path, inputs, tiny_model, offline_cli, capsys):
    prompts = tmp_path / "p.csv"
    prompts.write_text("object_id,slice,row,col,label\n1,3,32,32,1\n")
    rc, _, err = cli(["segment", inputs / "plain.tif", "-o", tmp_path / "o", "-p", prompts,
                      "--model", tiny_model, "--device", "cpu", "--axis-kind", "t"], capsys)
    assert rc == 0 and "no metadata names its axes" not in err, err
