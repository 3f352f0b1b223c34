"""``napari-sam export onnx MODEL -o DIR`` checks ``-o`` before it loads the model (a ViT-B
takes seconds, a ViT-H more): an unusable ``-o`` fails at once with exit code 2, one line
naming the problem, and no file written anywhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cli_runner import cli, error_line

pytest.importorskip("onnx", reason="pip install 'napari-sam-stacks[onnx]'")

CASES = {
    "an existing file": ("afile", "afile is a file, not a folder; give a folder for the ONNX "
                                  "files with -o"),
    "a path through a file": ("afile/sub", "afile is a file, not a folder; choose another "
                                           "output folder"),
    "/proc": ("/proc/napari-sam-onnx", "/proc is on the kernel's proc file system, which "
                                       "describes the running system and holds no files"),
}


def _files(folder: Path) -> set:
    return {p.relative_to(folder) for p in folder.rglob("*")}


@pytest.mark.parametrize("case", list(CASES))
def test_unusable_output_fails_before_the_model_loads(tmp_path, offline_cli, tiny_model,
                                                      monkeypatch, capsys, case):
    import napari_sam.predictor

    out, said = CASES[case]
    if out.startswith("/proc") and not Path("/proc/self").exists():
        pytest.skip("no /proc file system here")
    (tmp_path / "afile").write_text("x")
    loads = []
    real = napari_sam.predictor.as_model
    monkeypatch.setattr(napari_sam.predictor, "as_model",
                        lambda *a, **k: loads.append(a) or real(*a, **k))
    monkeypatch.chdir(tmp_path)
    before = _files(tmp_path)
    rc, stdout, err = cli(["export", "onnx", tiny_model, "-o", out], capsys)
    assert rc == 2 and said in error_line(err), err
    assert loads == [] and stdout == ""
    assert _files(tmp_path) == before  # the file -o named is left as it was
    assert not out.startswith("/proc") or not os.path.exists(out)


def test_output_is_checked_before_a_bad_checkpoint(tmp_path, offline_cli, capsys):
    """With both wrong, the message is -o's: the checkpoint is never read."""
    (tmp_path / "afile").write_text("x")
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    rc, _, err = cli(["export", "onnx", bad, "-o", tmp_path / "afile"], capsys)
    line = error_line(err)
    assert rc == 2 and "afile is a file, not a folder" in line and "checkpoint" not in line


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into a read-only folder")
def test_read_only_folder_fails_before_the_model_loads(tmp_path, offline_cli, tiny_model,
                                                       capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc, _, err = cli(["export", "onnx", tiny_model, "-o", ro / "x"], capsys)
    finally:
        ro.chmod(0o755)
    assert rc == 2 and f"cannot write to {ro / 'x'}" in error_line(err)
    assert list(ro.iterdir()) == []
