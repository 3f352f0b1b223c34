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


# every nested subcommand, with its arguments complete, and an option it does not know
NESTED_UNKNOWN = {
    "models list": ["models", "list", "--bogus"],
    "models download": ["models", "download", "demo", "--bogus"],
    "models verify": ["models", "verify", "demo", "--bogus"],
    "models where": ["models", "where", "demo", "--bogus"],
    "export onnx": ["export", "onnx", "demo", "-o", "m.onnx", "--bogus"],
}


def _nested_commands() -> set:
    """Every ``COMMAND ACTION`` the parser has (subcommands of subcommands)."""
    import argparse

    from napari_sam.cli import build_parser

    def subparsers(parser):
        return next((a.choices for a in parser._actions
                     if isinstance(a, argparse._SubParsersAction)), {})

    return {f"{name} {action}" for name, p in subparsers(build_parser()).items()
            for action in subparsers(p)}


def test_every_nested_subcommand_is_checked():
    assert set(NESTED_UNKNOWN) == _nested_commands()


@pytest.mark.parametrize("command", sorted(NESTED_UNKNOWN))
def test_unknown_option_of_a_nested_subcommand_names_it(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = cli(NESTED_UNKNOWN[command], capsys)
    assert rc == 2
    assert err.splitlines() == [
        f"usage: napari-sam {command} --help",
        f"napari-sam: error: unrecognized arguments: --bogus; see `napari-sam {command} --help`",
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv, command, problem",
    [(["models", "download", "nosuch"], "models download", "unknown model 'nosuch'"),
     (["models", "where", "nosuch"], "models where", "unknown model 'nosuch'"),
     (["export", "onnx", "demo", "-o", "m.onnx", "--decoder-only", "--encoder-only"],
      "export onnx", "--decoder-only and --encoder-only exclude each other; give one")],
)
def test_checks_after_parsing_name_the_nested_subcommand(argv, command, problem, tmp_path,
                                                          capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli(argv, capsys)
    assert rc == 2
    assert err.splitlines()[0] == f"usage: napari-sam {command} --help"
    assert problem in error_line(err)
    assert list(tmp_path.iterdir()) == []
