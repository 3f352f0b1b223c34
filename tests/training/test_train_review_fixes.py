"""``napari-sam train`` and ``export onnx`` after a review of their messages: a resume on other
data or options is refused naming what differs, a folder as ``-o`` is refused before any work,
a finished resumable schedule says that nothing was written, and ``--opset`` outside what the
export can write is refused when the command line is parsed.

Every case runs ``napari_sam.cli.main`` in-process on a tiny model and 64x64 sample images
for one or two steps, and asserts the exit code and the line the user reads.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cli_runner import cli, error_line


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    """Two sets of 3 sample images with ground truth: ``a/`` and ``b/`` (other seeds)."""
    import napari_sam.cli as C

    root = tmp_path_factory.mktemp("samples")
    for name, seed in (("a", "10000"), ("b", "20000")):
        assert C.main(["sample", "nuclei-2d", "-o", str(root / name), "-n", "3", "--shape",
                       "64,64", "--seed", seed, "-q"]) == 0
    return root


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""


def _train(data: Path, out: Path, tiny_model, *extra) -> list:
    return ["train", data, data / "ground_truth", "-o", out, "--model", tiny_model,
            "--epochs", "2", "--steps-per-epoch", "1", "--batch-size", "1",
            "--objects-per-image", "2", "--val-fraction", "0.34", "--device", "cpu", "-q",
            "--resume", *extra]


# ----------------------------------------------------------------------------- resume


def test_resume_on_other_training_data_is_refused_naming_the_change(
        tmp_path, samples, tiny_model, capsys):
    out = tmp_path / "m.pt"
    rc, _, _ = cli(_train(samples / "a", out, tiny_model, "--max-steps", "1"), capsys)
    assert rc == 0
    rc, _, err = cli(_train(samples / "b", out, tiny_model), capsys)
    line = error_line(err)
    assert rc == 2
    assert f"cannot resume from {tmp_path / 'm.train-state.pt'}" in line
    assert "the training images (2 of 2 changed, e.g. " in line
    assert "the validation images (1 of 1 changed, e.g. " in line
    assert "delete the training state to start over" in line
    # the same files moved to another folder are the same data: the run continues
    shutil.copytree(samples / "a", tmp_path / "moved")
    rc, out_text, _ = cli(_train(tmp_path / "moved", out, tiny_model), capsys)
    assert rc == 0 and "wrote" in out_text


def test_a_training_state_without_data_fingerprint_still_resumes(
        tmp_path, samples, tiny_model, capsys):
    """States written before the fingerprint existed have nothing to compare: they resume."""
    from napari_sam.training.checkpoint import load_training_state, save_training_state

    out = tmp_path / "old.pt"
    assert cli(_train(samples / "a", out, tiny_model, "--max-steps", "1"), capsys)[0] == 0
    state_path = tmp_path / "old.train-state.pt"
    state = load_training_state(state_path)
    del state["schedule"]["data"]
    save_training_state(state_path, {k: v for k, v in state.items()
                                     if k not in ("format", "format_version")})
    rc, out_text, _ = cli(_train(samples / "a", out, tiny_model), capsys)
    assert rc == 0 and "wrote" in out_text


def test_resume_with_other_options_names_each_option_with_both_values(
        tmp_path, samples, tiny_model, capsys):
    out = tmp_path / "m.pt"
    assert cli(_train(samples / "a", out, tiny_model, "--max-steps", "1"), capsys)[0] == 0
    rc, _, err = cli(_train(samples / "a", out, tiny_model, "--lr", "0.01"), capsys)
    line = error_line(err)
    assert rc == 2
    assert "the run differs in lr (saved 0.0001, given 0.01);" in line
    assert "train_config" not in line and "(saved )" not in line
    rc, _, err = cli(_train(samples / "a", out, tiny_model, "--epochs", "3", "--batch-size",
                            "2"), capsys)
    line = error_line(err)
    assert rc == 2
    assert "epochs (saved 2, given 3)" in line and "batch_size (saved 1, given 2)" in line
    assert "total_steps" not in line  # follows from the epochs


def test_rerunning_a_complete_schedule_says_nothing_was_written(
        tmp_path, samples, tiny_model, capsys):
    out = tmp_path / "done.pt"
    rc, out_text, _ = cli(_train(samples / "a", out, tiny_model), capsys)
    assert rc == 0 and "wrote" in out_text
    before = out.stat().st_mtime_ns
    rc, out_text, _ = cli(_train(samples / "a", out, tiny_model), capsys)
    assert rc == 0
    state = tmp_path / "done.train-state.pt"
    assert (f"the schedule in {state} is already complete (2 epochs); nothing was trained "
            "or written") in out_text
    assert "wrote" not in out_text
    assert out.stat().st_mtime_ns == before


# ----------------------------------------------------------------------------- -o folder


def _no_model_load(monkeypatch):
    import napari_sam.cli.train_command as T

    def fail(*args, **kwargs):
        raise AssertionError("the model was loaded before -o was checked")

    monkeypatch.setattr(T, "resolve_model", fail)


@pytest.mark.parametrize("name", ["dir.pt", "outdir"])
def test_train_into_a_folder_is_refused_before_any_work(
        tmp_path, samples, tiny_model, capsys, monkeypatch, name):
    _no_model_load(monkeypatch)
    folder = tmp_path / name
    folder.mkdir()
    argv = ["train", samples / "a", samples / "a" / "ground_truth", "-o", folder, "--model",
            tiny_model, "--epochs", "1", "--steps-per-epoch", "1", "--overwrite"]
    rc, _, err = cli(argv, capsys)
    line = error_line(err)
    assert rc == 2
    assert f"-o {folder} is a folder; give the checkpoint file to write, e.g. -o " \
           f"{folder / 'my_model.pt'}" in line
    assert ".pt or .pth" not in line
    assert list(folder.iterdir()) == []


def test_train_api_refuses_a_folder_as_out_before_reading_the_data(tmp_path):
    from napari_sam.training import train

    with pytest.raises(ValueError, match=r"is a folder; give the checkpoint file to write"):
        train(str(tmp_path / "missing-images"), str(tmp_path / "missing-labels"),
              out=tmp_path)


# ----------------------------------------------------------------------------- export opset


@pytest.mark.parametrize("opset", ["16", "99", "0"])
def test_export_opset_outside_the_range_is_refused_at_parse_time(
        tmp_path, capsys, monkeypatch, opset):
    import napari_sam.predictor as P
    from napari_sam.cli.export_command import opset_range

    def fail(*args, **kwargs):
        raise AssertionError("the model was loaded before --opset was checked")

    monkeypatch.setattr(P, "as_model", fail)
    low, high = opset_range()
    rc, out, err = cli(["export", "onnx", "demo", "-o", tmp_path / "x", "--opset", opset],
                       capsys)
    assert rc == 2
    assert (f"error: argument --opset: opset {opset} cannot be exported: choose one from "
            f"{low} to {high}") in err
    assert len(err.splitlines()) < 10 and not (tmp_path / "x").exists()


def test_opset_range_is_the_export_minimum_to_the_torch_maximum():
    from torch.onnx import _constants

    from napari_sam.cli import build_parser
    from napari_sam.cli.export_command import opset_range
    from napari_sam.export import MIN_OPSET

    assert opset_range() == (MIN_OPSET, _constants.ONNX_MAX_OPSET)
    for value in opset_range():
        args = build_parser().parse_args(["export", "onnx", "demo", "-o", "x", "--opset",
                                          str(value)])
        assert args.opset == value
