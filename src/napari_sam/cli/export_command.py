"""``napari-sam export onnx``: a model's decoder and encoder as ONNX files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_sam.cli.arguments import Formatter, user_path
from napari_sam.cli.errors import PROG, CLIError
from napari_sam.cli.models_command import human_size

EPILOG_EXPORT = """\
examples:
  napari-sam export onnx vit_b -o onnx/vit_b
  napari-sam export onnx my_model.pt -o onnx/mine --decoder-only --return-single-mask

The decoder has the inputs and outputs of Meta's ONNX decoder; docs/onnx.md shows how to
run it with onnxruntime. Needs: pip install "napari-sam-stacks[onnx]".
"""


def add_export_parser(sub) -> None:
    """``napari-sam export onnx MODEL -o DIR``."""
    px = sub.add_parser("export", help="export a model to a portable format (ONNX)",
                        description="Export a model for use outside PyTorch.",
                        formatter_class=Formatter, epilog=EPILOG_EXPORT)
    xsub = px.add_subparsers(dest="export_format", metavar="FORMAT", title="formats")
    xsub.required = True
    po = xsub.add_parser("onnx", help="prompt encoder + mask decoder (Meta's ONNX interface), "
                                      "image encoder and a JSON with the preprocessing",
                         formatter_class=Formatter, epilog=EPILOG_EXPORT)
    po.add_argument("model", metavar="MODEL",
                    help="registry name (see `napari-sam models`) or checkpoint file")
    po.add_argument("-o", "--output", required=True, metavar="DIR", type=output_arg,
                    help="folder for decoder.onnx, encoder.onnx and export.json (created)")
    po.add_argument("--opset", type=opset_arg, default=17, metavar="N",
                    help="ONNX opset, from 17 to the newest the installed torch exports "
                         "(default: 17)")
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


# The newest opset assumed when torch does not say (torch.onnx._constants.ONNX_MAX_OPSET,
# 23 in torch 2.13, whose TorchScript exporter lists 20 as its own newest).
FALLBACK_MAX_OPSET = 20


def opset_range() -> tuple[int, int]:
    """The ONNX opsets ``export onnx`` can write: (the oldest the export supports, the newest
    the installed torch exports)."""
    from napari_sam.export.onnx_graphs import MIN_OPSET

    try:
        from torch.onnx import _constants

        newest = int(_constants.ONNX_MAX_OPSET)
    except (ImportError, AttributeError, TypeError, ValueError):  # a torch without it
        newest = FALLBACK_MAX_OPSET
    return MIN_OPSET, max(MIN_OPSET, newest)


def opset_arg(text: str) -> int:
    """``--opset``: a whole number in :func:`opset_range` (checked before any model loads)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    low, high = opset_range()
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(
            f"opset {value} cannot be exported: choose one from {low} to {high} (the oldest "
            f"this export supports to the newest the installed torch exports)")
    return value


def output_arg(text: str) -> str:
    """``-o``: a folder name, not empty (an unset shell variable would export into the
    current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "-o is empty; give a folder for the ONNX files (it is created if missing), "
            "e.g. -o onnx/vit_b")
    return user_path(text)


def cmd_export(args) -> int:
    """Export; returns the exit code."""
    if args.decoder_only and args.encoder_only:
        raise CLIError("--decoder-only and --encoder-only exclude each other; give one", 2)
    try:
        from napari_sam.export import export_onnx
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        raise CLIError(str(exc)) from None
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise CLIError('exporting to ONNX needs the onnx package, which is not installed: '
                       'pip install "napari-sam-stacks[onnx]"', 2) from None  # as --workers
    from napari_sam.export import UnlistedPartError, check_exportable
    from napari_sam.predictor import as_model

    _check_output(args)  # before the model loads (seconds for a ViT-B, more for a ViT-H)
    try:
        check_exportable(args.model)  # a SAM 2.1 registry name: before any download
        model = as_model(args.model, device="cpu", family=None, what="export")
        check_exportable(model)  # a SAM 2.1 checkpoint file
    except ValueError as exc:  # unknown name, missing or unreadable checkpoint: bad argument
        raise CLIError(str(exc), 2) from None
    if model.is_demo and not args.quiet:
        print(f"{PROG}: note: exporting the bundled demo model (trained on synthetic scenes, "
              "not for real data)", file=sys.stderr)
    try:
        result = export_onnx(
            model, args.output,
            decoder=not args.encoder_only, encoder=not args.decoder_only, opset=args.opset,
            return_single_mask=args.return_single_mask,
            use_stability_score=args.use_stability_score,
            return_extra_metrics=args.return_extra_metrics,
            gelu_approximate=args.gelu_approximate, overwrite=args.overwrite,
        )  # fmt: skip
    except UnlistedPartError as exc:  # the other part, not listed: kept, export refused
        raise CLIError(str(exc), 2) from None
    except FileExistsError as exc:  # an earlier export there, or -o is a file: bad argument
        raise CLIError(_output_clash_message(Path(args.output), exc), 2) from None
    except PermissionError as exc:  # a folder the user cannot write to: bad argument
        raise CLIError(str(exc), 2) from None
    if not args.quiet:
        for path in (result.decoder, result.encoder, result.metadata):
            if path is not None:
                print(f"wrote {path} ({human_size(path.stat().st_size)})")
        print(f"model {model.model_id} exported to {result.folder}")
    return 0


def _check_output(args) -> None:
    """``-o`` refused with exit code 2 when the export cannot be written there: an existing
    file, a path through a file, a folder the user cannot write to, ``/proc``; nothing is
    left behind."""
    from napari_sam.export import UnlistedPartError, check_output_folder

    try:
        check_output_folder(args.output, decoder=not args.encoder_only,
                            encoder=not args.decoder_only, overwrite=args.overwrite)
    except UnlistedPartError as exc:
        raise CLIError(str(exc), 2) from None
    except FileExistsError as exc:
        raise CLIError(_output_clash_message(Path(args.output), exc), 2) from None
    except (PermissionError, ValueError) as exc:
        raise CLIError(str(exc), 2) from None


def _output_clash_message(out: Path, exc: FileExistsError) -> str:
    """The one-line message for an ``-o`` folder that cannot take the export: the folder named
    and the command-line way out (``--overwrite`` or another folder)."""
    if out.is_dir():
        return (f"output folder {out} already holds an earlier export; pass --overwrite to "
                "replace those files (other files there are kept), or choose another folder "
                "with -o")
    return str(exc)
