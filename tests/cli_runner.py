"""Running ``napari-sam`` in-process in tests: its exit code and output, never a traceback."""

from __future__ import annotations


def cli(argv, capsys) -> tuple[int, str, str]:
    """Run ``napari-sam ARGV`` in-process: (exit code, stdout, stderr); never a traceback."""
    from napari_sam.cli import main

    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out, err
    return rc, out, err


def error_line(err: str) -> str:
    """The one ``napari-sam: error:`` line of ``err`` (asserts there is exactly one)."""
    lines = [line for line in err.splitlines() if line.startswith("napari-sam: error:")]
    assert len(lines) == 1, err
    return lines[0]
