"""The ``napari-sam`` command: models, sample data, embeddings, segmentation, training, export.

Every subcommand is a thin layer over the Python API (:mod:`napari_sam.batch` for the file
jobs); ``napari-sam --help`` and ``napari-sam <command> --help`` describe them. Bad arguments
end with argparse's usage line and a one-line error (exit code 2); problems found while
running (a model that cannot be downloaded, a file that fails) are one-line errors too (exit
code 1), never tracebacks unless ``--verbose`` is given.

Exit codes: 0 every file succeeded (or was already complete); 1 at least one file failed or
the command could not run; 2 bad arguments; 130 interrupted (Ctrl-C or SIGTERM: finished
outputs are complete, the rest resume on the next run).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser", "SAMPLES"]

PROG = "napari-sam"

#: Sample stacks for ``napari-sam sample``: name -> (synthetic generator, default shape).
SAMPLES = {
    "nuclei-3d": ("nuclei_3d", (32, 128, 128)),
    "nuclei-2d": ("nuclei_2d", (256, 256)),
    "cells-3d": ("cells_membrane_3d", (32, 128, 128)),
    "cells-2d": ("cells_membrane_2d", (256, 256)),
    "em-3d": ("em_3d", (32, 128, 128)),
    "em-2d": ("em_organelles_2d", (256, 256)),
    "xray-3d": ("xray_3d", (32, 128, 128)),
    "xray-2d": ("xray_2d", (256, 256)),
    "underwater": ("underwater_rgb", (256, 256)),
}

_REAL_WEIGHTS_HINT = (
    "for real data download SAM weights once, e.g. `napari-sam models download vit_b_lm` "
    "(light microscopy) or `napari-sam models download vit_b`, then pass --model vit_b_lm"
)


class CLIError(Exception):
    """An error to print as ``napari-sam: error: ...`` with exit code ``code``."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def _err(msg: str) -> None:
    print(f"{PROG}: error: {' '.join(str(msg).split())}", file=sys.stderr)


def _note(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr)


# ============================================================================ argument types


def _axes_arg(text: str) -> str:
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


def _number(kind: type, test: Callable[[float], bool], wanted: str) -> Callable[[str], Any]:
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


_positive_int = _number(int, lambda v: v >= 1, "a number >= 1")
_nonneg_int = _number(int, lambda v: v >= 0, "a number >= 0")
_fraction = _number(float, lambda v: 0.0 <= v <= 1.0, "a number between 0 and 1")
_positive_float = _number(float, lambda v: v > 0, "a number > 0")


def _points_per_side(text: str):
    """A number >= 1, or "auto" (chosen from each image's size)."""
    return "auto" if text.strip().lower() == "auto" else _positive_int(text)


def _fraction_or_off(text: str):
    """A number in [0, 1], or "off" (the rule disabled)."""
    return "off" if text.strip().lower() == "off" else _fraction(text)


def _shape_arg(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid shape {text!r}: use comma-separated sizes, e.g. 32,128,128"
        ) from None
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"invalid shape {text!r}: give 2 or 3 positive sizes")
    return shape


# ============================================================================ parser


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Wraps the description, keeps the epilog's examples as written."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=32, width=min(100, _term_width()))

    def _format_text(self, text):
        if text and "\n" not in text:  # descriptions are single paragraphs
            import textwrap

            return textwrap.fill(text, self._width - self._current_indent) + "\n\n"
        return super()._format_text(text)


def _term_width() -> int:
    import shutil

    return max(60, shutil.get_terminal_size((100, 24)).columns - 2)


def _add_common(p: argparse.ArgumentParser, *, model: bool = True, device: bool = True) -> None:
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


def _add_batch(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files (TIFF, OME-TIFF, .npy, .zarr), directories or quoted "
                        "glob patterns such as \"data/*.tif\"")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="output folder (created if needed)")
    g = p.add_argument_group("input and output")
    g.add_argument("--axes", type=_axes_arg, metavar="AXES",
                   help="axes of the inputs when their metadata is missing or wrong, one letter "
                        "per dimension from TZCYX, e.g. ZYX, TYX, ZYXC, CZYX")
    g.add_argument("--channel", type=_nonneg_int, metavar="N",
                   help="channel to use for multi-channel inputs (RGB is used as is)")
    g.add_argument("--recursive", "-r", action="store_true",
                   help="search input directories recursively")
    g.add_argument("--overwrite", action="store_true",
                   help="recompute outputs that are already complete and replace files that "
                        "napari-sam did not write")
    if command != "embed":
        g.add_argument("--format", dest="fmt", default="tif",
                       choices=("tif", "ome.tif", "zarr", "npy"),
                       help="label file format (default: tif; uint16 ImageJ TIFF, uint32 "
                            "OME-TIFF when ids exceed 65535)")
        g.add_argument("--suffix", default="_labels",
                       help="added to the input's name: <stem><suffix>.<format> "
                            "(default: _labels)")
        g.add_argument("--preview", action="store_true",
                       help="also write <stem><suffix>.png: middle slice and max projection "
                            "with coloured label outlines")
        g.add_argument("--embeddings", metavar="DIR",
                       help="reuse embedding stores written by `napari-sam embed` "
                            "(<DIR>/<stem>.zarr)")
    g.add_argument("--keep-work", action="store_true",
                   help="keep per-slice work (embeddings, slice results) in "
                        "<output>/.napari-sam-work after an output is complete")
    g.add_argument("--batch-size", type=_positive_int, default=4, metavar="N",
                   help="slices per encoder call (default: 4)")
    d = p.add_argument_group("scale-out (dask.distributed)")
    x = d.add_mutually_exclusive_group()
    x.add_argument("--scheduler", metavar="ADDRESS",
                   help="submit the files to a running dask scheduler, e.g. tcp://node1:8786 "
                        "(workers need napari-sam-stacks and the same paths)")
    x.add_argument("--workers", type=_positive_int, metavar="N",
                   help="start a local dask cluster of N worker processes")
    d.add_argument("--block-slices", type=_positive_int, metavar="N",
                   help="on a cluster, split stacks with more than N slices into blocks of N "
                        "slices processed in parallel (embed and auto)")
    _add_common(p)


