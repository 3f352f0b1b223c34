"""Argument types (one-line errors naming what was expected), the parser class (its errors read
as our own usage errors), the help formatter and the options every command shares
(``--model``, ``--device``, ``--precision``, ``--quiet``, ``--verbose``)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from napari_sam.cli.errors import PROG, print_usage_error


def user_path(text: str) -> str:
    """A path argument with a leading ``~`` (``~/out``, ``~user/data``) expanded to the home
    folder, as the shell does for an unquoted word: a quoted ``"~/out"`` (as globs are quoted)
    reaches us unexpanded, and taken as it is it made a folder named ``~`` in the current
    one. Other text is kept as typed."""
    return os.path.expanduser(text)


def axes_arg(text: str) -> str:
    """An axes string: letters from TZCYX, each once, with Y and X."""
    ax = text.strip().upper()
    letters = "TZCYX"
    if not ax or any(a not in letters for a in ax) or len(set(ax)) != len(ax):
        raise argparse.ArgumentTypeError(
            f"invalid axes {text!r}: give one letter from {letters} per dimension, each once "
            "(e.g. ZYX, TYX, ZYXC, CZYX)"
        )
    if "Y" not in ax or "X" not in ax:
        raise argparse.ArgumentTypeError(f"invalid axes {text!r}: Y and X are required")
    return ax


def number_type(kind: type, test: Callable[[float], bool], wanted: str) -> Callable[[str], Any]:
    """An argparse ``type`` that parses ``kind`` and checks ``test``; ``wanted`` is said
    in the one-line error (e.g. "a number >= 1")."""
    noun = "a whole number" if kind is int else "a number"

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not test(v):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {v}")
        return v

    return parse


positive_int = number_type(int, lambda v: v >= 1, "a number >= 1")


nonneg_int = number_type(int, lambda v: v >= 0, "a number >= 0")


fraction = number_type(float, lambda v: 0.0 <= v <= 1.0, "a number between 0 and 1")


positive_float = number_type(float, lambda v: v > 0, "a number > 0")


def points_per_side(text: str):
    """A number >= 1, or "auto" (chosen from each image's size)."""
    return "auto" if text.strip().lower() == "auto" else positive_int(text)


def fraction_or_off(text: str):
    """A number in [0, 1], or "off" (the rule disabled)."""
    return "off" if text.strip().lower() == "off" else fraction(text)


def tiling_arg(text: str):
    """``--tiling``: "auto", "off" (None), a halo (int) or "WINDOW,HALO" (two ints)."""
    t = text.strip().lower()
    if t in ("auto", "off"):
        return None if t == "off" else "auto"
    try:
        parts = [int(v) for v in t.split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 0:
        raise argparse.ArgumentTypeError(
            f"invalid tiling {text!r}: give auto, off, a halo in pixels (e.g. 32) or "
            "WINDOW,HALO (e.g. 256,32)"
        )
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


def tiling_text(tiling) -> str:
    """How ``--tiling`` is written for a value of :func:`tiling_arg`."""
    if tiling is None:
        return "off"
    if isinstance(tiling, (tuple, list)):
        return ",".join(str(v) for v in tiling)
    return str(tiling)


def shape_arg(text: str) -> tuple[int, ...]:
    """2 or 3 positive sizes, e.g. ``32,128,128`` or ``32x128x128``."""
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid shape {text!r}: use comma-separated sizes, e.g. 32,128,128"
        ) from None
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"invalid shape {text!r}: give 2 or 3 positive sizes")
    return shape


COMMAND_PATH = "command_path"
"""The parsed arguments' attribute naming the deepest (sub)command parsed, e.g. ``"models
download"`` (``""`` for ``napari-sam`` itself): errors found after parsing name it."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` (and, through ``add_subparsers``, every subcommand's) whose errors
    read as the command's own usage errors (:func:`~napari_sam.cli.errors.print_usage_error`),
    with where to look for the arguments, exit code 2. The parsed arguments'
    :data:`COMMAND_PATH` names the deepest command parsed (``"models download"``), so errors
    found after parsing name the same command argparse's own would."""

    def parse_known_args(self, args=None, namespace=None):
        """As ``ArgumentParser.parse_known_args``; sets :data:`COMMAND_PATH` unless a
        subcommand's parser (which finishes first) has set it."""
        parsed, rest = super().parse_known_args(args, namespace)
        if getattr(parsed, COMMAND_PATH, None) is None:
            setattr(parsed, COMMAND_PATH, self.command())
        return parsed, rest

    def command(self) -> str:
        """This parser's command as usage errors name it: ``"models download"``, ``""`` for
        ``napari-sam`` itself."""
        return self.prog.removeprefix(PROG).strip()

    def error(self, message: str):
        """Print ``message`` as a usage error of this parser's command and exit with 2."""
        self.fail(message, self.command())

    def fail(self, message: str, command: str | None):
        """Print ``message`` as a usage error of ``command`` (e.g. ``"auto"``, ``"models
        download"``; None for the command itself), with ``see `napari-sam COMMAND --help```,
        and exit with 2."""
        prog = f"{PROG} {command}" if command else PROG
        print_usage_error(command, f"{message}; see `{prog} --help`")
        self.exit(2)


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Wraps the description, keeps the epilog's examples as written."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=32, width=min(100, term_width()))

    def _format_text(self, text):
        if text and "\n" not in text:  # descriptions are single paragraphs
            import textwrap

            if "%(prog)" in text:  # as argparse does (the --version line uses it)
                text = text % dict(prog=self._prog)
            return textwrap.fill(text, self._width - self._current_indent) + "\n\n"
        return super()._format_text(text)


def term_width() -> int:
    """The help's width: the terminal's, at least 60 columns."""
    import shutil

    return max(60, shutil.get_terminal_size((100, 24)).columns - 2)


def add_common(p: argparse.ArgumentParser, *, model: bool = True, device: bool = True) -> None:
    """The "common options" group: model, device, precision, quiet, verbose."""
    g = p.add_argument_group("common options")
    if model:
        g.add_argument("--model", "-m", metavar="NAME|PATH",
                       help="registry name (see `napari-sam models`) or checkpoint file; default: "
                            "the first downloaded SAM model, else the bundled demo model")
    if device:
        g.add_argument("--device", default="auto", metavar="DEV",
                       help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:1, mps (default: auto)")
        g.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                       help="auto: bf16 on GPUs and on CPUs with native bf16 (AVX-512 BF16, "
                            "AMX), else fp32; fp32 for exact float32 (default: auto)")
    g.add_argument("--quiet", "-q", action="store_true",
                   help="no progress bars or per-file lines; errors and the summary only")
    g.add_argument("--verbose", "-v", action="store_true",
                   help="print tracebacks of failures (for bug reports)")
