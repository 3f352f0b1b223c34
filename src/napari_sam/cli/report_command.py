"""``napari-sam report``: plots of the propagation traces of ``segment`` outputs."""

from __future__ import annotations

import sys

from napari_sam.cli.arguments import Formatter
from napari_sam.cli.errors import CLIError

EPILOG_REPORT = """\
examples:
  napari-sam segment stack.tif -o out/ --prompts clicks.csv
  napari-sam report out/            # writes out/stack_labels.tif.trace.png

Flags: an object that stopped early (its mask still stands out a few slices further: add a
point there), area jumps, overlap with another object, score drops.
"""


def add_report_parser(sub) -> None:
    """``napari-sam report PATH...``."""
    pr = sub.add_parser("report", help="plot the propagation traces of segment outputs (PNG)",
                        description="For every output of `napari-sam segment` in the folders "
                                    "or files given, write <output>.trace.png: per object its "
                                    "predicted IoU, area and contrast along the stack, where it "
                                    "stopped and why, and the flagged slices (printed too).",
                        formatter_class=Formatter, epilog=EPILOG_REPORT)
    pr.add_argument("outputs", nargs="+", metavar="PATH",
                    help="output folders or label files of `napari-sam segment`")
    pr.add_argument("--quiet", "-q", action="store_true", help="print only the PNG paths")


def cmd_report(args) -> int:
    """Write the trace plots; returns the exit code."""
    from pathlib import Path

    from napari_sam.trace import report

    missing = [p for p in args.outputs if not Path(p).exists()]
    if missing:
        raise CLIError("no such file or folder: " + ", ".join(missing) + "; give the output "
                       "folder (or label files) of `napari-sam segment ... -o DIR`", 2)
    written = report(args.outputs, out=sys.stdout, quiet=args.quiet)
    if not written:
        raise CLIError("no propagation traces found in " + ", ".join(args.outputs) + "; run "
                       "`napari-sam segment ... -o DIR` first and give DIR", 1)
    return 0
