"""The arguments of the file commands ``embed``, ``auto`` and ``segment``: inputs and outputs,
scale-out, and each command's parameters (``segment``'s from
:data:`napari_sam.batch.SEGMENT_OPTIONS`, the one list of them)."""

from __future__ import annotations

import argparse

from napari_sam.batch.segment_options import SAM2_OPTIONS, SEGMENT_OPTIONS
from napari_sam.cli.arguments import (
    Formatter,
    add_common,
    axes_arg,
    fraction,
    fraction_or_off,
    nonneg_int,
    points_per_side,
    positive_float,
    positive_int,
    tiling_arg,
    user_path,
)


def overlap_ratio(text: str) -> float:
    """``--crop-overlap-ratio``: a number from 0 up to (not including) 1, written as a
    decimal (``0.34``) or as a ratio ``A/B`` (``512/1500``, as Meta's default is quoted)."""
    top, slash, bottom = text.partition("/")
    try:
        value = float(top) / float(bottom) if slash else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or a ratio A/B (e.g. 0.34 or 512/1500), got {text!r}") from None
    except ZeroDivisionError:
        raise argparse.ArgumentTypeError(
            f"the ratio {text!r} divides by zero; give a nonzero denominator (e.g. 512/1500)"
        ) from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(
            f"expected a number from 0 up to (not including) 1, got {text!r}"
            + (f" = {value:g}" if slash else ""))
    return value


#: slices per encoder call when --batch-size is not given
BATCH_SIZE_DEFAULT = 4

#: How the command line parses each ``SegmentOption.kind``.
SEGMENT_ARGUMENT_TYPES = {
    "fraction": fraction,
    "fraction_or_off": fraction_or_off,
    "nonneg_int": nonneg_int,
}


_THREADS_DEFAULT = " (default: from the cores free now; also NAPARI_SAM_THREADS)"

#: What ``--threads`` does for each file command.
THREADS_HELP = {
    "embed": "CPU threads of this process: torch's threads, which run the image encoder"
             + _THREADS_DEFAULT,
    "auto": "CPU threads of this process: torch's threads, and slices segmented at once"
            + _THREADS_DEFAULT,
    "segment": "CPU threads of this process: torch's threads, which embed the slices and "
               "propagate the objects (the up and down sweeps share them)" + _THREADS_DEFAULT,
}

_BLOCKS = ("on a cluster, split stacks with more than N slices into blocks of N slices "
           "processed in parallel")

#: What ``--block-slices`` does for each file command (segment accepts it and ignores it).
BLOCK_SLICES_HELP = {
    "embed": _BLOCKS,
    "auto": _BLOCKS,
    "segment": "ignored by segment (it propagates slice after slice, one task per file; a "
               "note says so): blocks split stacks for embed and auto only",
}


