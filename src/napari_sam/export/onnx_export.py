"""Writing an ONNX export: ``decoder.onnx`` and ``encoder.onnx`` (the graphs of
:mod:`.onnx_graphs`) and ``export.json``, into a temporary folder moved into place only when
every file is written and checked.

``export.json`` records the model id, sizes, mean/std, our contrast defaults and the files.

The export uses PyTorch's TorchScript-based exporter (``torch.onnx.export(...,
dynamo=False)``): it needs only the ``onnx`` package (not ``onnxscript``) and does not import
``torch._dynamo``. Install the extra with ``pip install "napari-sam-stacks[onnx]"``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from napari_sam.io.write_errors import naming_output
from napari_sam.models.registry import as_model

from .onnx_graphs import (
    DECODER_FILE,
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_FILE,
    EXTRA_OUTPUTS,
    METADATA_FILE,
    MIN_OPSET,
    SamOnnxDecoder,
    SamOnnxEncoder,
)

__all__ = [
    "export_onnx",
    "OnnxExport",
    "UnlistedPartError",
    "check_exportable",
    "listed_files",
    "SamOnnxDecoder",
    "SamOnnxEncoder",
    "DECODER_INPUTS",
    "DECODER_OUTPUTS",
    "DECODER_FILE",
    "ENCODER_FILE",
    "METADATA_FILE",
    "MIN_OPSET",
]

_INSTALL_HINT = 'install the ONNX extra: pip install "napari-sam-stacks[onnx]"'


@dataclass(frozen=True)
class OnnxExport:
    """Files written by :func:`export_onnx`.

    Attributes
    ----------
    folder : Path
    decoder, encoder : Path or None
        ``decoder.onnx`` and ``encoder.onnx`` (None when not exported).
    metadata : Path
        ``export.json``.
    """

    folder: Path
    decoder: Path | None
    encoder: Path | None
    metadata: Path


class UnlistedPartError(FileExistsError):
    """The output folder holds the part an ``encoder``-only or ``decoder``-only export does
    not write, and no ``export.json`` there lists it: kept, it would pair with the new part as
    if both were one export, so the export is refused (the file is never removed). Also a
    file of a name the export writes that no earlier export wrote: never replaced, not even
    with ``overwrite``."""


def check_exportable(model) -> None:
    """ValueError when ``model`` (a model, or a registry name before any download) is a SAM
    2.1 model: ONNX export writes SAM 1 graphs (Meta's decoder interface) only."""
    from napari_sam.models.registry import REGISTRY, describe_family

    export_only = ("ONNX export writes SAM 1 models only (Meta's SAM ONNX decoder "
                   "interface): SAM 2.1 models cannot be exported; export a SAM 1 model such "
                   "as vit_b_lm, vit_t_lm or a checkpoint of one")
    spec = REGISTRY.get(model) if isinstance(model, str) else None
    if spec is not None and spec.family == "sam2":
        raise ValueError(f"{model} is a SAM 2.1 model. {export_only}")
    if getattr(model, "family", None) == "sam2":  # not the propagation advice of other calls
        raise ValueError(f"This is {describe_family(model)}. {export_only}")


def _require_onnx():
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - the testing extra installs it
        raise ImportError(f"exporting to ONNX needs the onnx package; {_INSTALL_HINT}") from e
    return onnx


def _target(out_dir, decoder: bool, encoder: bool) -> tuple[Path, list[str]]:
    """The absolute output folder and the names of the files the export writes there."""
    if not str(out_dir).strip():
        raise ValueError("out_dir is empty; give a folder for the ONNX files (it is created "
                         "if missing), e.g. 'onnx/vit_b'")
    names = ([DECODER_FILE] if decoder else []) + ([ENCODER_FILE] if encoder else [])
    return Path(out_dir).expanduser().absolute(), [*names, METADATA_FILE]


def check_output_folder(out_dir: str | os.PathLike, *, decoder: bool = True,
                        encoder: bool = True, overwrite: bool = False) -> Path:
    """Check that an export can be written to ``out_dir``, before a model is loaded (a ViT-H
    takes a while): the checks of :func:`export_onnx`, and a real write, a temporary folder
    made and removed where the export's would go (``os.access`` says yes to root, also on
    ``/proc`` or a read-only file system). Nothing is left behind.

    Parameters
    ----------
    out_dir : str or PathLike
        The folder :func:`export_onnx` would write to (created if missing).
    decoder, encoder : bool
        Which graphs the export writes.
    overwrite : bool
        Whether files of these names already in ``out_dir`` may be replaced.

    Returns
    -------
    Path
        ``out_dir``, absolute.

    Raises
    ------
    ValueError, FileExistsError, PermissionError, UnlistedPartError
        As :func:`export_onnx` raises for its ``out_dir``.
    """
    out, names = _target(out_dir, decoder, encoder)
    os.rmdir(_make_temp_folder(_check_out_dir(out, names, overwrite), out))
    return out


def _check_out_dir(out: Path, names: list[str], overwrite: bool) -> Path:
    """Refuse a target that cannot take the export; return the existing folder where the
    temporary folder goes (``out`` itself or its nearest existing parent)."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(
            f"{out} is a file, not a folder; give a folder for the ONNX files with -o "
            "(it is created if missing)"
        )
    if out.is_dir():
        clash = [n for n in names if (out / n).exists()]
        if clash and not overwrite:
            raise FileExistsError(
                f"{out} already holds {', '.join(clash)}; choose another folder, or pass "
                "overwrite=True (--overwrite) to replace them"
            )
        _check_clash_is_ours(out, clash)
        _check_unlisted_parts(out, names)
        home = out
    else:
        home = out.parent
        while not home.exists():
            home = home.parent
        if not home.is_dir():
            raise FileExistsError(f"{home} is a file, not a folder; choose another output folder")
    if not os.access(home, os.W_OK | os.X_OK):
        raise PermissionError(unwritable_message(out, home))
    return home


def unwritable_message(out: Path, home: Path, exc: OSError | None = None) -> str:
    """The error for an export to ``out`` that cannot be written in ``home`` (``out`` or its
    nearest existing parent): both folders, why (:func:`napari_sam.io.unwritable_reason`:
    e.g. ``/proc`` holds no files) and what to do."""
    from napari_sam.io import unwritable_reason

    return (f"cannot write to {out} ({unwritable_reason(home, exc)}); choose a folder you "
            "can write to (the output folder; -o on the command line), e.g. one under your "
            "home folder")


def listed_files(folder: Path) -> dict[str, str]:
    """``export.json``'s ``files`` in ``folder`` ({"decoder": "decoder.onnx", ...}); {} when
    it is missing, unreadable or not an export's."""
    try:
        meta = json.loads((Path(folder) / METADATA_FILE).read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in meta["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _check_clash_is_ours(out: Path, clash: list[str]) -> None:
    """UnlistedPartError when a file the export would replace in ``out`` is not an earlier
    export's (no export.json there lists it; export.json itself: one that lists no part):
    napari-sam never replaces a file it did not write, not even with ``overwrite``."""
    listed = set(listed_files(out).values())
    theirs = [n for n in clash if n not in listed and not (n == METADATA_FILE and listed)]
    if theirs:
        raise UnlistedPartError(
            f"{', '.join(str(out / n) for n in theirs)} in the output folder was not written "
            f"by a napari-sam export (no {METADATA_FILE} there lists it): napari-sam never "
            "replaces it, not even with --overwrite (overwrite=True replaces an earlier "
            "export's files only); choose another folder (-o), or move it away yourself"
        )


def _check_unlisted_parts(out: Path, names: list[str]) -> None:
    """UnlistedPartError when ``out`` holds the part this export does not write and no
    export.json there lists it (it would pair with the new part as one export)."""
    listed = set(listed_files(out).values())
    for part, new in ((DECODER_FILE, ENCODER_FILE), (ENCODER_FILE, DECODER_FILE)):
        if part in names or not (out / part).exists() or part in listed:
            continue
        raise UnlistedPartError(
            f"{out / part} is not listed in {out / METADATA_FILE} (another tool's file, or "
            f"an export whose {METADATA_FILE} is gone): it would pair with the new {new} as "
            "if both were one export, and napari-sam never replaces a file it did not "
            "write (not even with --overwrite): choose another folder (-o), or move it "
            "away yourself"
        )


def _dummy_decoder_inputs(model: nn.Module) -> dict[str, Tensor]:
    """Meta's dummy inputs (5 points with labels 0..3, a mask, a 1500 x 2250 image)."""
    g = torch.Generator().manual_seed(0)
    e = int(model.embedding_size)
    s = int(model.img_size)
    dim = int(model.prompt_encoder.embed_dim)
    return {
        "image_embeddings": torch.randn(1, dim, e, e, generator=g),
        "point_coords": torch.randint(0, s, (1, 5, 2), generator=g).float(),
        "point_labels": torch.randint(0, 4, (1, 5), generator=g).float(),
        "mask_input": torch.randn(1, 1, 4 * e, 4 * e, generator=g),
        "has_mask_input": torch.tensor([1.0]),
        "orig_im_size": torch.tensor([1500.0, 2250.0]),
    }


@contextlib.contextmanager
def _export_state(model: nn.Module, gelu_approximate: bool):
    """Eval mode and (optionally) tanh GELUs for the duration of the export, restored after."""
    was_training = model.training
    gelus = [m for m in model.modules() if isinstance(m, nn.GELU)] if gelu_approximate else []
    old = [m.approximate for m in gelus]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    model.eval()
    for m in gelus:
        m.approximate = "tanh"
    for p in frozen:  # see SamOnnxEncoder.forward
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(False)
        for m, a in zip(gelus, old):
            m.approximate = a
        model.train(was_training)


def _check_request(*, decoder: bool, encoder: bool, opset: int) -> None:
    """ValueError for an export of nothing or an opset that is too old."""
    if not (decoder or encoder):
        raise ValueError("nothing to export: pass decoder=True and/or encoder=True")
    if int(opset) < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old; use opset {MIN_OPSET} or newer")


def _make_temp_folder(home: Path, out: Path) -> Path:
    """A new temporary folder in ``home`` (``out`` or its nearest existing parent), with the
    mode a folder made there would get."""
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".napari-sam-export-", dir=home))
    except OSError as e:
        raise PermissionError(unwritable_message(out, home, e)) from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would become the folder's mode
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _cpu_float32(sam: nn.Module) -> nn.Module:
    """``sam`` itself when it is on the CPU in float32, else a float32 CPU copy (the
    caller's model is never moved or cast)."""
    if sam.device.type != "cpu" or any(p.dtype != torch.float32 for p in sam.parameters()):
        sam = copy.deepcopy(sam).to("cpu", torch.float32)
    return sam


def _export_decoder(onnx, sam: nn.Module, folder: Path, opset: int, options: dict) -> str:
    """Write, check and verify ``decoder.onnx`` in ``folder``; returns its file name."""
    wrapper = SamOnnxDecoder(
        sam,
        return_single_mask=options["return_single_mask"],
        use_stability_score=options["use_stability_score"],
        return_extra_metrics=options["return_extra_metrics"],
    )
    dummy = _dummy_decoder_inputs(sam)
    path = folder / DECODER_FILE
    _torch_export(
        wrapper, tuple(dummy.values()), path,
        input_names=DECODER_INPUTS, output_names=wrapper.output_names,
        dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
        opset=opset,
    )  # fmt: skip
    onnx.checker.check_model(str(path))
    _verify_decoder(path, wrapper, dummy)
    return DECODER_FILE


def _export_encoder(onnx, sam: nn.Module, folder: Path, opset: int) -> str:
    """Write and check ``encoder.onnx`` (fixed input size S) in ``folder``; returns its name."""
    s = sam.img_size
    path = folder / ENCODER_FILE
    _torch_export(
        SamOnnxEncoder(sam), (torch.zeros(1, 3, s, s),), path,
        input_names=["image"], output_names=["image_embeddings"],
        dynamic_axes=None, opset=opset,
    )  # fmt: skip
    onnx.checker.check_model(str(path))
    return ENCODER_FILE


def _earlier_parts(out: Path, model_id: str, files: dict[str, str]
                   ) -> tuple[dict[str, str], list[str], dict]:
    """The parts of an earlier export in ``out`` that this one does not write: (those of the
    same model, kept and named in the new export.json; file names of another model's, to
    remove; the earlier export.json when a part is kept, else {}). Files an export did not
    write are never touched."""
    try:
        old = json.loads((out / METADATA_FILE).read_text(encoding="utf-8"))
        old_files = {str(k): str(v) for k, v in old["files"].items()}
        same = old["model_id"] == model_id
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}, [], {}
    parts = {k: v for k, v in old_files.items()
             if k not in files and v in (DECODER_FILE, ENCODER_FILE) and (out / v).is_file()}
    return (parts, [], old if parts else {}) if same else ({}, sorted(parts.values()), {})