_EPILOG_MAIN = """\
commands in a typical session:
  napari-sam sample nuclei-3d -o data/                   # synthetic sample stacks (TIFF)
  napari-sam auto "data/*.tif" -o out/ --preview         # segment everything, with PNG previews
  napari-sam segment data/ -o out/ --prompts clicks.csv  # prompted objects, propagated in z
  napari-sam models download vit_b_lm                    # real weights for light microscopy
  napari-sam auto "data/*.tif" -o out/ --model vit_b_lm --workers 4

Reruns skip complete outputs and finish partial ones. Exit code 0 only when every file
succeeded; a summary lists failures with their reasons. Docs: docs/cli.md, docs/cluster.md.
"""

_EPILOG_AUTO = """\
examples:
  napari-sam auto "data/*.tif" -o out/ --preview
  napari-sam auto data/ -o out/ --model vit_b_lm --points-per-side 16 --min-z-extent 3
  napari-sam auto big.tif -o out/ --workers 4 --block-slices 32
  napari-sam auto "data/*.tif" -o out/ --scheduler tcp://head-node:8786

Writes out/<stem>_labels.tif (uint16, axes and pixel size of the input) and a JSON sidecar
out/<stem>_labels.tif.json (model, parameters, objects with id, slice range, area, score).
Stacks are segmented slice by slice, objects linked across slices by overlap, then each object
propagated through the stack from the slice where it is largest, exactly as
napari_sam.segment_everything does. With --no-propagate memory stays constant (the label TIFF
is written page by page); propagation holds the labels in memory, as `segment` does.
"""

_EPILOG_SEGMENT = """\
examples:
  napari-sam segment "data/*.tif" -o out/ --prompts prompts.csv
  napari-sam segment stack.tif -o out/ --prompts clicks.json --mode box --preview

prompts.csv (one row per point, box or stop marker; napari order, row then column):
  file,id,slice,row,col,label,row0,col0,row1,col1
  stack.tif,1,10,64,80,1,,,,
  stack.tif,1,10,70,90,0,,,,
  stack.tif,2,5,,,,20,30,60,75
'file' is optional (rows without it apply to every input); 'label' is 1 (object) or 0
(background); a 'stop' column with 1 marks a slice the object must not reach. JSON:
  {"objects": {"1": [{"slice": 10, "points": [[64, 80]], "labels": [1]}]},
   "files": {"stack.tif": {"2": [{"slice": 5, "box": [20, 30, 60, 75]}]}}}
Each object is segmented on its prompted slices and propagated up and down the stack.

A session file saved from the napari dock (Save session, or the autosaved
<image>.sam-session.json) replays the dock's commits in order: with the same model, device
and precision it writes the dock's labels pixel for pixel; with another model or stack of the
same shape it reruns the prompts and prints per object what changed (also in the sidecar,
extra.replay). Every output's sidecar holds the propagation trace: `napari-sam report out/`.
"""

_EPILOG_REPORT = """\
examples:
  napari-sam segment stack.tif -o out/ --prompts clicks.csv
  napari-sam report out/            # writes out/stack_labels.tif.trace.png

Flags: an object that stopped early (its mask still stands out a few slices further: add a
point there), area jumps, overlap with another object, score drops.
"""

_EPILOG_EMBED = """\
examples:
  napari-sam embed "data/*.tif" -o embeddings/
  napari-sam auto "data/*.tif" -o out/ --embeddings embeddings/   # reuse them

Writes embeddings/<stem>.zarr (float16 per-slice image embeddings, resumable) and a sidecar.
"""

_EPILOG_TRAIN = """\
examples:
  napari-sam sample nuclei-2d -o train/ -n 20
  napari-sam train train/ train/ground_truth/ -o my_model.pt --epochs 5
  napari-sam train "train/*.tif" --labels "train/ground_truth/*.tif" -o my_model.pt
  napari-sam auto "data/*.tif" -o out/ --model my_model.pt

IMAGES and LABELS are paired in sorted order: the same number of files, same shapes.
The checkpoint (and FILE.json: architecture, data, metrics) is written atomically after
each improving epoch; Ctrl-C keeps the last good one.
"""

_EPILOG_SAMPLE = """\
examples:
  napari-sam sample nuclei-3d -o data/
  napari-sam sample em-3d xray-3d -o data/ -n 3 --shape 48,160,160

Writes <out>/<name>_seed<seed>.tif and the ground truth <out>/ground_truth/<same name>.
Samples: """ + ", ".join(SAMPLES) + "."