def add_batch_arguments(p: argparse.ArgumentParser, command: str) -> None:
    """Inputs, ``-o``, "input and output" and "scale-out" options of a file command."""
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files (TIFF, OME-TIFF, .npy, .zarr, PNG, JPEG), directories or "
                        "quoted glob patterns such as \"data/*.tif\"")
    p.add_argument("-o", "--output", required=True, metavar="DIR", type=user_path,
                   help="output folder (created if needed)")
    g = p.add_argument_group("input and output")
    g.add_argument("--axes", type=axes_arg, metavar="AXES",
                   help="axes of the inputs when their metadata is missing or wrong, one letter "
                        "per dimension from TZCYX, e.g. ZYX, TYX, ZYXC, CZYX")
    g.add_argument("--channel", type=nonneg_int, metavar="N",
                   help="channel to use of the inputs that have a channel axis (without it, RGB "
                        "is used as is); a file whose metadata names axes without channels "
                        "(or a 2D image) is segmented as it is, with a note; one whose axes "
                        "are guessed from its shape fails (give --axes)")
    g.add_argument("--recursive", "-r", action="store_true",
                   help="search input directories recursively")
    g.add_argument("--include-labels", action="store_true",
                   help="also segment files found in input folders (or by a glob) that look "
                        "like label images (named *labels*, *mask*, ground_truth ..., holding "
                        "integers, mostly 0, in flat regions); without it they are left out "
                        "with a note (a file named explicitly is always segmented)")
    g.add_argument("--overwrite", action="store_true",
                   help="recompute outputs that are already complete and replace those "
                        "edited since or written by another napari-sam command (a file or "
                        "store napari-sam did not write is never replaced)")
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
        g.add_argument("--embeddings", metavar="DIR", type=user_path,
                       help="reuse embedding stores written by `napari-sam embed` "
                            "(<DIR>/<stem>.zarr)")
    g.add_argument("--keep-work", action="store_true",
                   help="keep per-slice work (embeddings, slice results) in "
                        "<output>/.napari-sam-work after an output is complete (default: "
                        "deleted then); auto: a rerun with other linking or propagation "
                        "options then reuses the segmented slices")
    g.add_argument("--tiling", type=tiling_arg, default="auto",
                   metavar="auto|off|HALO|WINDOW,HALO",
                   help="embed slices much larger than the model input (over 1.5 inputs: 1536 "
                        "px for SAM, 384 px for the demo model) in overlapping windows of the "
                        "input's size at full resolution, so small objects are not shrunk away "
                        "(default: auto; off: shrink every slice to the input; HALO: always, "
                        "windows overlapping by 2 x HALO px; WINDOW,HALO: windows of WINDOW px)")
    g.add_argument("--batch-size", type=positive_int, default=BATCH_SIZE_DEFAULT, metavar="N",
                   help=f"slices per encoder call (default: {BATCH_SIZE_DEFAULT})")
    g.add_argument("--threads", type=positive_int, metavar="N", help=THREADS_HELP[command])
    d = p.add_argument_group("scale-out (dask.distributed)")
    x = d.add_mutually_exclusive_group()
    x.add_argument("--scheduler", metavar="ADDRESS",
                   help="submit the files to a running dask scheduler, e.g. tcp://node1:8786 "
                        "(workers need napari-sam-stacks and the same paths)")
    x.add_argument("--workers", type=positive_int, metavar="N",
                   help="start a local dask cluster of N worker processes")
    d.add_argument("--block-slices", type=positive_int, metavar="N",
                   help=BLOCK_SLICES_HELP[command])
    add_common(p)


EPILOG_AUTO = """\
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


EPILOG_SEGMENT = """\
examples:
  napari-sam sample nuclei-3d -o data/    # a stack, its ground truth and data/prompts.csv
  napari-sam segment data/ -o seg/ --prompts data/prompts.csv
  napari-sam segment stack.tif -o out/ --prompts clicks.json --mode box --preview
  napari-sam segment stack.tif -o out/ -p prompts.csv --model sam2.1_hiera_tiny  # SAM 2 memory

prompts.csv (one row per point, box or stop marker; napari order, row then column):
  file,id,slice,row,col,label,row0,col0,row1,col1
  nuclei-3d_seed10000.tif,1,11,94,71,1,,,,
  nuclei-3d_seed10000.tif,1,11,80,71,0,,,,
  nuclei-3d_seed10000.tif,2,27,,,,47,21,67,41
'file' is optional (rows without it apply to every input); 'label' is 1 (object) or 0
(background); a 'stop' column with 1 marks a slice the object must not reach. JSON:
  {"objects": {"1": [{"slice": 10, "points": [[64, 80]], "labels": [1]}]},
   "files": {"stack.tif": {"2": [{"slice": 5, "box": [20, 30, 60, 75]}]}}}
Each object is segmented on its prompted slices and propagated up and down the stack: with
SAM 1 models by re-prompting each slice from the last mask (stop rules above), with SAM 2.1
models (--method sam2) by SAM 2's memory, which says itself where the object ends.