def _part_opsets(files: dict[str, str], opset: int, kept: dict[str, str], old: dict
                 ) -> dict[str, int]:
    """The opset of each part in the new export.json: the earlier export's for a kept part."""
    before = old.get("opsets") or {k: old.get("opset") for k in kept}
    return {k: int(before.get(k) or opset) if k in kept else int(opset) for k in files}


def _move_into_place(tmp: Path, out: Path) -> None:
    """Move the files of ``tmp`` into the folder ``out`` (replacing files of the same names,
    keeping others), or rename ``tmp`` to ``out`` when that does not exist yet."""
    written = sorted(p.name for p in tmp.iterdir())
    if out.is_dir():
        for name in written:
            os.replace(tmp / name, out / name)
        tmp.rmdir()
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)


def _torch_export(
    module: nn.Module,
    args: tuple,
    path: Path,
    *,
    input_names,
    output_names,
    dynamic_axes,
    opset: int,
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about int() of tensors, expected
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,  # TorchScript exporter: needs no onnxscript, never imports dynamo
            export_params=True,
            opset_version=opset,
            do_constant_folding=True,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
        )


def _verify_decoder(path: Path, wrapper: SamOnnxDecoder, inputs: dict[str, Tensor]) -> None:
    """Run the exported decoder in onnxruntime on the dummy inputs (when it is installed,
    else a UserWarning says it was not) and compare with PyTorch; RuntimeError if they
    disagree."""
    try:
        import onnxruntime as ort
    except ImportError:  # verification is optional, and said to be skipped
        import warnings

        warnings.warn("onnxruntime is not installed: the exported decoder passed "
                      "onnx.checker but was not run and compared with PyTorch; install the "
                      'ONNX extra to have it checked: pip install "napari-sam-stacks[onnx]"',
                      UserWarning, stacklevel=2)
        return
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {k: v.numpy() for k, v in inputs.items()})
    want = wrapper(**inputs)
    iou_got, iou_want = got[1], want[1].numpy()
    if got[-1].shape != tuple(want[-1].shape) or abs(iou_got - iou_want).max() > 1e-3:
        raise RuntimeError(
            "the exported decoder does not reproduce the PyTorch decoder in onnxruntime "
            f"(IoU predictions differ by {abs(iou_got - iou_want).max():.3g}); please report "
            "this with your torch, onnx and onnxruntime versions"
        )


