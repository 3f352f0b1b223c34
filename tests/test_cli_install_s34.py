"""As a wheel user meets the CLI (session 34's install walk-through): ``--workers`` without the
``[distributed]`` extra failed with ``ModuleNotFoundError: No module named 'distributed'``
after loading the model."""

from __future__ import annotations

import sys

import pytest

from cli_runner import cli, error_line, noise_image


@pytest.mark.parametrize("option", [["--workers", "2"], ["--scheduler", "tcp://127.0.0.1:1"]])
def test_scale_out_without_the_distributed_extra_says_what_to_install(
        tmp_path, monkeypatch, capsys, option):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed: ImportError
    inp = noise_image(tmp_path / "a.tif")
    rc, _, err = cli(["auto", inp, "-o", tmp_path / "out", *option], capsys)
    assert rc == 2, err
    assert error_line(err) == (
        f"napari-sam: error: {option[0]} runs the files on dask.distributed, which is not "
        "installed: pip install \"napari-sam-stacks[distributed]\" (or leave "
        f"{option[0]} out to run them here, one after the other)")
    assert "napari-sam: model" not in err  # before any model is loaded
    assert not (tmp_path / "out").exists()
