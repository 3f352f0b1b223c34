"""What a user meets on the command line after a review of its messages: missing report paths,
empty prompts files, an ONNX export into a used folder, ratios for --crop-overlap-ratio, too
small sample shapes, an unreachable scheduler and session replays that keep their precision.

Every case runs ``napari_sam.cli.main`` in-process and asserts the exit code and the one-line
error (or note) the user reads; none prints a traceback or a Python class name.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cli_runner import cli, error_line
from napari_sam import session as S


@pytest.fixture(autouse=True)
def _offline_and_restored(offline_cli, monkeypatch):
    """:func:`offline_cli`'s surroundings (tests/conftest.py), at the default precision."""
    from napari_sam.device import PRECISION_ENV

    monkeypatch.setenv(PRECISION_ENV, "auto")  # --precision sets it; restored after each test


def _stack(path: Path, shape=(3, 64, 64)) -> Path:
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, (rng.random(shape) * 1000).astype(np.uint16),
                     photometric="minisblack")
    return path


def no_class_names(line: str) -> None:
    for word in ("Error:", "Exception", "overwrite=True", "OSError", "ValueError"):
        assert word not in line, line


# ----------------------------------------------------------------------------- report
def test_report_of_a_missing_path_says_it_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "nope"
    rc, _, err = cli(["report", missing], capsys)
    line = error_line(err)
    assert rc == 2
    assert "no such file or folder" in line and str(missing) in line
    assert "no propagation traces" not in line
    # an existing folder without traces still says so, with exit code 1
    rc, _, err = cli(["report", tmp_path], capsys)
    assert rc == 1 and "no propagation traces found" in error_line(err)


# ----------------------------------------------------------------------------- prompts
@pytest.mark.parametrize("name,text,kind", [
    ("clicks.csv", "id,slice,row,col\n", "rows"),
    ("clicks.csv", "id,slice,row,col\n,,,\n\n", "rows"),
    ("clicks.json", '{"objects": {}}', "objects"),
])
def test_prompts_file_without_prompts_is_named(tmp_path, tiny_model, capsys, name, text, kind):
    inp = _stack(tmp_path / "stack.tif")
    p = tmp_path / name
    p.write_text(text)
    rc, _, err = cli(["segment", inp, "-o", tmp_path / "x", "-p", p, "--model", tiny_model],
                     capsys)
    line = error_line(err)
    assert rc == 2
    assert f"prompts file {str(p)!r} has no prompt {kind}" in line
    assert "match none" not in line
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- export
def test_export_into_a_folder_with_an_earlier_export_says_pass_overwrite(tmp_path, tiny_model,
                                                                         capsys):
    pytest.importorskip("onnx")
    out = tmp_path / "onnx"
    out.mkdir()
    (out / "export.json").write_text("{}")  # what an earlier export left
    rc, _, err = cli(["export", "onnx", tiny_model, "-o", out, "--decoder-only"], capsys)
    line = error_line(err)
    assert rc == 2
    assert str(out) in line and "pass --overwrite" in line
    no_class_names(line)
    assert (out / "export.json").read_text() == "{}"
    # -o naming a file: exit code 2, no class name
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    rc, _, err = cli(["export", "onnx", tiny_model, "-o", a_file, "--decoder-only"], capsys)
    line = error_line(err)
    assert rc == 2 and "is a file, not a folder" in line
    no_class_names(line)


