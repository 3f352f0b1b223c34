"""``napari-sam report``: plots of the propagation traces of ``segment`` and ``auto``
outputs."""

from __future__ import annotations

import sys

from napari_sam.cli.arguments import Formatter, user_path
from napari_sam.cli.errors import CLIError

EPILOG_REPORT = """\
examples:
  napari-sam segment stack.tif -o out/ --prompts clicks.csv
  napari-sam report out/            # writes out/stack_labels.tif.trace.png
  napari-sam auto "data/*.tif" -o out/ && napari-sam report out/

Flags: an object that stopped early (its mask still stands out a few slices further: add a
point there), area jumps, overlap with another object, score drops.
"""


def add_report_parser(sub) -> None:
    """``napari-sam report PATH...``."""
    pr = sub.add_parser("report",
                        help="plot the propagation traces of segment and auto outputs (PNG)",
                        description="For every output of `napari-sam segment` or `auto` (a "
                                    "stack, propagated) in the folders "
                                    "or files given, write <output>.trace.png (pages "
                                    "<output>.trace-2.png, ... past 60 objects): per object its "
                                    "predicted IoU, area and contrast along the stack, where it "
                                    "stopped and why, and the flagged slices (printed too).",
                        formatter_class=Formatter, epilog=EPILOG_REPORT)
    pr.add_argument("outputs", nargs="+", metavar="PATH", type=user_path,
                    help="output folders or label files of `napari-sam segment` or `auto` "
                         "(not `auto --no-propagate`: nothing propagated)")
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
        raise CLIError(no_traces_message(args.outputs), 1)
    return 0


def output_commands(paths) -> dict[str, int]:
    """How many napari-sam outputs each command wrote among ``paths`` (folders, label files
    or sidecars), from their sidecars' ``parameters.command``: ``{"auto": 2}``."""
    from pathlib import Path

    from napari_sam import io as nio

    sidecars = []
    for spec in paths:
        p = Path(spec)
        if p.is_dir() and not nio.output_metadata_path(p).is_file():
            sidecars.extend(q for q in p.glob("*.json") if not q.name.startswith("."))
        else:
            sidecars.append(p if p.suffix.lower() == ".json" else nio.output_metadata_path(p))
    counts: dict[str, int] = {}
    for side in sidecars:
        meta = nio.read_output_metadata(side.with_name(side.name[: -len(".json")]))
        if isinstance(meta, dict) and meta.get("format") == nio.OUTPUT_METADATA_FORMAT:
            command = str((meta.get("parameters") or {}).get("command") or "?")
            counts[command] = counts.get(command, 0) + 1
    return counts


def no_traces_message(paths) -> str:
    """Why ``report`` found nothing to plot in ``paths``, and how to get traces: ``segment``
    and ``auto`` record them for a stack they propagated (not ``auto --no-propagate``, not a
    2D image, not an output of a version before traces were recorded)."""
    from napari_sam.words import counted

    where = ", ".join(str(p) for p in paths)
    counts = output_commands(paths)
    if counts.get("auto") and not counts.get("segment"):
        held = counted(counts["auto"], "output")
        return (f"no propagation traces found in {where}: it holds {held} of `napari-sam "
                "auto` with nothing propagated (2D images, --no-propagate, or written before "
                "auto recorded traces); rerun `napari-sam auto INPUT -o NEWDIR` on a stack, "
                "without --no-propagate, then `napari-sam report NEWDIR` (a new folder: "
                "--overwrite would replace labels you corrected by hand)")
    if counts.get("segment"):
        return (f"no propagation traces found in {where}: its `napari-sam segment` outputs "
                "are 2D images (nothing propagated) or were written before traces were recorded; "
                "rerun segment on a stack with -o NEWDIR for its trace (a new folder: "
                "--overwrite would replace labels you corrected by hand)")
    return (f"no propagation traces found in {where}; report plots the propagation traces "
            "that `napari-sam segment` and `napari-sam auto` record for a stack: run "
            "`napari-sam auto INPUT -o DIR` (or `napari-sam segment INPUT -p PROMPTS -o DIR`) "
            "first and give DIR")