_EPILOG_MODELS = """\
examples:
  napari-sam models                      # list: cached or not, size, source
  napari-sam models download vit_b_lm    # download and verify once
  napari-sam models verify               # check the checksums of every cached file
  napari-sam models where vit_b          # the path to place a file at by hand (offline)
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``napari-sam`` argument parser (subcommands models, sample, embed, auto, segment, train,
    export)."""
    from napari_sam import __version__

    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=_Formatter, epilog=_EPILOG_MAIN,
        description="Segment Anything for microscopy, X-ray and underwater images and stacks: "
                    "batch segmentation from the shell.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    sub.required = True

    # ---- models
    pm = sub.add_parser("models", help="list, download, verify and locate model weights",
                        description="List the known models and manage downloaded weights.",
                        formatter_class=_Formatter, epilog=_EPILOG_MODELS)
    msub = pm.add_subparsers(dest="models_command", metavar="ACTION", title="actions")
    msub.add_parser("list", help="list models with their cached state and size (default)",
                    formatter_class=_Formatter)
    pd = msub.add_parser("download", help="download and verify a model",
                         formatter_class=_Formatter,
                         epilog="example:\n  napari-sam models download vit_b\n")
    pd.add_argument("name", metavar="NAME", help="model name (see `napari-sam models`)")
    pd.add_argument("--url", help="download from this URL instead (a mirror or file://...); the "
                                  "file must still have the published checksum")
    pd.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    pv = msub.add_parser("verify", help="check cached files against their published checksums",
                         formatter_class=_Formatter)
    pv.add_argument("name", nargs="?", metavar="NAME", help="one model (default: every cached one)")
    pw = msub.add_parser("where", help="print the path where a model's file is (or goes)",
                         formatter_class=_Formatter)
    pw.add_argument("name", metavar="NAME")

    # ---- sample
    ps = sub.add_parser("sample", help="write synthetic sample stacks (TIFF) with ground truth",
                        description="Write seeded synthetic images or stacks with their "
                                    "ground-truth labels, for trying the tools on a fresh machine.",
                        formatter_class=_Formatter, epilog=_EPILOG_SAMPLE)
    ps.add_argument("names", nargs="+", metavar="NAME", choices=list(SAMPLES),
                    help="sample kind: " + ", ".join(SAMPLES))
    ps.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    ps.add_argument("-n", "--count", type=_positive_int, default=1, metavar="N",
                    help="files per sample kind (default: 1)")
    ps.add_argument("--seed", type=_nonneg_int, default=10_000,
                    help="seed of the first file; file i uses seed + i (default: 10000, "
                         "outside the demo model's training seeds)")
    ps.add_argument("--shape", type=_shape_arg, metavar="Z,Y,X",
                    help="image shape, e.g. 32,128,128 (default depends on the sample)")
    ps.add_argument("--dtype", choices=("uint8", "uint16"), help="image dtype")
    ps.add_argument("--no-ground-truth", action="store_true",
                    help="do not write <out>/ground_truth/")
    ps.add_argument("--overwrite", action="store_true", help="replace existing files")
    ps.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")

    # ---- embed / auto / segment
    pe = sub.add_parser("embed", help="compute per-slice embeddings of stacks into zarr stores",
                        description="Compute the image embeddings of every slice (the expensive "
                                    "step) once, into resumable zarr stores that `auto` and "
                                    "`segment` can reuse (--embeddings).",
                        formatter_class=_Formatter, epilog=_EPILOG_EMBED)
    _add_batch(pe, "embed")

    pa = sub.add_parser("auto", help="segment everything (automatic instance segmentation)",
                        description="Automatic instance segmentation of images and stacks: a "
                                    "grid of point prompts, filtered by predicted IoU and "
                                    "stability, de-duplicated, linked across slices.",
                        formatter_class=_Formatter, epilog=_EPILOG_AUTO)
    _add_batch(pa, "auto")
    g = pa.add_argument_group("segment-everything parameters (SAM's names and defaults)")
    g.add_argument("--points-per-side", type=_points_per_side, default="auto", metavar="N|auto",
                   help="grid of N x N point prompts per slice (default: auto, one point every "
                        "16 pixels, 8 to 32 per side)")
    g.add_argument("--fill-gaps", action=argparse.BooleanOptionalAction, default=True,
                   help="prompt again in the middle of what the grid's masks left uncovered "
                        "(default: on)")
    g.add_argument("--points-per-batch", type=_positive_int, default=None, metavar="N",
                   help="prompts decoded together (memory vs speed; default: 64 on the CPU, "
                        "256 on a GPU)")
    g.add_argument("--pred-iou-thresh", type=_fraction, default=None, metavar="F",
                   help="keep masks with a predicted IoU above F (default: the model's "
                        "recommendation; 0.88 for SAM weights)")
    g.add_argument("--stability-score-thresh", type=_fraction, default=None, metavar="F",
                   help="keep masks with a stability score of at least F (default: the "
                        "model's recommendation; 0.95 for SAM weights)")
    g.add_argument("--stability-score-offset", type=_positive_float, default=1.0, metavar="F")
    g.add_argument("--box-nms-thresh", type=_fraction, default=None, metavar="F",
                   help="box IoU above which NMS drops the lower-scored mask (default: the "
                        "model's recommendation; 0.7 for SAM weights)")
    g.add_argument("--crop-n-layers", type=_nonneg_int, default=0, metavar="N",
                   help="also segment zoomed crops (slower; helps small objects)")
    g.add_argument("--crop-nms-thresh", type=_fraction, default=0.7, metavar="F")
    g.add_argument("--crop-overlap-ratio", type=_fraction, default=512 / 1500, metavar="F")
    g.add_argument("--crop-n-points-downscale-factor", type=_positive_int, default=1, metavar="N")
    g.add_argument("--min-mask-region-area", type=_nonneg_int, default=0, metavar="PX",
                   help="remove islands and fill holes smaller than PX pixels")
    g.add_argument("--min-visible-fraction", type=_fraction, default=0.5, metavar="F",
                   help="drop a mask when smaller masks on top leave less than F of it visible "
                        "(default: 0.5; 0 keeps the remains, as Meta's generator does)")
    g.add_argument("--foreground", choices=("auto",), default=None,
                   help="auto: prompt only bright regions (Otsu of the log intensity; faster on sparse fluorescence)")
    g = pa.add_argument_group("linking objects across slices (stacks)")
    g.add_argument("--link-iou", type=_fraction, default=0.25, metavar="F",
                   help="minimum IoU to continue an object on the next slice (default: 0.25)")
    g.add_argument("--max-gap", type=_nonneg_int, default=1, metavar="N",
                   help="close gaps of up to N slices without a match (default: 1)")
    g.add_argument("--min-z-extent", type=_positive_int, default=1, metavar="N",
                   help="drop objects spanning fewer than N slices, after propagation "
                        "(default: 1)")
    g.add_argument("--propagate", action=argparse.BooleanOptionalAction, default=True,
                   help="propagate each linked object through the stack from the slice where "
                        "it is largest, so objects missed on some slices get their full extent "
                        "(default: on; --no-propagate keeps the linked 2D masks; keeps the "
                        "stack's embeddings in the work folder meanwhile)")

    pg = sub.add_parser("segment", help="prompted segmentation and propagation from a prompts file",
                        description="Segment the objects given by points and boxes in a CSV or "
                                    "JSON prompts file and propagate them through each stack.",
                        formatter_class=_Formatter, epilog=_EPILOG_SEGMENT)
    _add_batch(pg, "segment")
    g = pg.add_argument_group("prompts and propagation")
    g.add_argument("--prompts", "-p", required=True, metavar="FILE",
                   help="CSV or JSON prompts file, or a session saved in the napari dock "
                        "(format below; a session replays its commits)")
    g.add_argument("--mode", choices=("auto", "box", "box+mask", "points", "center"),
                   default="auto", help="how each slice is prompted from the previous mask")
    g.add_argument("--axis-kind", choices=("z", "t"), default=None,
                   help="what the stack axis is (default: t for TYX inputs, else z)")
    g.add_argument("--iou-threshold", type=_fraction, default=0.5, metavar="F",
                   help="stop when the IoU with the previous slice's mask drops below F")
    g.add_argument("--min-area", type=_nonneg_int, default=5, metavar="PX",
                   help="stop when the mask gets smaller than PX pixels")
    g.add_argument("--fade-fraction", type=_fraction_or_off, default=None, metavar="F|off",
                   help="stop where the object's contrast with its surroundings falls below F "
                        "times its strongest contrast on its prompted slices (default: 0.5 "
                        "along z, off along t)")
    g.add_argument("--rebound-fraction", type=_fraction_or_off, default=None, metavar="F|off",
                   help="stop where the object's contrast, having dimmed by more than F times "
                        "its contrast on its prompted slices, rises again by as much: the mask "
                        "ran into the next object (default: 0.05 along z, off along t)")
    g.add_argument("--claimed-fraction", type=_fraction_or_off, default=0.5, metavar="F|off",
                   help="stop where more than F of the mask lies on another object that is "
                        "fewer slices from its own prompt")
    g.add_argument("--max-slices", type=_nonneg_int, default=None, metavar="N",
                   help="propagate at most N slices from each prompted slice")

    # ---- train
    pt = sub.add_parser("train", help="train or finetune a model on images with labels",
                        description="Train or finetune a SAM-family model on images with "
                                    "instance labels (simulated point and box prompts).",
                        formatter_class=_Formatter, epilog=_EPILOG_TRAIN)
    pt.add_argument("images", metavar="IMAGES", help="image files, a directory or a quoted glob")
    pt.add_argument("labels", metavar="LABELS", nargs="?",
                    help="label files, a directory or a quoted glob (or --labels LABELS)")
    pt.add_argument("--labels", dest="labels_opt", metavar="LABELS",
                    help="the same as the LABELS argument, as an option")
    pt.add_argument("-o", "--output", required=True, metavar="FILE.pt",
                    help="checkpoint to write (plus its JSON sidecar FILE.json)")
    g = pt.add_argument_group("training")
    g.add_argument("--epochs", type=_positive_int, default=10, metavar="N")
    g.add_argument("--lr", type=_positive_float, default=1e-4, metavar="F")
    g.add_argument("--batch-size", type=_positive_int, default=2, metavar="N",
                   help="images per step (default: 2)")
    g.add_argument("--steps-per-epoch", type=_positive_int, default=None, metavar="N")
    g.add_argument("--objects-per-image", type=_positive_int, default=8, metavar="N")
    g.add_argument("--freeze-encoder", action="store_true",
                   help="train the prompt encoder and mask decoder only")
    g.add_argument("--val-fraction", type=_fraction, default=0.2, metavar="F")
    g.add_argument("--seed", type=_nonneg_int, default=0)
    g.add_argument("--axes", type=_axes_arg, metavar="AXES", help=argparse.SUPPRESS)
    g.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint")
    _add_common(pt)

    # ---- export
    px = sub.add_parser("export", help="export a model to a portable format (ONNX)",
                        description="Export a model for use outside PyTorch.",
                        formatter_class=_Formatter, epilog=_EPILOG_EXPORT)
    xsub = px.add_subparsers(dest="export_format", metavar="FORMAT", title="formats")
    xsub.required = True
    po = xsub.add_parser("onnx", help="prompt encoder + mask decoder (Meta's ONNX interface), "
                                      "image encoder and a JSON with the preprocessing",
                         formatter_class=_Formatter, epilog=_EPILOG_EXPORT)
    po.add_argument("model", metavar="MODEL",
                    help="registry name (see `napari-sam models`) or checkpoint file")
    po.add_argument("-o", "--output", required=True, metavar="DIR",
                    help="folder for decoder.onnx, encoder.onnx and export.json (created)")
    po.add_argument("--opset", type=_positive_int, default=17, metavar="N",
                    help="ONNX opset, 17 or newer (default: 17)")
    po.add_argument("--decoder-only", action="store_true", help="skip the image encoder")
    po.add_argument("--encoder-only", action="store_true", help="skip the decoder")
    po.add_argument("--return-single-mask", action="store_true",
                    help="one mask per prompt, chosen as SAM does (Meta's option)")
    po.add_argument("--use-stability-score", action="store_true",
                    help="stability scores instead of predicted IoUs (Meta's option)")
    po.add_argument("--return-extra-metrics", action="store_true",
                    help="also output stability_scores and areas (Meta's option)")
    po.add_argument("--gelu-approximate", action="store_true",
                    help="tanh GELU, for runtimes without Erf (Meta's option)")
    po.add_argument("--overwrite", action="store_true",
                    help="replace exported files already in DIR (other files are kept)")
    po.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    po.add_argument("--verbose", "-v", action="store_true",
                    help="print tracebacks of failures (for bug reports)")

    # ---- report
    pr = sub.add_parser("report", help="plot the propagation traces of segment outputs (PNG)",
                        description="For every output of `napari-sam segment` in the folders "
                                    "or files given, write <output>.trace.png: per object its "
                                    "predicted IoU, area and contrast along the stack, where it "
                                    "stopped and why, and the flagged slices (printed too).",
                        formatter_class=_Formatter, epilog=_EPILOG_REPORT)
    pr.add_argument("outputs", nargs="+", metavar="PATH",
                    help="output folders or label files of `napari-sam segment`")
    pr.add_argument("--quiet", "-q", action="store_true", help="print only the PNG paths")
    return parser


