"""Every usage error of ``napari-sam`` reads one way, whether argparse or our own checks
after parsing found it: ``usage: napari-sam COMMAND --help``, then one ``napari-sam: error:``
line naming the problem and what to do, exit code 2."""

from __future__ import annotations

import pytest

from cli_runner import cli, error_line


@pytest.mark.parametrize(
    "argv, command, problem",
    [
        # found by argparse
        (["auto"], "auto", "the following arguments are required: INPUT, -o/--output"),
        (["auto", "x.tif", "-o", "o", "--workers", "abc"], "auto",
         "argument --workers: expected a whole number, got 'abc'"),
        (["auto", "x.tif", "-o", "o", "--bogus"], "auto", "unrecognized arguments: --bogus"),
        (["models", "download"], "models download", "the following arguments are required: NAME"),
        (["frobnicate"], "", "argument COMMAND: invalid choice: 'frobnicate'"),
        # found by our own checks after parsing
        (["sample", "nuclei-3d", "-o", "o", "--shape", "32,32"], "sample",
         "--shape for nuclei-3d needs 3 sizes"),
    ],
)
def test_usage_errors_read_one_way(argv, command, problem, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = cli(argv, capsys)
    assert rc == 2
    lines = err.splitlines()
    assert lines[0] == f"usage: napari-sam{' ' + command if command else ''} --help", err
    assert len(lines) == 2, err
    line = error_line(err)
    assert problem in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "argv, command",
    [(["auto"], "auto"), (["auto", "x.tif", "-o", "o", "--bogus"], "auto"),
     (["train", "i.tif", "-o", "m.pt", "--epochs", "0"], "train")],
)
def test_argparse_errors_say_where_the_arguments_are_listed(argv, command, tmp_path, capsys,
                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli(argv, capsys)
    assert rc == 2
    assert error_line(err).endswith(f"; see `napari-sam {command} --help`")
