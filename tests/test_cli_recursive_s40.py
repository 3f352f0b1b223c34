"""``--recursive`` runs mirror the input subfolders under ``-o`` (session 40): a subfolder whose
files all failed was left behind as an empty folder there. The run now removes the folders it
created that are still empty at its end, and never a folder that was there before."""

from __future__ import annotations

import pytest

from cli_runner import cli, noise_image

AUTO_FAST = ("--points-per-side", "4", "--no-propagate", "--device", "cpu", "-q")


@pytest.fixture
def data(tmp_path):
    """``data/good/x.tif`` (segments), ``data/bad/broken.tif`` (a TIFF header and nothing
    else: fails), ``data/deep/er/broken.tif`` (fails, two levels down) and
    ``data/notes/readme.txt`` (no image)."""
    root = tmp_path / "data"
    noise_image(root / "good" / "x.tif")
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not an image")
    for bad in (root / "bad", root / "deep" / "er"):
        bad.mkdir(parents=True)
        (bad / "broken.tif").write_bytes(b"II*\x00garbage")
    return root


def _folders(root) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir()}


@pytest.mark.parametrize("command", ["auto", "embed"])
def test_subfolders_whose_files_all_failed_leave_no_empty_folder(
        command, data, tmp_path, tiny_model, capsys):
    out = tmp_path / "out"
    args = AUTO_FAST if command == "auto" else ("--device", "cpu", "-q")
    rc, _, err = cli([command, data, "-r", "-o", out, "--model", tiny_model, *args], capsys)
    assert rc == 1, err
    assert err.count("FAILED") == 2, err
    kept = {"good", "good/x.zarr"} if command == "embed" else {"good"}
    assert {f for f in _folders(out) if not f.startswith("good/x.zarr/")} == kept
    assert (out / "good" / ("x.zarr" if command == "embed" else "x_labels.tif")).exists()


def test_folders_that_were_there_before_the_run_are_kept_empty(data, tmp_path, tiny_model,
                                                                capsys):
    out = tmp_path / "out"
    (out / "bad").mkdir(parents=True)  # the user's, empty: never removed
    (out / "deep").mkdir()  # its subfolder "er" is the run's: removed again
    rc, _, err = cli(["auto", data, "-r", "-o", out, "--model", tiny_model, *AUTO_FAST],
                     capsys)
    assert rc == 1, err
    assert _folders(out) == {"good", "bad", "deep"}
    assert [p.name for p in (out / "bad").iterdir()] == []


def test_a_run_where_every_file_fails_leaves_no_output_folder(data, tmp_path, tiny_model,
                                                               capsys):
    out = tmp_path / "made" / "out"
    rc, _, err = cli(["auto", data / "bad", data / "deep", "-r", "-o", out, "--model",
                      tiny_model, *AUTO_FAST], capsys)
    assert rc == 1, err
    assert not (tmp_path / "made").exists()