def _smoothing_entry(model) -> dict[str, Any]:
    """The preprocessing JSON's account of the model's input smoothing (none for SAM's)."""
    sigma = float(getattr(model, "input_smoothing", 0.0))
    return {
        "sigma": sigma,
        "description": "none" if sigma <= 0 else (
            f"images smaller than the input (resize factor > 1) get a Gaussian of {sigma:g} "
            "pixels (scipy.ndimage.gaussian_filter, mode 'reflect', per RGB channel, rounded "
            "to uint8) before the resize (napari_sam.preprocess.smooth_before_enlarging)"
        ),
    }


def _metadata(model, *, opset, decoder_opts, files) -> dict[str, Any]:
    import onnx

    from napari_sam import __version__
    from napari_sam.preprocess import DEFAULT_PERCENTILES, THIN_FRACTION, THIN_PAD_MODE

    s, e = int(model.img_size), int(model.embedding_size)
    config = model.config
    return {
        "format": "napari-sam-onnx",
        "format_version": 1,
        "model_id": model.model_id,
        "architecture": config.name or config.encoder,
        "config": config.to_dict(),
        "is_demo": bool(model.is_demo),
        "files": files,
        "opset": int(opset),
        "decoder_options": decoder_opts if "decoder" in files else None,
        "input_size": s,
        "embedding_size": e,
        "low_res_size": 4 * e,
        "mask_threshold": float(model.mask_threshold),
        "pixel_mean": [float(v) for v in model.pixel_mean.reshape(-1)],
        "pixel_std": [float(v) for v in model.pixel_std.reshape(-1)],
        "preprocessing": {
            "contrast": {
                "percentiles": list(DEFAULT_PERCENTILES),
                "description": "intensities mapped linearly from the contrast limits (default: "
                "these percentiles of the finite values, jointly over channels; napari: the "
                "layer's contrast limits) to 0..255 and clipped; grey repeated to RGB, alpha "
                "dropped (napari_sam.preprocess.to_uint8_rgb)",
            },
            "smoothing": _smoothing_entry(model),
            "resize": f"bilinear (PIL) so that the longest side is {s}; (h, w) = "
            f"floor((H, W) * {s} / max(H, W) + 0.5)",
            "normalize": "(rgb - pixel_mean) / pixel_std on the 0..255 scale",
            "pad": f"zeros at the bottom and right to {s} x {s}, after normalising (thin "
            "strips: see thin_strips)",
            "thin_strips": {
                "fraction": THIN_FRACTION,
                "numpy_pad_mode": THIN_PAD_MODE,
                "description": f"when the resized short side is under {THIN_FRACTION} x {s} "
                f"px, the resized uint8 RGB is padded to {s} x {s} at the bottom and right "
                f"with numpy.pad(mode='{THIN_PAD_MODE}') (its mirror image) before "
                "normalising, so no zeros are added (napari_sam.preprocess.pad_thin_input)",
            },
            "layout": "(1, 3, S, S) float32, channels RGB",
        },
        "coordinates": "point_coords are (x, y) = (col * w / W, row * h / H), (h, w) the "
        "resized size above (per axis, as Meta's ResizeLongestSide.apply_coords); napari "
        "(row, col) points must be swapped",
        "decoder_inputs": list(DECODER_INPUTS),
        "decoder_outputs": None if "decoder" not in files else list(
            EXTRA_OUTPUTS if decoder_opts["return_extra_metrics"] else DECODER_OUTPUTS
        ),
        "encoder_input": "image",
        "encoder_output": "image_embeddings",
        "exported_with": {
            "napari-sam-stacks": __version__,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
        },
    }