# ============================================================================ models


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _cmd_models(args) -> int:
    from napari_sam.models import registry

    action = args.models_command or "list"
    if action == "list":
        rows = []
        for rec in registry.list_models():
            size = rec["size"]
            path = Path(rec["path"])
            if size is None and path.is_file():
                size = path.stat().st_size
            rows.append((rec["name"], rec["architecture"], _human(size),
                         "yes" if rec["cached"] else "no", rec["source"]))
        header = ("name", "arch", "size", "cached", "source")
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        for r in [header, *rows]:
            print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
        print(f"\ncache folder: {registry.cache_dir()} (set {registry.CACHE_ENV} to change it)")
        print("download: napari-sam models download NAME; details: docs/models.md")
        return 0
    if action == "where":
        _check_model_name(args.name)
        print(registry.where(args.name))
        return 0
    if action == "download":
        _check_model_name(args.name)
        if args.quiet:
            import logging

            import pooch

            pooch.get_logger().setLevel(logging.WARNING)  # pooch's own, unregistered logger
        path = registry.fetch(args.name, progress=not args.quiet, url=args.url)
        print(path)
        return 0
    if action == "verify":
        names = [args.name] if args.name else [r["name"] for r in registry.list_models()
                                                if Path(r["path"]).is_file()]
        if args.name:
            _check_model_name(args.name)
        if not names:
            print("no model files are present; download one with `napari-sam models download NAME`")
            return 0
        bad = 0
        for name in names:
            path = registry.where(name)
            if not path.is_file():
                print(f"{name}: not downloaded ({path})")
                bad += 1
            elif registry.verify(name):
                print(f"{name}: ok ({path})")
            else:
                print(f"{name}: CHECKSUM MISMATCH ({path}); run `napari-sam models download "
                      f"{name}` to replace it")
                bad += 1
        return 1 if bad else 0
    raise CLIError(f"unknown models action {action!r}", 2)  # pragma: no cover


