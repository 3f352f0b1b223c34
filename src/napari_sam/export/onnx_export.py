"""ONNX export of a SAM model: the prompt encoder + mask decoder in Meta's interface, the image
encoder with a fixed input size, and a JSON describing the preprocessing.

The decoder graph has exactly the inputs and outputs of the ONNX model written by Meta's
``scripts/export_onnx_model.py`` (``segment_anything.utils.onnx.SamOnnxModel``), so tools
written for Meta's decoder (the SAM web demo, micro-sam's BioEngine service, samexporter,
labelme, ...) run ours unchanged:

=================  ======================  ==================================================
input              shape, dtype            meaning
=================  ======================  ==================================================
image_embeddings   (1, 256, E, E) float32  output of the image encoder
point_coords       (1, N, 2) float32       (x, y) in the model-input frame (S x S pixels):
                                           ``(col, row) * S / max(H, W)``
point_labels       (1, N) float32          1 positive, 0 negative, 2 / 3 box top-left /
                                           bottom-right corner, -1 padding point
mask_input         (1, 1, 4E, 4E) float32  low-resolution logits of a previous prediction
has_mask_input     (1,) float32            1 to use ``mask_input``, else 0
orig_im_size       (2,) float32            (H, W) of the original image
=================  ======================  ==================================================

Outputs: ``masks`` (1, C, H, W) logits at the original size (threshold at 0),
``iou_predictions`` (1, C) and ``low_res_masks`` (1, C, 4E, 4E), where C is 4 (the
single-mask token 0 then the three multimask tokens, as in Meta's export) or 1 with
``return_single_mask``. ``N`` is dynamic. As with Meta's decoder, points-only prompts need one
padding point ``(0, 0)`` with label -1 appended; a box is two points labelled 2 and 3 and no
padding point.

The encoder graph maps ``image`` (1, 3, S, S) float32, the RGB image resized so that its
longest side is S, normalised with ``pixel_mean`` / ``pixel_std`` and zero-padded at the
bottom and right (what :meth:`napari_sam.models.Sam.normalize_and_pad` returns), to
``image_embeddings`` (1, 256, E, E).

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
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "export_onnx",
    "OnnxExport",
    "SamOnnxDecoder",
    "SamOnnxEncoder",
    "DECODER_INPUTS",
    "DECODER_OUTPUTS",
    "DECODER_FILE",
    "ENCODER_FILE",
    "METADATA_FILE",
    "MIN_OPSET",
]

DECODER_FILE = "decoder.onnx"
ENCODER_FILE = "encoder.onnx"
METADATA_FILE = "export.json"
#: the lowest opset we export (LayerNormalization needs 17)
MIN_OPSET = 17
DECODER_INPUTS = (
    "image_embeddings",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
)
DECODER_OUTPUTS = ("masks", "iou_predictions", "low_res_masks")
_EXTRA_OUTPUTS = ("masks", "iou_predictions", "stability_scores", "areas", "low_res_masks")
_INSTALL_HINT = 'install the ONNX extra: pip install "napari-sam-stacks[onnx]"'


# ============================================================================ graphs


def _stability_score(logits: Tensor, threshold: float, offset: float) -> Tensor:
    """IoU of ``logits > t + offset`` and ``logits > t - offset``: (..., H, W) -> (...) float32
    (Meta's ``calculate_stability_score``, in a form the exporter traces)."""
    inter = (logits > threshold + offset).sum(-1, dtype=torch.int32).sum(-1, dtype=torch.int32)
    union = (logits > threshold - offset).sum(-1, dtype=torch.int32).sum(-1, dtype=torch.int32)
    return inter.float() / union.float()


class SamOnnxDecoder(nn.Module):
    """Prompt encoder + mask decoder + mask upsampling of a SAM model, in Meta's ONNX interface.

    The graph that ``torch.onnx.export`` traces from this module is the one described in the
    module docstring; calling it in PyTorch gives the same numbers.

    Parameters
    ----------
    model : napari_sam.models.Sam
        Any of our SAM models (ViT or the demo CNN); its prompt encoder and mask decoder
        are used, not copied.
    return_single_mask : bool
        Return one mask: the best of the three multimask outputs for a single point, else
        the single-mask output (Meta's ``--return-single-mask``).
    use_stability_score : bool
        Replace the predicted IoU by the stability score of the low-resolution logits
        (Meta's ``--use-stability-score``).
    return_extra_metrics : bool
        Also return ``stability_scores`` and ``areas`` of the upsampled masks (Meta's
        ``--return-extra-metrics``); the outputs are then ``masks, iou_predictions,
        stability_scores, areas, low_res_masks``.
    """

    stability_score_offset = 1.0

    def __init__(
        self,
        model: nn.Module,
        *,
        return_single_mask: bool = False,
        use_stability_score: bool = False,
        return_extra_metrics: bool = False,
    ) -> None:
        super().__init__()
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder
        self.img_size = int(model.img_size)
        self.mask_threshold = float(model.mask_threshold)
        self.return_single_mask = bool(return_single_mask)
        self.use_stability_score = bool(use_stability_score)
        self.return_extra_metrics = bool(return_extra_metrics)

    @property
    def output_names(self) -> tuple[str, ...]:
        return _EXTRA_OUTPUTS if self.return_extra_metrics else DECODER_OUTPUTS

    def _embed_points(self, coords: Tensor, labels: Tensor) -> Tensor:
        """coords (1, N, 2) (x, y), labels (1, N) -> sparse embeddings (1, N, D)."""
        pe = self.prompt_encoder.pe_layer.pe_encoding((coords + 0.5) / self.img_size)
        labels = labels.unsqueeze(-1).expand_as(pe)
        emb = pe * (labels != -1)
        emb = emb + self.prompt_encoder.not_a_point_embed.weight * (labels == -1)
        for i, point_embedding in enumerate(self.prompt_encoder.point_embeddings):
            emb = emb + point_embedding.weight * (labels == i)
        return emb

    def _embed_masks(self, mask_input: Tensor, has_mask_input: Tensor) -> Tensor:
        """(1, 1, 4E, 4E) logits and a 0/1 flag -> dense embeddings (1, D, E, E)."""
        dense = has_mask_input * self.prompt_encoder.mask_downscaling(mask_input)
        no_mask = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return dense + (1 - has_mask_input) * no_mask

    def _upsample(self, low_res: Tensor, orig_im_size: Tensor) -> Tensor:
        """(1, C, 4E, 4E) -> (1, C, H, W): to S x S, crop the padding, to the original size
        (bilinear, like :meth:`napari_sam.Predictor.upsample`)."""
        s = self.img_size
        masks = F.interpolate(low_res, size=(s, s), mode="bilinear", align_corners=False)
        size = orig_im_size.to(torch.float32)
        input_size = torch.floor(size * (s / torch.max(size)) + 0.5).to(torch.int64)
        # crop with index_select: slicing with int(tensor) would be traced as a constant
        # (the dummy image's size), as happens to Meta's export with PyTorch 2.x
        rows = torch.arange(input_size[0], device=masks.device)
        cols = torch.arange(input_size[1], device=masks.device)
        masks = masks.index_select(2, rows).index_select(3, cols)
        hw = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(hw[0], hw[1]), mode="bilinear", align_corners=False)

    def _select_single(self, masks: Tensor, scores: Tensor, num_points: int):
        """Meta's rule without control flow: the best multimask output when there is one
        point (plus its padding point), else the single-mask output."""
        reweight = torch.tensor([[1000.0] + [0.0] * (scores.shape[1] - 1)])
        best = torch.argmax(scores + (num_points - 2.5) * reweight, dim=1)
        rows = torch.arange(masks.shape[0])
        return masks[rows, best].unsqueeze(1), scores[rows, best].unsqueeze(1)

    @torch.no_grad()
    def forward(
        self,
        image_embeddings: Tensor,
        point_coords: Tensor,
        point_labels: Tensor,
        mask_input: Tensor,
        has_mask_input: Tensor,
        orig_im_size: Tensor,
    ) -> tuple[Tensor, ...]:
        """Decode one prompt set; arguments and outputs as in the module docstring."""
        sparse = self._embed_points(point_coords, point_labels)
        dense = self._embed_masks(mask_input, has_mask_input)
        low_res, scores = self.mask_decoder.predict_masks(
            image_embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense
        )
        if self.use_stability_score:
            scores = _stability_score(low_res, self.mask_threshold, self.stability_score_offset)
        if self.return_single_mask:
            low_res, scores = self._select_single(low_res, scores, point_coords.shape[1])
        masks = self._upsample(low_res, orig_im_size)
        if self.return_extra_metrics:
            stability = _stability_score(masks, self.mask_threshold, self.stability_score_offset)
            areas = (masks > self.mask_threshold).sum(-1).sum(-1)
            return masks, scores, stability, areas, low_res
        return masks, scores, low_res


