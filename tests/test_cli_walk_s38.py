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
