"""``napari-sam train`` after session 32's data-engine walk-through (annotate, finetune,
use the finetuned model again):

* ``-o`` naming the checkpoint training starts from (``--model``) is refused, also with
  ``--overwrite``: it replaced the starting weights without a word;
* ``train`` takes ``--threads`` as ``auto``, ``segment`` and ``embed`` do;
* a checkpoint's metadata file given as ``--model`` (``my_model.json``) is called that, with
  the checkpoint to give instead, as the dock says (the CLI said "not a readable PyTorch
  checkpoint ... UnpicklingError")."""

from __future__ import annotations

import shutil

import pytest

from cli_runner import cli, error_line, md5s
from cli_runner import tiny_train_argv as _train


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""


def test_the_output_cannot_be_the_model_training_starts_from(tmp_path, samples, tiny_model,
                                                               capsys, monkeypatch):
    start = tmp_path / "c.pt"
    shutil.copy(tiny_model, start)
    sidecar = tmp_path / "c.pt.json"
    shutil.copy(f"{tiny_model}.json", sidecar)
    before = md5s(start, sidecar)
    for extra in ((), ("--overwrite",), ("--overwrite", "--resume")):
        rc, _, err = cli(_train(samples, samples / "ground_truth", start, start, *extra), capsys)
        assert rc == 2, err
        assert error_line(err) == (
            f"napari-sam: error: -o {start} is the checkpoint training starts from (--model): "
            "writing over it would lose the weights it starts from; write the finetuned model "
            f"to another file (e.g. -o {tmp_path / 'c_ft.pt'})")
    assert md5s(start, sidecar) == before
    # --model=~/c.pt (no shell expands "~" after "="): the same file (the reviewer's catch)
    monkeypatch.setenv("HOME", str(tmp_path))
    argv = _train(samples, samples / "ground_truth", start, "MODEL", "--overwrite")
    i = argv.index("--model")
    rc, _, err = cli([*argv[:i], "--model=~/c.pt", *argv[i + 2:]], capsys)
    assert rc == 2 and "is the checkpoint training starts from (--model)" in err, err
    assert md5s(start, sidecar) == before


def test_train_takes_threads(tmp_path, samples, tiny_model, capsys, monkeypatch):
    import napari_sam.device as D

    asked = []
    monkeypatch.setattr(D, "configure_threads", lambda **kw: asked.append(kw))
    out = tmp_path / "m.pt"
    rc, _, err = cli(_train(samples, samples / "ground_truth", out, tiny_model, "--threads",
                            "1"), capsys)
    assert rc == 0, err
    assert asked == [{"threads": 1}] and out.is_file()


@pytest.mark.parametrize("command", ["train", "auto"])
def test_a_checkpoints_metadata_file_as_model_is_called_that(tmp_path, samples, tiny_model,
                                                              capsys, command):
    meta = tmp_path / "tiny.json"  # the sidecar named <stem>.json (what train writes)
    shutil.copy(f"{tiny_model}.json", meta)
    argv = (_train(samples, samples / "ground_truth", tmp_path / "m.pt", meta)
            if command == "train" else
            ["auto", str(samples), "-o", str(tmp_path / "out"), "--model", str(meta), "-q"])
    rc, _, err = cli(argv, capsys)
    assert rc == 2, err
    line = error_line(err)
    assert f"{meta} is the metadata file of a checkpoint, not a model: give the checkpoint " \
           f"beside it ({tiny_model.name})" in line, line
    assert "Unpickling" not in line and not (tmp_path / "m.pt").exists()
