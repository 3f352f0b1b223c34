"""Paths and files as a user sharing folders with Windows (or macOS) colleagues meets them:
``~`` in quoted paths, backslashes in a prompts file's ``file`` column, names that differ
only in case written into one folder, a prompts file saved as UTF-16. Each case asserts the
exit code, the line the user reads and what was written where.
"""

from __future__ import annotations

import pytest

from cli_runner import cli, noise_image


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""


FAST = ("--device", "cpu", "-q")


# ------------------------------------------------------------------ 1: "~" quoted
def test_a_quoted_tilde_is_the_home_folder_in_every_path_option(tmp_path, tiny_model, capsys,
                                                                 monkeypatch):
    """``auto "~/data/*.tif" -o "~/out"``: a quoted ``~`` reaches the command unexpanded (no
    shell expands it). The input glob was expanded, but ``-o`` made a folder named ``~`` in
    the current folder (the summary read ``~/out/x_labels.tif``, which is not there), and
    ``--prompts``, ``--embeddings`` and ``report`` said "does not exist"."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    noise_image(home / "data" / "x.tif", (3, 64, 64))
    (home / "p.csv").write_text("file,id,slice,row,col\nx.tif,1,1,30,30\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    model = ("--model", tiny_model)
    rc, _, err = cli(["embed", "~/data/*.tif", "-o", "~/emb", *model, *FAST], capsys)
    assert rc == 0, err
    rc, stdout, err = cli(["segment", "~/data/x.tif", "-o", "~/seg", "-p", "~/p.csv",
                           "--embeddings", "~/emb", *model, *FAST], capsys)
    assert rc == 0, err
    assert f"{home / 'seg' / 'x_labels.tif'}" in stdout
    rc, stdout, err = cli(["report", "~/seg", "-q"], capsys)
    assert rc == 0, err
    assert (home / "emb" / "x.zarr").is_dir()
    assert (home / "seg" / "x_labels.tif").is_file()
    assert (home / "seg" / "x_labels.tif.trace.png").is_file()
    rc, _, err = cli(["sample", "nuclei-2d", "-o", "~/s", "--shape", "64,64", "-q"], capsys)
    assert rc == 0, err
    assert (home / "s" / "nuclei-2d_seed10000.tif").is_file()
    assert list(cwd.iterdir()) == []  # no folder named "~"


@pytest.mark.parametrize("argv", [["train", "imgs/", "gt/", "-o", "~/m.pt"],
                                  ["export", "onnx", "demo", "-o", "~/onnx"]])
def test_train_and_export_take_a_quoted_tilde_as_the_home_folder(argv, tmp_path, monkeypatch):
    """``train ... -o "~/m.pt"`` wrote the checkpoint into a folder named ``~`` of the
    current folder; ``export onnx`` expanded it already (now where the others do)."""
    from napari_sam.cli.app import build_parser

    monkeypatch.setenv("HOME", str(tmp_path))
    args = build_parser().parse_args(argv)
    assert args.output == str(tmp_path / argv[-1][2:])