class SamOnnxEncoder(nn.Module):
    """The image encoder for export: ``image`` (1, 3, S, S) normalised and padded ->
    ``image_embeddings`` (1, 256, E, E) float32."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.image_encoder = model.image_encoder
        self.img_size = int(model.img_size)

    def forward(self, image: Tensor) -> Tensor:
        # With gradients enabled the ViT's relative-position attention takes its plain
        # (autograd) path: its inference path writes with torch.add(out=), which the ONNX
        # exporter cannot translate. The traced graph is the same arithmetic.
        with torch.enable_grad():
            return self.image_encoder(image)


# ============================================================================ export


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


def _require_onnx():
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - the testing extra installs it
        raise ImportError(f"exporting to ONNX needs the onnx package; {_INSTALL_HINT}") from e
    return onnx


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
        home = out
    else:
        home = out.parent
        while not home.exists():
            home = home.parent
        if not home.is_dir():
            raise FileExistsError(f"{home} is a file, not a folder; choose another output folder")
    if not os.access(home, os.W_OK | os.X_OK):
        raise PermissionError(
            f"cannot write to {home} (permission denied); choose a folder you can write to "
            "with -o, e.g. one under your home folder"
        )
    return home


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


@contextlib.contextmanager
def _unchunked_attention():
    """Global attention in one chunk while the encoder is traced.

    The ViT's relative-position attention splits long sequences into chunks of query rows
    whose sizes it computes from the traced shapes with ``-(-a // b)``; ONNX integer division
    truncates where Python floors, so a chunked graph gets wrong slice sizes. One chunk has
    no such arithmetic (and onnxruntime plans the memory itself).
    """
    from napari_sam.models import image_encoder

    old = image_encoder.MAX_BIAS_BYTES
    image_encoder.MAX_BIAS_BYTES = 1 << 62
    try:
        yield
    finally:
        image_encoder.MAX_BIAS_BYTES = old


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
    """Run the exported decoder in onnxruntime on the dummy inputs (when it is installed)
    and compare with PyTorch; RuntimeError if they disagree."""
    try:
        import onnxruntime as ort
    except ImportError:  # verification is optional
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


def _metadata(model, *, opset, decoder_opts, files) -> dict[str, Any]:
    import onnx

    from napari_sam import __version__
    from napari_sam.preprocess import DEFAULT_PERCENTILES

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
        "decoder_options": decoder_opts,
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
            "resize": f"bilinear (PIL) so that the longest side is {s}; (h, w) = "
            f"floor((H, W) * {s} / max(H, W) + 0.5)",
            "normalize": "(rgb - pixel_mean) / pixel_std on the 0..255 scale",
            "pad": f"zeros at the bottom and right to {s} x {s}, after normalising",
            "layout": "(1, 3, S, S) float32, channels RGB",
        },
        "coordinates": "point_coords are (x, y) = (col, row) * input_size / max(H, W); "
        "napari (row, col) points must be swapped",
        "decoder_inputs": list(DECODER_INPUTS),
        "decoder_outputs": list(
            _EXTRA_OUTPUTS if decoder_opts["return_extra_metrics"] else DECODER_OUTPUTS
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
        An unknown model name, a checkpoint that fails to load, an opset below 17, or
        nothing to export.
    FileExistsError, PermissionError
        ``out_dir`` is a file, already holds the files (without ``overwrite``), or its
        folder is not writable.
    ImportError
        The ``onnx`` package is missing (``pip install "napari-sam-stacks[onnx]"``).
    """
    if not (decoder or encoder):
        raise ValueError("nothing to export: pass decoder=True and/or encoder=True")
    if int(opset) < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old; use opset {MIN_OPSET} or newer")
    onnx = _require_onnx()
    out = Path(out_dir).expanduser().absolute()
    names = ([DECODER_FILE] if decoder else []) + ([ENCODER_FILE] if encoder else [])
    names.append(METADATA_FILE)
    home = _check_out_dir(out, names, overwrite)

    try:
        tmp = Path(tempfile.mkdtemp(prefix=".napari-sam-export-", dir=home))
    except OSError as e:
        raise PermissionError(
            f"cannot write to {home} ({e.strerror or e}); choose a folder you can write to "
            "with -o, e.g. one under your home folder"
        ) from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would become the folder's mode
        from napari_sam.predictor import as_model

        sam = as_model(model, device="cpu")  # a model that fails to load leaves nothing
        if sam.device.type != "cpu" or any(p.dtype != torch.float32 for p in sam.parameters()):
            sam = copy.deepcopy(sam).to("cpu", torch.float32)
        decoder_opts = {
            "return_single_mask": bool(return_single_mask),
            "use_stability_score": bool(use_stability_score),
            "return_extra_metrics": bool(return_extra_metrics),
            "gelu_approximate": bool(gelu_approximate),
        }
        files: dict[str, str] = {}
        with _export_state(sam, gelu_approximate):
            if decoder:
                wrapper = SamOnnxDecoder(
                    sam,
                    return_single_mask=return_single_mask,
                    use_stability_score=use_stability_score,
                    return_extra_metrics=return_extra_metrics,
                )
                dummy = _dummy_decoder_inputs(sam)
                path = tmp / DECODER_FILE
                _torch_export(
                    wrapper, tuple(dummy.values()), path,
                    input_names=DECODER_INPUTS, output_names=wrapper.output_names,
                    dynamic_axes={"point_coords": {1: "num_points"},
                                  "point_labels": {1: "num_points"}},
                    opset=int(opset),
                )  # fmt: skip
                onnx.checker.check_model(str(path))
                _verify_decoder(path, wrapper, dummy)
                files["decoder"] = DECODER_FILE
            if encoder:
                s = sam.img_size
                path = tmp / ENCODER_FILE
                with _unchunked_attention():
                    _torch_export(
                        SamOnnxEncoder(sam), (torch.zeros(1, 3, s, s),), path,
                        input_names=["image"], output_names=["image_embeddings"],
                        dynamic_axes=None, opset=int(opset),
                    )  # fmt: skip
                onnx.checker.check_model(str(path))
                files["encoder"] = ENCODER_FILE
        meta = _metadata(sam, opset=opset, decoder_opts=decoder_opts, files=files)
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        written = sorted(p.name for p in tmp.iterdir())
        if out.is_dir():
            for name in written:
                os.replace(tmp / name, out / name)
            tmp.rmdir()
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return OnnxExport(
        folder=out,
        decoder=out / DECODER_FILE if decoder else None,
        encoder=out / ENCODER_FILE if encoder else None,
        metadata=out / METADATA_FILE,
    )