A session file saved from the napari dock (Save session, or the autosaved
<image>.sam-session.json) replays the dock's commits in order: with the same model, device
and precision it writes the dock's labels pixel for pixel; with another model or stack of the
same shape it reruns the prompts and prints per object what changed (also in the sidecar,
extra.replay). Every output's sidecar holds the propagation trace: `napari-sam report out/`.
"""


EPILOG_EMBED = """\
examples:
  napari-sam embed "data/*.tif" -o embeddings/
  napari-sam auto "data/*.tif" -o out/ --embeddings embeddings/   # reuse them

Writes embeddings/<stem>.zarr (float16 per-slice image embeddings, resumable) and a sidecar.
"""


def add_embed_parser(sub) -> None:
    """``napari-sam embed INPUT... -o DIR``."""
    pe = sub.add_parser("embed", help="compute per-slice embeddings of stacks into zarr stores",
                        description="Compute the image embeddings of every slice (the expensive "
                                    "step) once, into resumable zarr stores that `auto` and "
                                    "`segment` can reuse (--embeddings).",
                        formatter_class=Formatter, epilog=EPILOG_EMBED)
    add_batch_arguments(pe, "embed")


def add_auto_parser(sub) -> None:
    """``napari-sam auto INPUT... -o DIR`` and its parameters."""
    pa = sub.add_parser("auto", help="segment everything (automatic instance segmentation)",
                        description="Automatic instance segmentation of images and stacks: a "
                                    "grid of point prompts, filtered by predicted IoU and "
                                    "stability, de-duplicated, linked across slices.",
                        formatter_class=Formatter, epilog=EPILOG_AUTO)
    add_batch_arguments(pa, "auto")
    _add_segment_everything_options(pa)
    _add_linking_options(pa)


def _add_segment_everything_options(pa: argparse.ArgumentParser) -> None:
    """Parameters of segment_everything, SAM's names and defaults."""
    g = pa.add_argument_group("segment-everything parameters (SAM's names and defaults)")
    g.add_argument("--points-per-side", type=points_per_side, default="auto", metavar="N|auto",
                   help="grid of N x N point prompts per slice (default: auto, one point every "
                        "16 pixels, 8 to 32 per side)")
    g.add_argument("--fill-gaps", action=argparse.BooleanOptionalAction, default=True,
                   help="prompt again in the middle of what the grid's masks left uncovered "
                        "(default: on)")
    g.add_argument("--points-per-batch", type=positive_int, default=None, metavar="N",
                   help="prompts decoded together (memory vs speed; default: 64 on the CPU, "
                        "256 on a GPU)")
    g.add_argument("--pred-iou-thresh", type=fraction, default=None, metavar="F",
                   help="keep masks with a predicted IoU above F (default: the model's "
                        "recommendation; 0.88 for SAM weights)")
    g.add_argument("--stability-score-thresh", type=fraction, default=None, metavar="F",
                   help="keep masks with a stability score of at least F (default: the "
                        "model's recommendation; 0.95 for SAM weights)")
    g.add_argument("--stability-score-offset", type=positive_float, default=1.0, metavar="F",
                   help="how far the mask logits threshold is moved up and down to compute the "
                        "stability score (default: 1.0)")
    g.add_argument("--box-nms-thresh", type=fraction, default=None, metavar="F",
                   help="box IoU above which NMS drops the lower-scored mask (default: the "
                        "model's recommendation; 0.7 for SAM weights)")
    g.add_argument("--crop-n-layers", type=nonneg_int, default=0, metavar="N",
                   help="also segment zoomed crops (slower; helps small objects; default: 0, "
                        "no crops)")
    g.add_argument("--crop-nms-thresh", type=fraction, default=0.7, metavar="F",
                   help="box IoU above which NMS drops a duplicate mask found in another crop "
                        "(default: 0.7)")
    g.add_argument("--crop-overlap-ratio", type=overlap_ratio, default=512 / 1500,
                   metavar="F",
                   help="overlap of neighbouring crops, a fraction of the crop size: a number "
                        "or a ratio A/B (default: 512/1500)")
    g.add_argument("--crop-n-points-downscale-factor", type=positive_int, default=1, metavar="N",
                   help="crop layer k is prompted with the grid's points per side divided by "
                        "N**k (default: 1, the same grid)")
    g.add_argument("--min-mask-region-area", type=nonneg_int, default=0, metavar="PX",
                   help="remove islands and fill holes smaller than PX pixels (default: 0, "
                        "off)")
    g.add_argument("--min-visible-fraction", type=fraction, default=0.5, metavar="F",
                   help="drop a mask when smaller masks on top leave less than F of it visible "
                        "(default: 0.5; 0 keeps the remains, as Meta's generator does)")
    g.add_argument("--rescue-margin", type=fraction, default=0.1, metavar="F",
                   help="2D images: also keep masks that miss the IoU or stability threshold "
                        "by at most F where no other mask covers them (default: 0.1; 0: off; "
                        "stacks: off)")
    g.add_argument("--foreground", choices=("auto",), default=None,
                   help="auto: prompt only bright regions (Otsu of the log intensity; faster "
                        "on sparse fluorescence; default: the whole slice)")


