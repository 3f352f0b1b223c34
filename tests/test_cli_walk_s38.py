"""A new user's walk-through of the CLI (session 38): per-file notes come before the work on
the file, label images in an input folder, the sidecar's values in effect, truthful progress
units, missing optional packages, prompts-file wording and ``report`` on ``auto`` outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from cli_runner import cli
from stacks import blob_stack

BASE = ["--device", "cpu", "--threads", "1"]


@pytest.fixture
def log_lines(monkeypatch):
    """Every progress update written as a log line (not only after 30 s)."""
    from napari_sam.batch import progress

    monkeypatch.setattr(progress, "LOG_INTERVAL", 0)


def test_auto_says_how_a_stack_is_read_before_segmenting_it(tmp_path, tiny_model, offline_cli,
                                                            log_lines, capsys):
    tifffile.imwrite(tmp_path / "plain.tif", blob_stack())  # no axes metadata
    rc, _, err = cli(["auto", tmp_path / "plain.tif", "-o", tmp_path / "o", "--model",
                      tiny_model, *BASE], capsys)
    assert rc == 0, err
    note = err.index("plain.tif: no metadata names its axes; read as ZYX")
    assert note < err.index("plain.tif: segment everything"), err


def _label_folder(root):
    """A folder as users keep it: an image, its label image and a dim 8-bit image of few grey
    levels whose name says mask (a stain, not labels); all (4, 64, 64)."""
    root.mkdir()
    stack = blob_stack()[:4]
    tifffile.imwrite(root / "image.tif", stack, photometric="minisblack")
    labels = np.zeros((4, 64, 64), np.uint16)
    labels[:, 10:30, 10:30], labels[:, 35:55, 30:60] = 1, 2
    tifffile.imwrite(root / "labels.tif", labels, photometric="minisblack")
    rng = np.random.default_rng(0)
    dim = rng.poisson(np.where(labels > 0, 2.0, 0.3)).astype(np.uint8)  # grey levels 0..~8
    assert len(np.unique(dim)) < 12 and np.mean(dim == 0) > 0.5
    tifffile.imwrite(root / "gfp_mask.tif", dim, photometric="minisblack")
    return root


def test_a_label_image_in_an_input_folder_is_left_out_with_a_note(tmp_path, tiny_model,
                                                                   offline_cli, capsys):
    data = _label_folder(tmp_path / "data")
    base = ["--model", tiny_model, *BASE, "--no-propagate"]
    rc, out, err = cli(["auto", data, "-o", tmp_path / "o", *base], capsys)
    assert rc == 0, err
    assert (f"napari-sam: note: {data / 'labels.tif'} looks like a label image (named "
            "'labels.tif', uint16, ") in err, err
    assert "left out; to include it anyway, pass --include-labels or name the file" in err
    assert err.index("looks like a label image") < err.index("napari-sam: model"), err
    assert sorted(p.name for p in (tmp_path / "o").glob("*_labels.tif")) == [
        "gfp_mask_labels.tif", "image_labels.tif"]  # the 8-bit stain is segmented
    assert "gfp_mask.tif looks like" not in err and "image.tif looks like" not in err

    rc, _, err = cli(["auto", data, "-o", tmp_path / "o2", *base, "--include-labels"], capsys)
    assert rc == 0 and "looks like a label image" not in err, err
    assert (tmp_path / "o2" / "labels_labels.tif").exists()
    rc, _, err = cli(["auto", data / "labels.tif", "-o", tmp_path / "o3", *base], capsys)
    assert rc == 0 and "looks like a label image" not in err, err  # named: segmented
    assert (tmp_path / "o3" / "labels_labels.tif").exists()
    only = tmp_path / "only"
    only.mkdir()
    (data / "labels.tif").rename(only / "labels.tif")
    rc, _, err = cli(["embed", only, "-o", tmp_path / "e", *base[:-1]], capsys)
    assert rc == 2 and "every input found looks like a label image" in err, err
    assert "to include them anyway, pass --include-labels" in err and not (tmp_path / "e").exists()


def test_label_evidence_needs_flat_integer_regions_on_a_background():
    from napari_sam.batch.label_inputs import label_evidence

    labels = np.zeros((64, 64), np.uint16)
    labels[5:20, 5:20], labels[30:60, 30:50] = 3, 7
    assert label_evidence(labels) == "uint16, 80% background 0, 2 flat values on a sampled slice"
    grey = (labels // 3 * 40).astype(np.uint8)  # a clean 8-bit image of few grey levels ...
    noisy = np.random.default_rng(1).poisson(grey / 20 + 0.2).astype(np.uint8)
    assert label_evidence(noisy) is None  # ... as a camera records it: not flat
    assert label_evidence(labels.astype(np.float32)) is None
    assert label_evidence(labels + 5) is None  # no background


@pytest.mark.parametrize("given", [None, 16])
def test_auto_sidecar_records_every_value_it_used(tmp_path, tiny_model, offline_cli, capsys,
                                                  given):
    """``parameters`` keeps what was asked (null: the default); ``parameters_in_effect`` the
    values used, ``points_per_batch`` too (null before), so that a run can be reproduced."""
    tifffile.imwrite(tmp_path / "img.tif", blob_stack()[0])
    extra = [] if given is None else ["--points-per-batch", given]
    rc, _, err = cli(["auto", tmp_path / "img.tif", "-o", tmp_path / "o", "--model", tiny_model,
                      *BASE, "-q", *extra], capsys)
    assert rc == 0, err
    record = json.loads((tmp_path / "o" / "img_labels.tif.json").read_text())
    assert record["parameters"]["points_per_batch"] == given
    effect = record["parameters_in_effect"]
    assert effect["points_per_batch"] == (64 if given is None else 16)  # 64 on the CPU
    assert None not in effect.values() and effect["points_per_side"] != "auto", effect


def _counts(err, prefix):
    """The (done, total, unit) of each log line of ``err`` that starts with ``prefix``."""
    import re

    return [tuple(m.groups()) for m in re.finditer(
        rf"^{re.escape(prefix)}(\d+)/(\d+) ([\w-]+), ", err, re.M)]


@pytest.mark.parametrize("command", ["auto", "segment"])
def test_propagation_progress_counts_object_slices_by_name(tmp_path, tiny_model, offline_cli,
                                                           log_lines, capsys, command):
    """"propagate: 1856/1856 slices" was 58 objects x 32 slices: the count is named so."""
    stack = blob_stack()
    tifffile.imwrite(tmp_path / "a.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    extra = ["--pred-iou-thresh", "0", "--stability-score-thresh", "0"]  # (a random model)
    if command == "segment":
        (tmp_path / "p.csv").write_text("object_id,slice,row,col,label\n1,3,32,32,1\n"
                                        "2,3,10,10,1\n")
        extra = ["-p", tmp_path / "p.csv"]
    rc, _, err = cli([command, tmp_path / "a.tif", "-o", tmp_path / "o", "--model", tiny_model,
                      *BASE, *extra], capsys)
    assert rc == 0, err
    z = len(stack)
    named = [ln for ln in err.splitlines() if ln.startswith("a.tif: propagate ")]
    assert named, err
    k = int(named[-1].split("propagate ")[1].split(" object")[0])
    counts = _counts(err, f"a.tif: propagate {k} object{'s' if k != 1 else ''} x {z} slices: ")
    assert counts and counts[-1] == (str(k * z), str(k * z), "object-slices"), err
    assert "a.tif: propagate: " not in err, err
    if command == "segment":
        assert k == 2


@pytest.mark.parametrize("case", ["export onnx", "--workers", "--scheduler"])
def test_a_missing_optional_package_is_a_usage_error_with_its_install_line(
        tmp_path, tiny_model, offline_cli, capsys, monkeypatch, case):
    """``export onnx`` without onnx exited 1 with no usage line, ``--workers`` without dask
    2 with one: both are 2, the usage line, and the pip line of the extra."""
    from cli_runner import error_line

    if case == "export onnx":
        monkeypatch.setitem(__import__("sys").modules, "onnx", None)  # import onnx fails
        argv, usage, extra = (["export", "onnx", tiny_model, "-o", tmp_path / "x"],
                              "usage: napari-sam export onnx --help", "onnx")
    else:
        monkeypatch.setitem(__import__("sys").modules, "distributed", None)
        tifffile.imwrite(tmp_path / "a.tif", blob_stack()[0])
        value = "2" if case == "--workers" else "tcp://127.0.0.1:8786"
        argv, usage, extra = (["auto", tmp_path / "a.tif", "-o", tmp_path / "o", case, value],
                              "usage: napari-sam auto --help", "distributed")
    rc, _, err = cli(argv, capsys)
    assert rc == 2, err
    assert err.splitlines()[0] == usage, err
    assert f'pip install "napari-sam-stacks[{extra}]"' in error_line(err), err


@pytest.mark.parametrize("form", ["csv", "json files", "json list"])
def test_prompts_for_no_input_are_worded_by_the_prompts_files_format(
        tmp_path, tiny_model, offline_cli, capsys, form):
    """A JSON prompts file has no 'file' column: the note names what it has."""
    tifffile.imwrite(tmp_path / "stack.tif", blob_stack(), imagej=True, metadata={"axes": "ZYX"})
    click = {"slice": 3, "points": [[32, 32]], "labels": [1]}
    if form == "csv":
        prompts = tmp_path / "p.csv"
        prompts.write_text("file,object_id,slice,row,col,label\nstack.tif,1,3,32,32,1\n"
                           "stak.tif,1,3,32,32,1\n")
        field = "the 'file' column"
    elif form == "json files":
        prompts = tmp_path / "p.json"
        prompts.write_text(json.dumps({"files": {"stack.tif": {"1": [click]},
                                                 "stak.tif": {"1": [click]}}}))
        field = 'the names under "files"'
    else:
        prompts = tmp_path / "p.json"
        prompts.write_text(json.dumps([{"file": "stack.tif", "id": 1, **click},
                                       {"file": "stak.tif", "id": 1, **click}]))
        field = "the items' \"file\" keys"
    rc, _, err = cli(["segment", tmp_path / "stack.tif", "-o", tmp_path / "o", "-p", prompts,
                      "--model", tiny_model, *BASE], capsys)
    assert rc == 0, err
    assert f"match no input and are ignored; check {field} against the inputs" in err, err
    if form != "csv":
        assert "column" not in err, err

    other = tmp_path / "other.tif"
    tifffile.imwrite(other, blob_stack(), imagej=True, metadata={"axes": "ZYX"})
    rc, _, err = cli(["segment", other, "-o", tmp_path / "o2", "-p", prompts,
                      "--model", tiny_model, *BASE], capsys)
    assert rc == 2 and f"the prompts file's names ({field})" in err, err


def test_report_on_auto_outputs_plots_their_traces(tmp_path, tiny_model, offline_cli, capsys):
    """It said "no propagation traces found ... run segment first" as if auto had not run;
    then (session 38) that auto records none; since session 39 auto records them."""
    tifffile.imwrite(tmp_path / "a.tif", blob_stack(), imagej=True, metadata={"axes": "ZYX"})
    rc, _, err = cli(["auto", tmp_path / "a.tif", "-o", tmp_path / "out", "--model",
                      tiny_model, *BASE, "-q"], capsys)
    assert rc == 0, err
    for target in (tmp_path / "out", tmp_path / "out" / "a_labels.tif"):
        rc, out, err = cli(["report", target, "-q"], capsys)
        assert rc == 0, err
        assert out.splitlines() == [str(tmp_path / "out" / "a_labels.tif.trace.png")], out