# ----------------------------------------------------------------------------- crop overlap
def test_crop_overlap_ratio_accepts_the_documented_fraction():
    from napari_sam.cli import build_parser

    parser = build_parser()
    base = ["auto", "x.tif", "-o", "o"]
    assert parser.parse_args(base + ["--crop-overlap-ratio", "512/1500"]).crop_overlap_ratio \
        == pytest.approx(512 / 1500)
    assert parser.parse_args(base + ["--crop-overlap-ratio", "0.25"]).crop_overlap_ratio == 0.25
    assert parser.parse_args(base).crop_overlap_ratio == pytest.approx(512 / 1500)
    assert "`--crop-overlap-ratio 512/1500`" in (
        Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()


@pytest.mark.parametrize("value,message", [
    ("512/0", "divides by zero; give a nonzero denominator"),
    ("a/b", "expected a number or a ratio A/B"),
    ("3/2", "from 0 up to (not including) 1, got '3/2' = 1.5"),
    ("1", "from 0 up to (not including) 1, got '1'"),
])
def test_crop_overlap_ratio_errors_are_one_line(tmp_path, capsys, value, message):
    rc, _, err = cli(["auto", tmp_path / "x.tif", "-o", tmp_path / "o",
                      "--crop-overlap-ratio", value], capsys)
    assert rc == 2 and message in err
    assert "ZeroDivisionError" not in err


# ----------------------------------------------------------------------------- sample
@pytest.mark.parametrize("name,shape,need", [
    ("nuclei-3d", "2,8,8", "Y and X of at least 32 and Z of at least 4"),
    ("nuclei-3d", "3,64,64", "Z of at least 4"),
    ("nuclei-2d", "16,64", "Y and X of at least 32"),
])
def test_sample_shape_too_small_is_a_bad_argument(tmp_path, capsys, name, shape, need):
    rc, out, err = cli(["sample", name, "-o", tmp_path / "s", "--shape", shape], capsys)
    line = error_line(err)
    assert rc == 2
    assert f"--shape {shape} is too small for {name}" in line and need in line
    assert not (tmp_path / "s").exists()


def test_sample_smallest_allowed_shape_is_written(tmp_path, capsys):
    rc, out, _ = cli(["sample", "nuclei-3d", "-o", tmp_path / "s", "--shape", "4,32,32",
                      "--no-ground-truth"], capsys)
    assert rc == 0
    assert tifffile.imread(tmp_path / "s" / "nuclei-3d_seed10000.tif").shape == (4, 32, 32)


# ----------------------------------------------------------------------------- scheduler
def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_names_the_address_and_how_to_start_one(tmp_path, tiny_model,
                                                                      capsys, monkeypatch):
    pytest.importorskip("distributed")
    from napari_sam.batch import distributed as D

    monkeypatch.setattr(D, "SCHEDULER_TIMEOUT", "1s")
    address = f"tcp://127.0.0.1:{_unused_port()}"
    inp = _stack(tmp_path / "x.tif")
    rc, _, err = cli(["auto", inp, "-o", tmp_path / "o", "--model", tiny_model,
                      "--scheduler", address], capsys)
    line = error_line(err)
    assert rc == 1
    assert f"cannot reach a dask scheduler at {address}" in line
    assert "dask scheduler" in line and "leave out --scheduler" in line
    no_class_names(line)
    assert "Timed out" not in line


# ----------------------------------------------------------------------------- session replay
def _session(tmp_path: Path, stack: Path, model: Path, precision: str) -> Path:
    sess = S.Session(
        image={"path": str(stack), "name": "stack", "shape": [3, 64, 64]},
        model={"name": str(model), "is_file": True, "precision": precision},
        operations=[{"op": "commit", "kind": "slice", "slice": 1, "overwrite": False,
                     "mask_label": 0,
                     "objects": [{"slice": 1, "points": [[30.0, 30.0]], "labels": [1],
                                  "key": "points", "candidate": 0, "n_candidates": 3,
                                  "mask_prompt": False}],
                     "written": [[0, 0]], "ids": [1]}])
    return S.write_session(sess, tmp_path / "s.sam-session.json")


def test_session_replay_follows_the_recorded_precision(tmp_path, tiny_model, capsys):
    import os

    from napari_sam.device import PRECISION_ENV

    inp = _stack(tmp_path / "stack.tif")
    sess = _session(tmp_path, inp, tiny_model, "fp32")
    rc, _, err = cli(["segment", inp, "-o", tmp_path / "s", "-p", sess, "--device", "cpu"],
                     capsys)
    assert rc == 0, err
    assert "napari-sam: precision fp32: the session's (--precision replays it with another)" \
        in err
    assert os.environ[PRECISION_ENV] == "fp32"  # what every predictor of the run resolves
    # --precision wins over the session's, and no note claims otherwise
    rc, _, err = cli(["segment", inp, "-o", tmp_path / "t", "-p", sess, "--device", "cpu",
                      "--precision", "bf16"], capsys)
    assert rc == 0, err
    assert "precision fp32" not in err and os.environ[PRECISION_ENV] == "bf16"


def test_session_without_a_recorded_precision_keeps_auto(tmp_path, tiny_model, capsys):
    import os

    from napari_sam.device import PRECISION_ENV

    inp = _stack(tmp_path / "stack.tif")
    sess = _session(tmp_path, inp, tiny_model, None)
    rc, _, err = cli(["segment", inp, "-o", tmp_path / "s", "-p", sess, "--device", "cpu"],
                     capsys)
    assert rc == 0, err
    assert "the session's (--precision" not in err
    assert os.environ[PRECISION_ENV] == "auto"


def test_device_note_credits_the_flag_or_the_session_not_the_variable(tmp_path, tiny_model,
                                                                       capsys):
    """The device note says where a precision came from: ``--precision`` or the replayed
    session (it said "set by NAPARI_SAM_PRECISION", a variable the user never set)."""
    inp = _stack(tmp_path / "stack.tif")
    sess = _session(tmp_path, inp, tiny_model, "fp32")
    rc, _, err = cli(["segment", inp, "-o", tmp_path / "s", "-p", sess, "--device", "cpu"],
                     capsys)
    assert rc == 0, err
    assert "napari-sam: device cpu, fp32 (set by the session;" in err, err
    rc, _, err = cli(["auto", inp, "-o", tmp_path / "a", "--device", "cpu", "--model",
                      tiny_model, "--precision", "fp32"], capsys)
    assert rc == 0, err
    assert "napari-sam: device cpu, fp32 (set by --precision;" in err, err
    assert "NAPARI_SAM_PRECISION" not in err


def test_session_replay_says_which_options_it_ignores(tmp_path, tiny_model, capsys):
    """A replay follows the session (SAM 1, its recorded tiling): --method sam2 and --tiling
    are said to be ignored instead of silently (a CSV run refuses --method sam2 with a SAM 1
    model)."""
    inp = _stack(tmp_path / "stack.tif")
    sess = _session(tmp_path, inp, tiny_model, "fp32")
    rc, _, err = cli(["segment", inp, "-o", tmp_path / "s", "-p", sess, "--device", "cpu",
                      "--method", "sam2", "--tiling", "off"], capsys)
    assert rc == 0, err
    assert ("napari-sam: --method sam2 is ignored: a session replays with SAM 1, as the dock "
            "recorded it") in err
    assert "napari-sam: --tiling is ignored: a session replays with the tiling it recorded" \
        in err


# ----------------------------------------------------------------------------- sidecar
def test_auto_sidecar_records_the_parameters_in_effect(tmp_path, capsys):
    import json

    from napari_sam.automatic import auto_points_per_side
    from tiny_configs import save_tiny_cnn

    (tmp_path / "m").mkdir()
    model = save_tiny_cnn(tmp_path / "m")  # a checkpoint that recommends its own thresholds
    side = model.with_name("tiny.pt.json")
    meta = json.loads(side.read_text())
    meta["automatic"] = {"pred_iou_thresh": 0.6, "stability_score_thresh": 0.7,
                         "box_nms_thresh": 0.3}
    side.write_text(json.dumps(meta))
    inp = _stack(tmp_path / "stack.tif", shape=(3, 64, 80))
    rc, _, err = cli(["auto", inp, "-o", tmp_path / "o", "--model", model, "--device", "cpu",
                      "--stability-score-thresh", "0.5", "-q"], capsys)
    assert rc == 0, err
    record = json.loads((tmp_path / "o" / "stack_labels.tif.json").read_text())
    assert record["parameters_in_effect"] == {
        "pred_iou_thresh": 0.6, "stability_score_thresh": 0.5, "box_nms_thresh": 0.3,
        "points_per_side": auto_points_per_side((64, 80)), "points_per_batch": 64,
        "rescue_margin": 0.0}
    # the resume signature stays as given: a rerun skips the output
    params = record["parameters"]
    assert params["pred_iou_thresh"] is None and params["points_per_side"] == "auto"
    rc, out, err = cli(["auto", inp, "-o", tmp_path / "o", "--model", model, "--device", "cpu",
                        "--stability-score-thresh", "0.5"], capsys)
    assert rc == 0 and "1 skipped" in out, out


@pytest.mark.parametrize("case", ["2D image", "stack, --no-propagate"])
def test_auto_sidecar_records_the_parameters_in_effect_without_propagation(tmp_path, capsys,
                                                                            case):
    """2D images and ``--no-propagate`` stacks write their sidecar on another path than
    propagated stacks; it records the values in effect too (a 2D image rescues masks)."""
    import json

    from napari_sam.automatic import auto_points_per_side

    shape, extra, margin = ((64, 80), [], 0.1) if case == "2D image" else (
        (3, 64, 80), ["--no-propagate"], 0.0)
    inp = _stack(tmp_path / "img.tif", shape=shape)
    rc, _, err = cli(["auto", inp, "-o", tmp_path / "o", "--device", "cpu", "-q", *extra],
                     capsys)
    assert rc == 0, err
    record = json.loads((tmp_path / "o" / "img_labels.tif.json").read_text())
    assert record["parameters_in_effect"] == {
        "pred_iou_thresh": 0.6, "stability_score_thresh": 0.7, "box_nms_thresh": 0.3,
        "points_per_side": auto_points_per_side((64, 80)), "points_per_batch": 64,
        "rescue_margin": margin}


def _positions(root: Path) -> list[Path]:
    """Two per-position folders holding images of the same name (as microscopes write)."""
    paths = []
    for pos, seed in (("pos1", 1), ("pos2", 2)):
        p = root / pos / "img.tif"
        p.parent.mkdir(parents=True)
        rng = np.random.default_rng(seed)
        img = np.zeros((64, 64), np.uint16)
        img[16:40, 20:44] = 800
        tifffile.imwrite(p, (img + rng.random((64, 64)) * 50).astype(np.uint16))
        paths.append(p)
    return paths


def test_collect_inputs_with_folders_names_each_inputs_subfolder(tmp_path):
    from napari_sam.batch import collect_inputs_with_folders

    a, b = _positions(tmp_path / "col")
    top = tmp_path / "col" / "top.tif"
    top.write_bytes(b"x")
    want = {a: Path("pos1"), b: Path("pos2"), top: Path(".")}
    assert dict(collect_inputs_with_folders([tmp_path / "col"], recursive=True)) == want
    assert dict(collect_inputs_with_folders([str(tmp_path / "col" / "**" / "*.tif")])) == want
    assert dict(collect_inputs_with_folders([a, b])) == {a: Path("."), b: Path(".")}


@pytest.mark.parametrize("how", ["--recursive", "glob"])
def test_same_names_in_subfolders_get_their_own_output_subfolders(tmp_path, capsys, how):
    """``pos1/img.tif`` and ``pos2/img.tif`` found below one folder: the outputs mirror the
    subfolders instead of refusing the run; a rerun skips both."""
    _positions(tmp_path / "col")
    spec = ([tmp_path / "col", "-r"] if how == "--recursive"
            else [str(tmp_path / "col" / "**" / "*.tif")])
    argv = ["auto", *spec, "-o", tmp_path / "out", "--device", "cpu", "-q"]
    rc, _, err = cli(argv, capsys)
    assert rc == 0, err
    outs = sorted(p.relative_to(tmp_path / "out").as_posix()
                  for p in (tmp_path / "out").rglob("*_labels.tif"))
    assert outs == ["pos1/img_labels.tif", "pos2/img_labels.tif"]
    a, b = (tifffile.imread(tmp_path / "out" / o) for o in outs)
    assert a.shape == b.shape == (64, 64) and a.max() >= 1 and b.max() >= 1
    rc, out, err = cli(argv[:-1], capsys)
    assert rc == 0 and "2 skipped" in out, out
    # each input is named with its subfolder: in its line and in the summary's table
    for name in ("pos1/img.tif", "pos2/img.tif"):
        assert f"skipped  {name}: " in err, err
        assert f"  skipped  {name}  " in out, out


def test_same_names_given_by_name_are_still_refused(tmp_path, capsys):
    a, b = _positions(tmp_path / "col")
    rc, _, err = cli(["auto", a, b, "-o", tmp_path / "out", "--device", "cpu"], capsys)
    assert rc == 2 and "several inputs would write the same output" in err
    assert not (tmp_path / "out").exists()


def test_embeddings_of_mirrored_subfolders_are_reused(tmp_path, capsys, caplog):
    """``embed col/ -r`` mirrors the subfolders; ``auto col/ -r --embeddings`` finds each
    input's store in its subfolder."""
    import logging

    _positions(tmp_path / "col")
    rc, _, err = cli(["embed", tmp_path / "col", "-r", "-o", tmp_path / "emb", "--device",
                      "cpu", "-q"], capsys)
    assert rc == 0, err
    assert sorted(p.relative_to(tmp_path / "emb").as_posix()
                  for p in (tmp_path / "emb").rglob("*.zarr")) == ["pos1/img.zarr",
                                                                  "pos2/img.zarr"]
    with caplog.at_level(logging.WARNING):
        rc, _, err = cli(["auto", tmp_path / "col", "-r", "-o", tmp_path / "out",
                          "--embeddings", tmp_path / "emb", "--device", "cpu", "-q"], capsys)
    assert rc == 0, err
    assert "not reusing" not in caplog.text + err


def test_sam2_option_given_to_a_sam1_run_is_said_to_be_ignored(tmp_path, capsys):
    """``--stop-after-absent`` is read by SAM 2.1 propagation only: a SAM 1 run says it
    ignores it instead of accepting it silently; at its default nothing is said."""
    inp = _stack(tmp_path / "stack.tif", shape=(4, 64, 64))
    csv = tmp_path / "p.csv"
    csv.write_text("id,slice,row,col\n1,1,30,30\n")
    base = ["segment", inp, "-p", csv, "--device", "cpu"]
    rc, _, err = cli([*base, "-o", tmp_path / "a", "--stop-after-absent", "3"], capsys)
    assert rc == 0, err
    assert "--stop-after-absent applies to SAM 2.1 propagation (--method sam2) only" in err
    rc, _, err = cli([*base, "-o", tmp_path / "b"], capsys)
    assert rc == 0 and "--stop-after-absent" not in err, err


def test_wrong_axes_on_4d_data_suggest_axes_the_tool_accepts(tmp_path, capsys):
    """A 4D stack given three axis letters: the suggestion is one that runs (a channel axis
    with --channel), not TZYX, which has two stack axes and is refused."""
    inp = _stack(tmp_path / "t4.tif", shape=(2, 3, 64, 64))
    rc, out, err = cli(["auto", inp, "-o", tmp_path / "o", "--axes", "ZYX", "--device", "cpu"],
                       capsys)
    assert rc == 1 and "e.g. 'CZYX' (then choose a channel with --channel N)" in out + err
    rc, _, err = cli(["auto", inp, "-o", tmp_path / "o", "--axes", "CZYX", "--channel", "1",
                      "--device", "cpu", "-q"], capsys)
    assert rc == 0, err


def test_prompts_for_same_named_inputs_in_subfolders(tmp_path, capsys):
    """A 'file' entry 'img.tif' would give one position's prompts to both pos1/img.tif and
    pos2/img.tif: refused, naming the path to write; 'pos1/img.tif' (the path below the input
    folder, as the outputs are laid out) picks one."""
    _positions(tmp_path / "col")
    csv = tmp_path / "p.csv"
    csv.write_text("file,id,slice,row,col\nimg.tif,1,0,28,32\n")
    base = ["segment", tmp_path / "col", "-r", "-p", csv, "--device", "cpu", "-q"]
    rc, _, err = cli([*base, "-o", tmp_path / "a"], capsys)
    assert rc == 2 and "'file' entry 'img.tif' names 2 inputs" in err, err
    assert "'pos1/img.tif'" in err and not (tmp_path / "a").exists()
    csv.write_text("file,id,slice,row,col\npos1/img.tif,1,0,28,32\npos2/img.tif,2,0,28,32\n")
    rc, _, err = cli([*base, "-o", tmp_path / "b"], capsys)
    assert rc == 0, err
    one = tifffile.imread(tmp_path / "b" / "pos1" / "img_labels.tif")
    two = tifffile.imread(tmp_path / "b" / "pos2" / "img_labels.tif")
    assert set(np.unique(one)) <= {0, 1} and one.max() == 1
    assert set(np.unique(two)) <= {0, 2} and two.max() == 2


def test_outputs_made_before_the_demo_smoothed_its_inputs_are_made_again(tmp_path, capsys):
    """The resume signature carries the model's input smoothing (absent for models without
    it, so their earlier outputs still skip): an output whose recorded parameters lack it (as
    before the smoothing) is recomputed, not skipped."""
    import json

    from napari_sam.batch.context import Context

    assert Context(command="auto", model="demo", out_dir="o").signature()[
        "input_smoothing"] == pytest.approx(0.7)
    assert "input_smoothing" not in Context(command="auto", model="vit_b",
                                            out_dir="o").signature()
    inp = _stack(tmp_path / "img.tif", shape=(64, 64))
    argv = ["auto", inp, "-o", tmp_path / "o", "--device", "cpu"]
    rc, out, err = cli(argv, capsys)
    assert rc == 0 and "1 done" in out, err
    rc, out, _ = cli(argv, capsys)
    assert "1 skipped" in out
    side = tmp_path / "o" / "img_labels.tif.json"
    record = json.loads(side.read_text())
    del record["parameters"]["input_smoothing"]  # as written before the smoothing, whose
    record["model"]["id"] = record["model"]["id"].split("+")[0]  # model id had no +smooth
    side.write_text(json.dumps(record))
    rc, out, err = cli(argv, capsys)
    assert rc == 0 and "1 done" in out, out + err


def test_parameters_in_effect_give_the_grid_of_thin_tiled_windows(tmp_path, capsys):
    """A 100 x 400 image is tiled in 100 x 256 windows: the grid in effect is the one of a
    100 px short side, as the engine resolves it per window."""
    import json

    from napari_sam.automatic import auto_points_per_side

    inp = tmp_path / "thin.npy"
    np.save(inp, (np.random.default_rng(0).random((100, 400)) * 1000).astype(np.uint16))
    rc, _, err = cli(["auto", inp, "-o", tmp_path / "o", "--device", "cpu", "-q"], capsys)
    assert rc == 0, err
    record = json.loads((tmp_path / "o" / "thin_labels.tif.json").read_text())
    assert record["parameters_in_effect"]["points_per_side"] == auto_points_per_side((100, 256))


def test_a_three_slice_stack_read_as_colour_says_so(tmp_path, capsys):
    """tifffile stores a (3, Y, X) uint16 array as 3 colour planes by default: the job reads
    it as one colour image, as the file says, and notes how to read it as 3 slices."""
    inp = tmp_path / "three.tif"
    tifffile.imwrite(inp, (np.random.default_rng(0).random((3, 64, 64)) * 1000)
                     .astype(np.uint16), photometric="rgb", planarconfig="separate")
    rc, _, err = cli(["auto", inp, "-o", tmp_path / "a", "--device", "cpu"], capsys)
    assert rc == 0, err
    assert "read as one 2D colour image" in err and "--axes ZYX" in err, err
    assert tifffile.imread(tmp_path / "a" / "three_labels.tif").shape == (64, 64)
    rc, _, err = cli(["auto", inp, "-o", tmp_path / "b", "--device", "cpu", "--axes", "ZYX"],
                     capsys)
    assert rc == 0 and "colour image" not in err, err
    assert tifffile.imread(tmp_path / "b" / "three_labels.tif").shape == (3, 64, 64)
    rgb = tmp_path / "rgb.tif"  # an 8-bit colour image: nothing to say
    tifffile.imwrite(rgb, np.zeros((64, 64, 3), np.uint8))
    rc, _, err = cli(["auto", rgb, "-o", tmp_path / "c", "--device", "cpu"], capsys)
    assert rc == 0 and "colour image" not in err, err


def test_quiet_prints_no_demo_model_line(tmp_path, capsys, caplog):
    """``-q`` prints nothing on success, also not the library's demo-model log line (the
    commands print their own note without ``-q``; the line came on top, twice in ``train``)."""
    import logging

    pytest.importorskip("onnx", reason="pip install 'napari-sam-stacks[onnx]'")
    caplog.set_level(logging.WARNING)
    rc, out, err = cli(["export", "onnx", "demo", "-o", tmp_path / "x", "--decoder-only",
                        "-q"], capsys)
    assert rc == 0, err
    assert "bundled demo model" not in err + out + caplog.text
    # outside the command line the library still says it
    from napari_sam.models.registry import load_model

    load_model("demo")
    assert "Using the bundled demo model" in caplog.text