def _add_linking_options(pa: argparse.ArgumentParser) -> None:
    """Linking objects across slices, and propagation."""
    g = pa.add_argument_group("linking objects across slices (stacks)")
    g.add_argument("--link-iou", type=fraction, default=0.25, metavar="F",
                   help="minimum IoU to continue an object on the next slice (default: 0.25)")
    g.add_argument("--max-gap", type=nonneg_int, default=1, metavar="N",
                   help="close gaps of up to N slices without a match (default: 1)")
    g.add_argument("--min-z-extent", type=positive_int, default=1, metavar="N",
                   help="drop objects spanning fewer than N slices, after propagation "
                        "(default: 1)")
    g.add_argument("--propagate", action=argparse.BooleanOptionalAction, default=True,
                   help="propagate each linked object through the stack from the slice where "
                        "it is largest, so objects missed on some slices get their full extent "
                        "(default: on; --no-propagate keeps the linked 2D masks; keeps the "
                        "stack's embeddings in the work folder meanwhile)")


def add_segment_parser(sub) -> None:
    """``napari-sam segment INPUT... -o DIR --prompts FILE``; the propagation
    options come from :data:`napari_sam.batch.SEGMENT_OPTIONS`."""
    pg = sub.add_parser("segment", help="prompted segmentation and propagation from a prompts file",
                        description="Segment the objects given by points and boxes in a CSV or "
                                    "JSON prompts file and propagate them through each stack.",
                        formatter_class=Formatter, epilog=EPILOG_SEGMENT)
    add_batch_arguments(pg, "segment")
    g = pg.add_argument_group("prompts and propagation")
    g.add_argument("--prompts", "-p", required=True, metavar="FILE", type=user_path,
                   help="CSV or JSON prompts file, or a session saved in the napari dock "
                        "(format below; a session replays its commits)")
    _add_options(g, SEGMENT_OPTIONS)
    _add_options(pg.add_argument_group("SAM 2.1 memory propagation (docs/sam2.md)"),
                 SAM2_OPTIONS)


def _add_options(group, options) -> None:
    """One argparse option per flagged :class:`napari_sam.batch.segment_options.SegmentOption`."""
    for option in options:
        if option.flag is None:
            continue
        kwargs = {"default": option.default, "help": option.help}
        if option.kind == "choice":
            kwargs["choices"] = option.choices
        else:
            kwargs["type"] = SEGMENT_ARGUMENT_TYPES[option.kind]
        if option.metavar is not None:
            kwargs["metavar"] = option.metavar
        group.add_argument(option.flag, **kwargs)