def _check_model_name(name: str) -> None:
    from napari_sam.models.registry import REGISTRY

    if name not in REGISTRY:
        raise CLIError(f"unknown model {name!r}; known models: {', '.join(REGISTRY)}", 2)


def resolve_model(arg: str | None, *, quiet: bool = False) -> str:
    """The model a command uses: ``--model`` if given, else the first downloaded registry model,
    else the bundled demo model. Prints a note whenever the demo model is used."""
    from napari_sam.models import registry

    if arg:
        if arg not in registry.REGISTRY and not Path(arg).expanduser().is_file():
            raise CLIError(
                f"--model {arg!r} is neither a known model nor an existing checkpoint file; "
                f"known models: {', '.join(registry.REGISTRY)}", 2)
        spec = arg
    else:
        spec = next((n for n, s in registry.REGISTRY.items()
                     if not s.packaged and registry.is_cached(n)), registry.DEMO_NAME)
        if spec != registry.DEMO_NAME and not quiet:
            _note(f"using model {spec!r} (downloaded; choose another with --model)")
    demo_path = registry.where(registry.DEMO_NAME)
    is_demo = spec == registry.DEMO_NAME or (
        spec not in registry.REGISTRY and Path(spec).expanduser().resolve() == demo_path.resolve())
    if is_demo:
        if not demo_path.is_file():
            raise CLIError(
                f"no model available: the bundled demo model is not installed ({demo_path} is "
                "missing) and no SAM weights are downloaded; run `napari-sam models download "
                "vit_b` (or vit_b_lm for light microscopy) or pass --model PATH", 1)
        _note("using the bundled demo model (small, trained on synthetic data: for trying the "
              "tools, not for real data); " + _REAL_WEIGHTS_HINT)
    elif spec in registry.REGISTRY and not registry.is_cached(spec):
        # download once here, not in every worker
        registry.fetch(spec, progress=not quiet)
    return spec


# ============================================================================ sample