def export_onnx(
    model,
    out_dir: str | os.PathLike,
    *,
    decoder: bool = True,
    encoder: bool = True,
    opset: int = MIN_OPSET,
    return_single_mask: bool = False,
    use_stability_score: bool = False,
    return_extra_metrics: bool = False,
    gelu_approximate: bool = False,
    overwrite: bool = False,
) -> OnnxExport:
    """Export a SAM model to ONNX: decoder (Meta's interface), encoder and ``export.json``.

    Parameters
    ----------
    model : Sam, str or PathLike
        A model, a registry name (``"demo"``, ``"vit_b"``, ...) or a checkpoint path
        (Meta's, micro-sam's or one written by ``napari-sam train``); loaded on the CPU.
    out_dir : str or PathLike
        Folder for ``decoder.onnx``, ``encoder.onnx`` and ``export.json``; created if missing
        (with its parents). The files are written to a temporary folder beside it and moved
        in only when every file is written and checked, so a failure leaves nothing behind.
    decoder, encoder : bool
        Which graphs to export (at least one).
    opset : int
        ONNX opset, at least 17.
    return_single_mask, use_stability_score, return_extra_metrics : bool
        Options of Meta's export script; see :class:`SamOnnxDecoder`.
    gelu_approximate : bool
        Export the decoder's GELUs with the tanh approximation (Meta's
        ``--gelu-approximate``, for runtimes without an exact Erf); the model is restored after.
    overwrite : bool
        Replace files of these names already in ``out_dir``; other files there are kept.

    Returns
    -------
    OnnxExport
        The paths written. Each ``.onnx`` file passed ``onnx.checker.check_model``; the
        decoder was also run in onnxruntime (when installed) and compared with PyTorch.

    Raises
    ------
    ValueError
        An unknown model name, a checkpoint that fails to load, a SAM 2.1 model (a registry
        name is refused before any download), an empty ``out_dir``, an opset below 17, or
        nothing to export.
    FileExistsError, PermissionError
        ``out_dir`` is a file, already holds the files (without ``overwrite``), or its
        folder is not writable.
    UnlistedPartError
        A ``FileExistsError``: with only one part exported, ``out_dir`` holds the other part
        but no ``export.json`` there lists it (it is kept; the export is refused).
    ImportError
        The ``onnx`` package is missing (``pip install "napari-sam-stacks[onnx]"``).
    """
    _check_request(decoder=decoder, encoder=encoder, opset=opset)
    check_exportable(model)  # a SAM 2.1 registry name: refused before any download
    out, names = _target(out_dir, decoder, encoder)
    onnx = _require_onnx()
    tmp = _make_temp_folder(_check_out_dir(out, names, overwrite), out)
    try:
        # a model that fails: nothing left
        loaded = as_model(model, device="cpu", family=None, what="ONNX export")
        check_exportable(loaded)  # a SAM 2.1 checkpoint: the export's own message
        sam = _cpu_float32(as_model(loaded, device="cpu", what="ONNX export"))
        decoder_opts = {
            "return_single_mask": bool(return_single_mask),
            "use_stability_score": bool(use_stability_score),
            "return_extra_metrics": bool(return_extra_metrics),
            "gelu_approximate": bool(gelu_approximate),
        }
        files: dict[str, str] = {}
        with _export_state(sam, gelu_approximate):
            if decoder:
                files["decoder"] = _export_decoder(onnx, sam, tmp, int(opset), decoder_opts)
            if encoder:
                files["encoder"] = _export_encoder(onnx, sam, tmp, int(opset))
        kept, stale, old = _earlier_parts(out, sam.model_id, files)
        if "decoder" in kept and isinstance(old.get("decoder_options"), dict):
            decoder_opts = old["decoder_options"]  # describe the decoder that stays
        every = {**kept, **files}
        opsets = _part_opsets(every, int(opset), kept, old)
        main = opsets.get("decoder", opsets.get("encoder", int(opset)))  # the decoder's
        meta = _metadata(sam, opset=main, decoder_opts=decoder_opts, files=every)
        meta["opsets"] = opsets
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _move_into_place(tmp, out)
        for name in stale:  # another model's part: it would pair with this one's
            (out / name).unlink(missing_ok=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        naming_output(exc, out, tmp)  # (a full disk: the folder asked for, not tmp's)
        raise
    return OnnxExport(
        folder=out,
        decoder=out / DECODER_FILE if decoder else None,
        encoder=out / ENCODER_FILE if encoder else None,
        metadata=out / METADATA_FILE,
    )