def _cmd_sample(args) -> int:
    import numpy as np

    from napari_sam import io as nio
    from napari_sam import synthetic

    out = Path(args.output)
    written = kept = 0
    for name in dict.fromkeys(args.names):
        func_name, default_shape = SAMPLES[name]
        func = getattr(synthetic, func_name)
        shape = args.shape or default_shape
        want = len(default_shape)
        if len(shape) != want:
            raise CLIError(f"--shape for {name} needs {want} sizes "
                           f"({'Z,Y,X' if want == 3 else 'Y,X'}), got {len(shape)}", 2)
        for i in range(args.count):
            seed = args.seed + i
            fname = f"{name}_seed{seed}.tif"
            img_path = out / fname
            gt_path = out / "ground_truth" / fname
            if img_path.exists() and not args.overwrite and (
                    args.no_ground_truth or gt_path.exists()):
                kept += 1
                if not args.quiet:
                    print(f"kept     {img_path} (exists; --overwrite to regenerate)")
                continue
            kwargs = {"seed": seed}
            if args.dtype and name != "underwater":
                kwargs["dtype"] = args.dtype
            s = func(tuple(shape), **kwargs)
            spacing = None
            if s.labels.ndim == 3:
                spacing = (float(s.meta.get("anisotropy", 1.0)), 1.0, 1.0)
            axes = {2: "YX", 3: "ZYX"}[s.labels.ndim] + ("C" if s.image.ndim > s.labels.ndim else "")
            _write_image(img_path, s.image, axes, spacing, {"sample": name, "seed": seed},
                         overwrite=True)
            if not args.no_ground_truth:
                nio.write_labels(gt_path, np.asarray(s.labels), axes=axes.replace("C", ""),
                                 pixel_size=spacing if spacing else None,
                                 metadata={"sample": name, "seed": seed, "ground_truth": True},
                                 overwrite=True)
            written += 1
            if not args.quiet:
                print(f"wrote    {img_path} {tuple(s.image.shape)} {s.image.dtype}, "
                      f"{s.n_objects} objects" + ("" if args.no_ground_truth else f" (+ {gt_path})"))
    return 0


def _write_image(path: Path, image, axes: str, spacing, info: dict, *, overwrite: bool) -> None:
    """Write an image TIFF (ImageJ hyperstack) atomically."""
    import json
    import uuid

    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    md = {"axes": axes, "Info": json.dumps({"napari_sam": info})}
    kwargs = {}
    if spacing:
        md.update(unit="micron", spacing=spacing[0])
        kwargs["resolution"] = (1.0 / spacing[2], 1.0 / spacing[1])
    rgb = axes.endswith("C")
    try:
        tifffile.imwrite(tmp, image, imagej=not rgb, photometric="rgb" if rgb else "minisblack",
                         metadata=md if not rgb else {"axes": axes}, compression="zlib",
                         **kwargs)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ============================================================================ batch commands


def _batch_context(args, model: str):
    from napari_sam import batch

    params: dict = {}
    if args.command == "auto":
        for key in (*batch.AUTO_KEYS, *batch.LINK_DEFAULTS, "foreground", "propagate"):
            params[key] = getattr(args, key)
    elif args.command == "segment":
        params = {"mode": args.mode, "axis_kind": args.axis_kind,
                  "iou_threshold": args.iou_threshold, "min_area": args.min_area,
                  "fade_fraction": args.fade_fraction, "rebound_fraction": args.rebound_fraction,
                  "claimed_fraction": args.claimed_fraction, "max_slices": args.max_slices}
    return batch.Context(
        command=args.command, model=model, out_dir=args.output, device=args.device,
        params=params, axes=args.axes, channel=args.channel, overwrite=args.overwrite,
        preview=getattr(args, "preview", False), quiet=args.quiet, verbose=args.verbose,
        suffix=getattr(args, "suffix", "_labels"), fmt=getattr(args, "fmt", "tif"),
        batch_size=args.batch_size, keep_work=args.keep_work,
        embeddings_dir=getattr(args, "embeddings", None),
    )


def _print_result(res, quiet: bool, what: str = "objects") -> None:
    if quiet and res.status != "failed":
        return
    from tqdm.auto import tqdm

    name = Path(res.input).name
    if res.status == "done":
        line = f"done     {name} -> {res.output} ({res.objects} {what}, {res.seconds:.1f} s)"
    elif res.status == "skipped":
        line = f"skipped  {name}: {res.output} is {res.reason}" if res.reason == "complete" \
            else f"skipped  {name}: {res.reason}"
        if res.details.get("written_by_another_process"):
            line += " (written by the other process)"
    elif res.status == "busy":
        line = f"BUSY     {name}: {res.reason}; not done by this run"
    else:
        line = f"FAILED   {name}: {res.reason}"
    tqdm.write(line, file=sys.stderr)
    tb = res.details.get("traceback")
    if tb:
        tqdm.write(tb, file=sys.stderr)


def _summary(results, n_jobs: int, seconds: float, *, interrupted: bool = False) -> None:
    done = sum(r.status == "done" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    failed = [r for r in results if r.status == "failed"]
    busy = [r for r in results if r.status == "busy"]
    not_run = n_jobs - len(results)
    head = (f"{n_jobs} file(s): {done} done, {skipped} skipped, {len(failed)} failed"
            + (f", {len(busy)} busy in another process" if busy else "")
            + (f", {not_run} not run" if not_run else "") + f" ({seconds:.1f} s)")
    print("\nSummary: " + head)
    rows = [r for r in results if r.status != "done"] if len(results) > 40 else list(results)
    if rows:
        table = [("status", "input", "output / reason")]
        for r in rows:
            detail = r.reason if r.status in ("failed", "busy") else (
                r.output + ("" if r.reason in ("", "complete") else f" ({r.reason})"))
            table.append((r.status, Path(r.input).name, detail))
        w0 = max(len(t[0]) for t in table)
        w1 = max(len(t[1]) for t in table)
        for t in table:
            print(f"  {t[0].ljust(w0)}  {t[1].ljust(w1)}  {t[2]}")
    if failed:
        print(f"{len(failed)} file(s) failed; fix them and rerun the same command: complete "
              "outputs are skipped.")
    if busy:
        print(f"{len(busy)} file(s) were being written by another napari-sam process and are "
              "not done by this run; rerun the same command when it has finished (exit code 1).")
    if interrupted:
        print("Interrupted: finished outputs are complete; rerun the same command to resume.")


def _check_output_dir(path: str) -> None:
    """``-o`` must be a folder we can write to: create it if needed and try a file in it."""
    import uuid

    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise CLIError(f"-o {path}: this is an existing file, not a folder; give a folder for "
                       "the outputs (created if needed), e.g. -o out/", 2)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".napari-sam-write-test-{uuid.uuid4().hex[:8]}"
        probe.touch()
        probe.unlink()
    except FileExistsError:
        raise CLIError(f"-o {path}: a part of this path is an existing file, not a folder; "
                       "give another output folder", 2) from None
    except OSError as exc:
        raise CLIError(f"-o {path}: cannot write there ({exc.strerror or exc}); choose a folder "
                       "you can write to, or fix its permissions", 2) from None


def _check_batch_args(args) -> None:
    """Problems with the arguments that argparse cannot see, reported before any work."""
    from napari_sam.device import resolve_device

    try:
        resolve_device(args.device)
    except ValueError as exc:
        raise CLIError(f"--device: {exc}", 2) from None
    if args.block_slices is not None and args.workers is None and args.scheduler is None:
        raise CLIError("--block-slices splits stacks between the workers of a cluster; add "
                       "--workers N or --scheduler ADDRESS, or leave it out", 2)
    suffix = getattr(args, "suffix", "_labels")
    if any(sep in suffix for sep in ("/", "\\")) or suffix in (".", ".."):
        raise CLIError(f"--suffix {suffix!r}: no folders in the suffix; use -o to choose the "
                       "output folder", 2)
    emb = getattr(args, "embeddings", None)
    if emb is not None and not Path(emb).expanduser().is_dir():
        raise CLIError(f"--embeddings {emb}: no such folder; write the stores first with "
                       f"`napari-sam embed INPUTS -o {emb}`, or leave --embeddings out", 2)
    out = Path(args.output).expanduser()
    if out.exists() and not out.is_dir():
        raise CLIError(f"-o {args.output}: this is an existing file, not a folder; give a "
                       "folder for the outputs (created if needed), e.g. -o out/", 2)


def _check_model_loads(model: str, device: str) -> None:
    """Load a checkpoint file given with --model once, before any file, in this process (the
    serial run then reuses it): a file that is no checkpoint is one error, not one per file."""
    from napari_sam import batch
    from napari_sam.models.registry import REGISTRY

    if model in REGISTRY:
        return
    try:
        batch.get_model(model, device)
    except Exception as exc:
        first = " ".join((str(exc) or type(exc).__name__).strip().splitlines()[0].split())
        if len(first) > 240:
            first = first[:240] + "..."
        raise CLIError(f"--model {model}: cannot load it as a model: {first}; give a SAM "
                       "checkpoint (.pt/.pth, e.g. from `napari-sam train`) or a name from "
                       "`napari-sam models`", 2) from None


def _session_model(prompts, args) -> str | None:
    """``--model``, or for a session file without it the session's own model (so a replay
    reproduces the dock's labels without repeating which model made them)."""
    session = getattr(prompts, "session", None)
    if session is None or args.model is not None:
        return args.model
    from napari_sam.batch import BatchError
    from napari_sam.session import SessionError, check_model

    try:
        spec = check_model(session)
    except SessionError as exc:
        raise BatchError(str(exc)) from None
    if not args.quiet:
        _note(f"model {spec}: the session's (--model replays it with another)")
    return spec


def _cmd_batch(args) -> int:
    from dataclasses import replace

    from napari_sam import batch

    _check_batch_args(args)
    inputs = batch.collect_inputs(args.inputs, recursive=args.recursive)
    prompts = None
    if args.command == "segment":
        prompts = batch.load_prompts(args.prompts)
        args.model = _session_model(prompts, args)
    ctx = _batch_context(args, args.model or "demo")
    jobs = batch.make_jobs(inputs, ctx, prompts)
    if prompts is not None:  # every prompt against its stack's shape, before any embedding
        for note in batch.check_prompts(prompts, jobs, ctx):
            _note(note)
    _check_output_dir(args.output)  # created here, once the inputs and prompts are good
    model = resolve_model(args.model, quiet=args.quiet)
    ctx = replace(ctx, model=model)
    from napari_sam.device import PRECISION_ENV, describe  # --precision reaches every worker
    if args.precision != "auto":
        os.environ[PRECISION_ENV] = args.precision
    if not args.quiet:
        _note(f"device {describe(args.device)}")
    if args.scheduler is None and args.workers is None:
        _check_model_loads(model, args.device)
    results = []
    t0 = time.perf_counter()

    def on_result(res):
        results.append(res)
        _print_result(res, args.quiet, "slices" if args.command == "embed" else "objects")

    def on_wait(job, pid):
        from tqdm.auto import tqdm

        tqdm.write(f"waiting  {job.input.name}: another napari-sam process"
                   + (f" (pid {pid})" if pid else "") + f" is writing {job.output}; this run "
                   "continues when it finishes (Ctrl-C to stop; the rest resumes on a rerun)",
                   file=sys.stderr)

    try:
        batch.run_jobs(jobs, ctx, scheduler=args.scheduler, workers=args.workers,
                       block_slices=args.block_slices, on_result=on_result, on_wait=on_wait)
    except KeyboardInterrupt:
        _summary(results, len(jobs), time.perf_counter() - t0, interrupted=True)
        return 130
    _summary(results, len(jobs), time.perf_counter() - t0)
    return 0 if all(r.ok for r in results) and len(results) == len(jobs) else 1


# ============================================================================ train


def _cmd_train(args) -> int:
    from napari_sam import batch

    if (args.labels is None) == (args.labels_opt is None):
        raise CLIError("give the label files once: `napari-sam train IMAGES LABELS -o FILE.pt` "
                       "(or --labels LABELS)", 2)
    labels_spec = args.labels if args.labels is not None else args.labels_opt
    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise CLIError(f"{out} already exists; pass --overwrite to replace it or choose another "
                       "-o", 2)
    if out.suffix.lower() not in (".pt", ".pth"):
        raise CLIError(f"-o {out}: the checkpoint name must end in .pt or .pth", 2)
    images = batch.collect_inputs([args.images])
    labels = batch.collect_inputs([labels_spec])
    if len(images) != len(labels):
        raise CLIError(f"{len(images)} image file(s) but {len(labels)} label file(s); IMAGES "
                       "and LABELS are paired in sorted order and must match one to one", 2)
    same = {p.resolve() for p in images} & {p.resolve() for p in labels}
    if same:
        raise CLIError(f"IMAGES and LABELS select the same file(s), e.g. {sorted(same)[0]}; "
                       "point LABELS at the label files", 2)
    model = resolve_model(args.model, quiet=args.quiet)
    from napari_sam.device import resolve_device

    try:
        resolve_device(args.device)
    except ValueError as exc:
        raise CLIError(f"--device: {exc}", 2) from None
    from napari_sam.training import train

    if not args.quiet:
        _note(f"training on {len(images)} image file(s) from {model!r} -> {out}")
    t0 = time.perf_counter()
    result = train(
        [str(p) for p in images], [str(p) for p in labels], model=model, out=out,
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        objects_per_image=args.objects_per_image, freeze_encoder=args.freeze_encoder,
        val_fraction=args.val_fraction, seed=args.seed, device=args.device,
        steps_per_epoch=args.steps_per_epoch, progress=not args.quiet,
    )
    last = result.history[-1] if result.history else {}
    metric = last.get("val_iou", last.get("train_iou"))
    msg = (f"wrote {result.path} after {len(result.history)} epoch(s) in "
           f"{time.perf_counter() - t0:.1f} s") if result.path else "no checkpoint was written"
    if metric is not None:
        msg += f"; last epoch IoU {metric:.3f}"
    print(msg)
    if result.path:
        print(f"use it: napari-sam auto \"data/*.tif\" -o out/ --model {result.path}")
    if result.interrupted:
        print("Interrupted: the checkpoint on disk is the last good one.")
        return 130
    return 0 if result.path else 1


# ============================================================================ export

_EPILOG_EXPORT = """\
examples:
  napari-sam export onnx vit_b -o onnx/vit_b
  napari-sam export onnx my_model.pt -o onnx/mine --decoder-only --return-single-mask

The decoder has the inputs and outputs of Meta's ONNX decoder; docs/onnx.md shows how to
run it with onnxruntime. Needs: pip install "napari-sam-stacks[onnx]".
"""


def _cmd_export(args) -> int:
    if args.decoder_only and args.encoder_only:
        raise CLIError("--decoder-only and --encoder-only exclude each other; give one", 2)
    try:
        from napari_sam.export import export_onnx
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        raise CLIError(str(exc)) from None
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise CLIError('exporting to ONNX needs the onnx package; install the ONNX extra: '
                       'pip install "napari-sam-stacks[onnx]"') from None
    from napari_sam.predictor import as_model

    try:
        model = as_model(args.model, device="cpu")
    except ValueError as exc:  # unknown name, missing or unreadable checkpoint: bad argument
        raise CLIError(str(exc), 2) from None
    if model.is_demo and not args.quiet:
        print(f"{PROG}: note: exporting the bundled demo model (trained on synthetic scenes, "
              "not for real data)", file=sys.stderr)
    result = export_onnx(
        model, args.output,
        decoder=not args.encoder_only, encoder=not args.decoder_only, opset=args.opset,
        return_single_mask=args.return_single_mask,
        use_stability_score=args.use_stability_score,
        return_extra_metrics=args.return_extra_metrics,
        gelu_approximate=args.gelu_approximate, overwrite=args.overwrite,
    )  # fmt: skip
    if not args.quiet:
        for path in (result.decoder, result.encoder, result.metadata):
            if path is not None:
                print(f"wrote {path} ({_human(path.stat().st_size)})")
        print(f"model {model.model_id} exported to {result.folder}")
    return 0


# ============================================================================ main


def _cmd_report(args) -> int:
    from napari_sam.trace import report

    written = report(args.outputs, out=sys.stdout, quiet=args.quiet)
    if not written:
        raise CLIError("no propagation traces found in " + ", ".join(args.outputs) + "; run "
                       "`napari-sam segment ... -o DIR` first and give DIR", 1)
    return 0


def _sigterm(signum, frame):  # pragma: no cover - signal handler
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run ``napari-sam`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with 2 and a usage line on bad arguments
    verbose = getattr(args, "verbose", False)
    from napari_sam.batch import BatchError

    old = None
    with contextlib.suppress(ValueError):  # not in the main thread
        old = signal.signal(signal.SIGTERM, _sigterm)
    try:
        if args.command == "models":
            return _cmd_models(args)
        if args.command == "sample":
            return _cmd_sample(args)
        if args.command == "train":
            return _cmd_train(args)
        if args.command == "export":
            return _cmd_export(args)
        if args.command == "report":
            return _cmd_report(args)
        return _cmd_batch(args)
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except CLIError as exc:
        if exc.code == 2:
            sub = getattr(args, "command", None)
            print(f"usage: {PROG} {sub} --help", file=sys.stderr)
        _err(str(exc))
        return exc.code
    except BatchError as exc:
        print(f"usage: {PROG} {args.command} --help", file=sys.stderr)
        _err(str(exc))
        return 2
    except Exception as exc:  # our errors carry their own next step
        if verbose:
            import traceback

            traceback.print_exc()
        text = str(exc) or type(exc).__name__
        from napari_sam.models.registry import ModelDownloadError

        if not isinstance(exc, (ValueError, FileNotFoundError, ModelDownloadError, RuntimeError)):
            text = f"{type(exc).__name__}: {text}"
        _err(text)
        return 1
    finally:
        if old is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, old)


def entry_point() -> int:
    """The ``napari-sam`` command: the CPU thread policy first (it must be set before torch
    loads; see :func:`napari_sam.device.configure_threads`), then :func:`main`."""
    from napari_sam.device import configure_threads

    configure_threads()
    return main()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(entry_point())
