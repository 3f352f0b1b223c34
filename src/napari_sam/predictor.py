"""Prompted segmentation of one image: embedding once, then prompts -> masks.

All coordinates are napari order: points (row, col), boxes (row0, col0, row1, col1), in pixels
of the original image. Conversion to SAM's (x, y) happens in :mod:`napari_sam.preprocess`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from napari_sam.decode_pool import chunk_slices, run_chunks
from napari_sam.device import (
    autocast,
    one_cpu_thread,
    precision_name,
    resolve_device,
    resolve_precision,
)
from napari_sam.edge_threshold import edge_aligned_masks, edge_map, resolve_boundary
from napari_sam.io.writers import write_npz_atomic
from napari_sam.models.cached_decoder import (
    CachedDecoder,
    click_precision,
    upsample_click_logits,
)
from napari_sam.models.registry import as_model
from napari_sam.models.sam2.image_predictor import Sam2ImagePredictor
from napari_sam.preprocess import (
    DEFAULT_PERCENTILES,
    ResizeSpec,
    images_to_tensor,
    smooth_before_enlarging,
    to_uint8_rgb,
    warn_shrunk_strip,
)
from napari_sam.prompts import (
    check_box,
    check_mask_input,
    check_points,
    mask_to_logits,
    prompt_tensors,
    upsample_logits,
    warn_mask_alone_empty,
    warn_only_negative,
)
from napari_sam.tiled_prompts import TiledPrediction, decode_tiled
from napari_sam.tiling import TiledEmbedding, choose_tiling, encode_tiled

_BACKENDS = ("torch", "onnx")
#: embeddings whose click-decoder cache a predictor keeps (a click on a tiled image decodes in
#: up to four windows; about 26 MB each for SAM's 64 x 64 embeddings, 6 MB for the demo's)
CLICK_CACHES = 4

__all__ = ["BatchPrediction", "ImageEmbedding", "Predictor", "as_model", "no_click_cache",
           "nonfinite_parameters"]

_local = threading.local()


@contextlib.contextmanager
def no_click_cache() -> Iterator[None]:
    """Within this context the calling thread's decodes never use, nor start, the per-image
    click caches of :class:`Predictor` (single prompts run the plain decoder).

    Whether a click finds a cache depends on which embeddings were decoded just before; the
    cached decoder rounds differently from the plain one. Propagation's sweeps decode in
    this context, so their masks do not depend on what was decoded before them, nor on how
    two sweeps running at once interleave (:mod:`napari_sam.volume.sweeps`).
    """
    before = getattr(_local, "off", False)
    _local.off = True
    try:
        yield
    finally:
        _local.off = before


@dataclass
class ImageEmbedding:
    """The image encoder's output for one 2D image and what is needed to decode prompts.

    Attributes
    ----------
    features : torch.Tensor, (256, E, E) float
        Image embedding; E = model input size / encoder stride.
    original_size : (int, int)
        (rows, cols) of the image.
    input_size : (int, int)
        (rows, cols) of the resized image inside the padded model input.
    model_id : str
        Identifies the weights that made it; decoding with other weights is refused.
    """

    features: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    model_id: str

    def __repr__(self) -> str:  # one line, not the tensor (a notebook cell's last line)
        f = self.features
        return (f"ImageEmbedding(features {tuple(f.shape)} {str(f.dtype).replace('torch.', '')}"
                f" on {f.device}, original_size={tuple(self.original_size)}, input_size="
                f"{tuple(self.input_size)}, model_id={self.model_id!r})")

    def spec(self, img_size: int) -> ResizeSpec:
        return ResizeSpec(tuple(self.original_size), tuple(self.input_size), int(img_size))

    def save(self, path: str | os.PathLike) -> Path:
        """Save to an ``.npz`` file and return its path.

        The file is written atomically (:func:`~napari_sam.io.writers.write_atomic`): to a
        hidden temporary name beside ``path``, flushed to disk and renamed, so a failed save
        (a full disk) leaves no temporary and an existing ``path`` as it was, and its
        ``OSError`` names ``path``.
        """
        arrays = {"features": self.features.detach().float().cpu().numpy(),
                  "original_size": np.asarray(self.original_size),
                  "input_size": np.asarray(self.input_size),
                  "model_id": np.asarray(self.model_id)}
        return write_npz_atomic(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ImageEmbedding:
        """Load an embedding written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            return cls(
                features=torch.from_numpy(data["features"]),
                original_size=tuple(int(v) for v in data["original_size"]),
                input_size=tuple(int(v) for v in data["input_size"]),
                model_id=str(data["model_id"]),
            )


@dataclass
class BatchPrediction:
    """Result of one batched decoder call for N prompts (tensors on the predictor's device).

    Attributes
    ----------
    masks : torch.Tensor (N, C, H, W) bool, or None when not upsampled
    scores : torch.Tensor (N, C) float32, predicted IoU
    logits : torch.Tensor (N, C, 4E, 4E) float32, low-resolution mask logits
    """

    masks: torch.Tensor | None
    scores: torch.Tensor
    logits: torch.Tensor


def model_mismatch(made_by: str | None, uses: str | None, *, what: str = "the embedding was",
                   user: str = "this predictor uses",
                   fix: str = "recompute it with this model") -> str:
    """The message of a ValueError for embeddings made by another model than the one given:
    both model ids and the fix, e.g. "the embedding was made by model 'demo:...' but this
    predictor uses 'file:...'; recompute it with this model"."""
    return f"{what} made by model {made_by!r} but {user} {uses!r}; {fix}"


class Predictor:
    """Segment one image with point, box and mask prompts.

    Parameters
    ----------
    model : Sam, Sam2Model, str or PathLike
        A model from :func:`napari_sam.load_model`, or what it takes: a registry name
        (``"demo"``, ``"vit_b"``, ``"sam2.1_hiera_tiny"``, ...) or the path of a checkpoint.
        A SAM 2.1 model works through the same methods (its steps are Meta's
        ``SAM2ImagePredictor``'s, see :mod:`napari_sam.models.sam2.image_predictor`); its
        embeddings also hold the high-resolution features.
    device : str or torch.device
        ``"auto"`` picks CUDA, then MPS, then CPU.
    precision : {"auto", "fp32", "bf16", "fp16"}
        Autocast precision of the encoder and decoder. ``"auto"`` is bf16 on CUDA devices
        that support it and on CPUs with native bf16 arithmetic (AVX-512 BF16 or AMX), fp32
        elsewhere; the environment variable ``NAPARI_SAM_PRECISION`` changes what it means
        (see :func:`napari_sam.device.resolve_precision`). Masks agree with fp32 ones at
        IoU >= 0.98; pass ``"fp32"`` for exact float32.
    backend : {"torch", "onnx"}
        Which mask decoder :meth:`predict` runs. ``"onnx"`` exports the model's prompt
        encoder and mask decoder once (a few seconds; cached under the model cache, see
        :func:`napari_sam.export.onnx_runtime.onnx_cache_folder`) and runs them in
        onnxruntime in float32 on the CPU: 1.4-2.7x less CPU time per click than the plain
        PyTorch decoder, about 2x more than the default cached decoder (docs/onnx.md). It needs ``pip install "napari-sam-stacks[onnx]"``. The image encoder
        and :meth:`predict_batch` (volumes, segment everything) stay on PyTorch, and so do
        tiled images (each window is decoded with :meth:`predict_batch`; a warning says so).
    cached_decoder : bool
        Decode one prompt without a mask input (a click) with
        :class:`napari_sam.models.cached_decoder.CachedDecoder`: the image-side work is cached
        on the first click on an embedding (about one plain decoder call), every click on it
        costs about a sixth of the plain decoder (docs/benchmarks.md, "Click to mask"), and
        a click decodes the same way whatever was decoded before it. It runs in bfloat16 on a CPU
        where ``precision`` resolves to bf16, else in float32
        (:func:`~napari_sam.models.cached_decoder.click_precision`). The cache follows
        the embedding's features (a new or different embedding gets a new one); it assumes
        the model's weights are not changed in place meanwhile (new weights need new
        embeddings anyway). False: always the plain decoder at ``precision``.

    Examples
    --------
    >>> pred = Predictor(load_model("demo"))
    >>> pred.set_image(image)                      # (Y, X) or (Y, X, 3|4), any dtype
    >>> masks, scores, logits = pred.predict(points=[[120, 80]], labels=[1])
    """

    def __init__(self, model, device="auto", precision: str = "auto", backend: str = "torch",
                 cached_decoder: bool = True):
        if backend not in _BACKENDS:
            raise ValueError(
                f"unknown backend {backend!r}; use one of {', '.join(map(repr, _BACKENDS))}"
            )
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        #: "fp32", "bf16" or "fp16": what ``precision`` resolved to (shown by the GUI and CLI)
        self.precision = precision_name(self.dtype)
        self.model = as_model(model, self.device, family=None).to(self.device).eval()
        self._embedding: ImageEmbedding | None = None
        self._tiled: TiledEmbedding | None = None
        #: the last :meth:`predict` on a tiled image (its ``cut`` flag, windows), else None
        self.last_tiled: TiledPrediction | None = None
        self.decoder_calls = 0
        self.encoder_calls = 0
        # the click caches and the call counts: a propagation's two sweeps decode at once
        self._lock = threading.Lock()
        #: "torch" or "onnx": the decoder :meth:`predict` runs
        self.backend = backend
        self._said_tiled_torch = False
        self._onnx = None
        #: the SAM 2.1 steps, when the model is a SAM 2.1 one (else None)
        self.sam2 = None
        if getattr(self.model, "family", None) == "sam2":
            if backend != "torch":
                raise ValueError("a SAM 2.1 model runs on the torch backend only; use "
                                 "backend='torch'")
            self.sam2 = Sam2ImagePredictor(self.model, self.device, self.dtype)
        #: whether single prompts without a mask input use the per-image cached decoder
        self.cached_decoder = (bool(cached_decoder) and self.sam2 is None
                               and CachedDecoder.supports(self.model))
        self._click_decoder = (
            CachedDecoder(self.model, precision=click_precision(self.device, self.dtype))
            if self.cached_decoder else None
        )
        #: [features, their ClickCache or None] of the embeddings decoded last, newest last
        #: (a few: a click on a tiled image decodes in up to four windows)
        self._clicks: list[list] = []
        #: (embedding, image) of the last untiled set_image; (embedding, image, edge map)
        self._pixels: tuple | None = None
        self._edges: tuple | None = None
        if backend == "onnx":
            try:
                import onnxruntime  # noqa: F401
            except ImportError as err:
                raise ImportError(
                    'Predictor(backend="onnx") needs onnxruntime: pip install '
                    '"napari-sam-stacks[onnx]" (or use backend="torch")'
                ) from err
            from napari_sam.export.onnx_runtime import OnnxDecoder

            self._onnx = OnnxDecoder.for_model(self.model)

    def __repr__(self) -> str:  # one line (a notebook cell's last line)
        if self._tiled is not None:
            h, w = self._tiled.original_size
            image = f"image {h} x {w} in {len(self._tiled.tiling)} windows"
        elif self._embedding is not None:
            h, w = self._embedding.original_size
            image = f"image {h} x {w}"
        else:
            image = "no image set"
        backend = "" if self.backend == "torch" else f", backend={self.backend}"
        return (f"Predictor(model={getattr(self.model, 'model_id', None)!r}, device="
                f"{self.device}, precision={self.precision}{backend}, {image})")

    # ------------------------------------------------------------------ embedding
    @property
    def img_size(self) -> int:
        return int(self.model.img_size)

    @property
    def low_res_size(self) -> int:
        """Side of the low-resolution logits and of mask prompts (4 E)."""
        return 4 * int(self.model.embedding_size)

    @property
    def embedding(self) -> ImageEmbedding:
        """The embedding of the image set last (untiled images only)."""
        if self._embedding is None:
            if self._tiled is not None:
                raise RuntimeError(
                    f"the image is tiled ({len(self._tiled.tiling)} windows): use predict(), "
                    "pass embedding=predictor.tiled.embeddings[i] to predict_batch, or set the "
                    "image with tiling=None"
                )
            raise RuntimeError("no image is set: call set_image(image) or set_embedding(emb) first")
        return self._embedding

    def mask_prompt(self, mask) -> np.ndarray:
        """A mask of the image set, as the ``mask_input`` of :meth:`predict`.

        Parameters
        ----------
        mask : array-like (Y, X) bool (or integers: nonzero is inside)
            A mask over the pixels of the image set last (untiled).

        Returns
        -------
        numpy.ndarray (4E, 4E) float32
            Low-resolution logits, about +10 inside and -10 outside
            (:func:`napari_sam.prompts.mask_to_logits`).
        """
        if self._embedding is None and self._tiled is not None:
            raise RuntimeError(
                f"the image is tiled ({len(self._tiled.tiling)} windows), and a mask prompt "
                "lies in one window's frame: set the image with tiling=None to prompt with a "
                "mask of all of it (or pass logits[i] of a previous predict as mask_input)")
        emb = self.embedding  # says what to do when no image is set
        m = np.asarray(mask)
        if m.shape != tuple(emb.original_size):
            raise ValueError(f"the mask has shape {m.shape}, but the image set is "
                             f"{tuple(emb.original_size)}; give a (Y, X) mask of that image")
        return mask_to_logits(m != 0, emb.original_size, emb.input_size, self.img_size,
                              self.low_res_size).numpy()

    @property
    def tiled(self) -> TiledEmbedding | None:
        """The window embeddings when the image set last is tiled, else None."""
        return self._tiled

    @torch.inference_mode()
    def encode_rgb(self, rgbs: list[np.ndarray]) -> list[ImageEmbedding]:
        """Encode same-sized (Y, X, 3) uint8 images in one batch (smoothed first where the
        model asks for it and the input enlarges them:
        :func:`napari_sam.preprocess.smooth_before_enlarging`)."""
        if self.sam2 is not None:
            self.encoder_calls += 1
            return self.sam2.encode(rgbs)
        spec = ResizeSpec.for_image(rgbs[0].shape[:2], self.img_size)
        rgbs = smooth_before_enlarging(rgbs, spec, getattr(self.model, "input_smoothing", 0.0))
        x = images_to_tensor(rgbs, spec, self.device)
        with autocast(self.device, self.dtype):
            feats = self.model.encode(self.model.normalize_and_pad(x))
        self.encoder_calls += 1
        feats = feats.float()
        if not bool(torch.isfinite(feats).all()):
            raise FloatingPointError(self._nonfinite_message("image encoder produced", "features"))
        return [
            ImageEmbedding(feats[i], spec.original_size, spec.input_size, self.model.model_id)
            for i in range(len(rgbs))
        ]

    def set_image(
        self,
        image,
        contrast_limits: tuple[float, float] | None = None,
        percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
        tiling="auto",
    ) -> ImageEmbedding | TiledEmbedding:
        """Compute and keep the embedding of a 2D image, tiled when it is large.

        Parameters
        ----------
        image : array-like, (Y, X) or (Y, X, 3|4)
            uint8, uint16, any int or float dtype (NaN/inf allowed).
        contrast_limits : (float, float), optional
            Intensities mapped to black and white; default: the ``percentiles`` of the image
            (of the whole image when tiled, so every window has the same contrast).
        percentiles : (float, float)
            See :func:`napari_sam.preprocess.to_uint8_rgb`.
        tiling : "auto", None, False, True, int, (int, int) or Tiling
            See :func:`napari_sam.tiling.choose_tiling`: ``"auto"`` embeds images whose
            longer side exceeds 1.5 model inputs in overlapping windows of the model input's
            size at full resolution (docs/tiling.md); None never tiles (the image is resized
            to the model input). SAM 2.1 models are never tiled: ``"auto"`` does not tile
            them, asking for tiling explicitly raises ValueError.

        Returns
        -------
        ImageEmbedding, or TiledEmbedding when tiled (also in :attr:`tiled`)
        """
        chosen = None
        shape = _shape_or_none(image)  # bad images: to_uint8_rgb says what is wrong
        if shape is not None and len(shape) in (2, 3) and min(shape[:2]) > 0:
            if self.sam2 is not None:
                if not (tiling is None or tiling is False or
                        (isinstance(tiling, str) and tiling == "auto")):
                    raise ValueError("tiling is not supported with SAM 2.1 models; pass "
                                     "tiling=None (the image is resized to the model input)")
            else:
                chosen = choose_tiling(shape, self.img_size, tiling)
        self._pixels = self._edges = None
        if isinstance(image, np.ndarray):
            warn_constant_image(image)
        if chosen is None:
            rgb = to_uint8_rgb(image, contrast_limits, percentiles)
            if self.sam2 is None:
                warn_shrunk_strip(rgb.shape, self.img_size)
            self._embedding = self.encode_rgb([rgb])[0]
            self._tiled = self.last_tiled = None
            self._pixels = (self._embedding, image)  # for edge-aligned masks (predict)
            return self._embedding
        tiled = encode_tiled(self, image, chosen, contrast_limits=contrast_limits,
                             percentiles=percentiles)
        self._embedding, self._tiled, self.last_tiled = None, tiled, None
        return tiled

    def set_embedding(self, embedding: ImageEmbedding | TiledEmbedding) -> None:
        """Use a precomputed embedding (from :meth:`set_image`, a store or a file), or the
        window embeddings of a tiled image. The image's pixels are not known then, so
        :meth:`predict` cuts masks at the model's threshold unless ``boundary="edge"`` is
        given with the image."""
        self._pixels = self._edges = None
        if isinstance(embedding, TiledEmbedding):
            if self.sam2 is not None:
                raise ValueError("tiled embeddings are not supported with SAM 2.1 models; "
                                 "embed the image with tiling=None")
            if len(embedding.embeddings) != len(embedding.tiling):
                raise ValueError(f"the tiled embedding has {len(embedding.embeddings)} window "
                                 f"embeddings for {len(embedding.tiling)} windows")
            for e in embedding.embeddings:
                self.check_embedding(e)
            self._embedding, self._tiled, self.last_tiled = None, embedding, None
            return
        self.check_embedding(embedding)
        self._embedding, self._tiled, self.last_tiled = embedding, None, None

    def _nonfinite_message(self, what: str, output: str) -> str:
        bad = nonfinite_parameters(self.model)
        if bad:
            cause = (
                f"the model's weights contain NaN or inf ({len(bad)} tensors, e.g. "
                f"{', '.join(bad[:3])}): the checkpoint is corrupt or its training diverged; "
                "load another checkpoint"
            )
        elif self.dtype != torch.float32:
            cause = (
                f"the reduced precision ({self.dtype}) overflowed; use precision='fp32'"
            )
        else:
            cause = "check the inputs for NaN or inf"
        return f"the {what} NaN or inf {output}: {cause}"

    def check_embedding(self, emb: ImageEmbedding) -> None:
        if emb.model_id != self.model.model_id:
            raise ValueError(model_mismatch(emb.model_id, self.model.model_id))
        e = int(self.model.embedding_size)
        if tuple(emb.features.shape[-2:]) != (e, e):
            raise ValueError(f"embedding shape {tuple(emb.features.shape)} does not fit this model")

    # ------------------------------------------------------------------ prompts
    def predict(
        self,
        points=None,
        labels=None,
        box=None,
        mask_input=None,
        multimask: bool = True,
        boundary: str = "auto",
        image=None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for one object from points, a box and/or a low-resolution mask prompt.

        Parameters
        ----------
        points : array-like (P, 2), optional
            (row, col) pixel coordinates.
        labels : array-like (P,), optional
            1 positive, 0 negative; default all positive.
        box : array-like (4,), optional
            (row0, col0, row1, col1).
        mask_input : array-like (4E, 4E) or (1, 4E, 4E), optional
            Low-resolution logits, e.g. ``logits[i]`` of a previous call. It refines what
            points or a box select; alone it often selects nothing, and a ``UserWarning``
            says so when every mask comes back empty.
        multimask : bool
            Return 3 candidate masks (for ambiguous prompts) instead of 1 (TypeError for
            anything but True or False: ``"no"`` was taken as true).
        boundary : {"auto", "threshold", "edge"}
            Where each mask is cut from its logits: ``"threshold"`` at the model's mask
            threshold (SAM's rule); ``"edge"`` at the logit threshold among -1 ... 1 whose
            boundary lies on the strongest image edges
            (:func:`napari_sam.edge_threshold.edge_aligned_masks`; needs the image's pixels:
            from :meth:`set_image`, or ``image``); ``"auto"``: the model's recommendation
            (``model.mask_boundary``: ``"edge"`` for the bundled demo model, ``"threshold"``
            for SAM's weights) where the pixels are known, else ``"threshold"``. Tiled
            images and SAM 2.1 models: ``"auto"`` cuts at the threshold, ``"edge"`` raises
            ValueError.
        image : array-like (Y, X) or (Y, X, C), optional
            The embedded image's pixels, for ``boundary`` after :meth:`set_embedding`.

        Returns
        -------
        masks : numpy.ndarray (C, H, W) bool
        scores : numpy.ndarray (C,) float32, predicted IoU
        logits : numpy.ndarray (C, 4E, 4E) float32
            C is 3 when ``multimask`` else 1.

        Notes
        -----
        On a tiled image (:attr:`tiled`) the prompt goes through
        :func:`napari_sam.tiled_prompts.decode_tiled`: masks cover the whole image, scores
        and logits are the primary window's (a ``mask_input`` is taken to be logits of the
        previous predict, in its window's frame); :attr:`last_tiled` holds the whole result
        (windows, ``cut``).
        """
        if not isinstance(multimask, (bool, np.bool_)):
            raise TypeError(f"multimask must be True or False, not {multimask!r}")
        wanted = resolve_boundary(boundary, self.model)
        if boundary == "edge" and self.sam2 is not None:
            raise ValueError("boundary='edge' cuts SAM 1 masks only: SAM 2.1 masks are cut at "
                             "the threshold (use boundary='threshold')")
        if self._tiled is not None and self._embedding is None:
            if boundary == "edge":
                raise ValueError("boundary='edge' cuts masks of untiled images only: embed "
                                 "the image with set_image(image, tiling=None), or use "
                                 "boundary='threshold'")
            return self._predict_tiled(points, labels, box, mask_input, multimask)
        emb = self.embedding
        edges = self._edge_map(wanted, boundary == "edge", image, emb)
        if points is None and labels is not None:
            raise ValueError("labels were given without points")
        if points is None and box is None and mask_input is None:
            raise ValueError("give at least one prompt: points, a box or a mask_input")
        pts = lab = boxes = masks = None
        if points is not None:
            p, lb = check_points(points, labels, emb.original_size)
            pts, lab = p[None], lb[None]
        if box is not None:
            boxes = check_box(box, emb.original_size)[None]
        if mask_input is not None:
            masks = check_mask_input(mask_input, self.low_res_size)[None]
        if self._onnx is None:  # (the ONNX decoder warns itself)
            warn_only_negative(lab, boxes, masks)
        else:
            m, sc, lg = self._onnx.predict(
                emb,
                None if pts is None else pts[0],
                None if lab is None else lab[0],
                None if boxes is None else boxes[0],
                None if masks is None else masks[0],
                multimask=multimask,
            )
            self._count_decode()
            if not (np.isfinite(sc).all() and np.isfinite(lg).all()):
                raise FloatingPointError(self._nonfinite_message("mask decoder returned", "scores"))
            lg = np.asarray(lg, np.float32)
            if edges is not None:
                m = edge_aligned_masks(self.upsample_logits(torch.as_tensor(lg), emb), edges)[0]
            warn_mask_alone_empty(m, pts, boxes)
            return np.asarray(m, bool), np.asarray(sc, np.float32), lg
        out = self.predict_batch(
            points=pts, labels=lab, boxes=boxes, mask_inputs=masks, multimask=multimask,
            upsample=edges is None,
        )
        if not bool(torch.isfinite(out.scores).all() and torch.isfinite(out.logits).all()):
            raise FloatingPointError(self._nonfinite_message("mask decoder returned", "scores"))
        lg = out.logits[0].float()
        masks = (out.masks[0].cpu().numpy() if edges is None else
                 edge_aligned_masks(self.upsample_logits(lg, emb), edges)[0])
        warn_mask_alone_empty(masks, pts, boxes)
        return masks, out.scores[0].float().cpu().numpy(), lg.cpu().numpy()

    def _edge_map(self, wanted: str, asked: bool, image, emb) -> np.ndarray | None:
        """The (Y, X) edge map :meth:`predict` cuts masks with, or None (cut at the model's
        threshold), for the resolved rule ``wanted`` (``asked``: the caller named "edge")
        and the image's pixels."""
        if wanted != "edge" or self.sam2 is not None:
            return None
        if image is None and self._pixels is not None and self._pixels[0] is emb:
            image = self._pixels[1]
        if image is None:
            if asked:
                raise ValueError("boundary='edge' needs the image's pixels: call "
                                 "set_image(image), or pass image= with the embedding")
            return None
        # kept for this embedding and image (an array refilled in place for the next image
        # comes with a new embedding from set_image, which drops this)
        if self._edges is None or self._edges[0] is not emb or self._edges[1] is not image:
            edges = edge_map(np.asarray(image))
            if edges.shape != tuple(emb.original_size):
                raise ValueError(f"image {edges.shape} is not the embedded image "
                                 f"{tuple(emb.original_size)}")
            self._edges = (emb, image, edges)
        return self._edges[2]

    def _predict_tiled(self, points, labels, box, mask_input, multimask):
        """:meth:`predict` on a tiled image (each window through :meth:`predict_batch`, so
        on PyTorch also where ``backend="onnx"``: said once per predictor)."""
        if self._onnx is not None and not self._said_tiled_torch:
            self._said_tiled_torch = True
            warnings.warn(
                "backend='onnx' decodes untiled images only: this tiled image is decoded "
                "window by window with the PyTorch decoder (same masks). Pass tiling=None to "
                "set_image to decode it in onnxruntime, shrunk to the model input.",
                UserWarning, stacklevel=3)
        last = self.last_tiled
        res = decode_tiled(
            self, self._tiled, points=points, labels=labels, box=box, mask_input=mask_input,
            multimask=multimask,
            mask_window=None if mask_input is None or last is None else last.frame,
        )
        self.last_tiled = res
        return res.masks, res.scores, res.logits

    @torch.inference_mode()
    def predict_batch(
        self,
        embedding: ImageEmbedding | None = None,
        points=None,
        labels=None,
        boxes=None,
        mask_inputs=None,
        multimask: bool = True,
        upsample: bool = True,
    ) -> BatchPrediction:
        """Decode N prompts on one image together.

        Inputs are not range-checked (the hot path for volumes and automatic segmentation);
        use :meth:`predict` for validated single prompts. On a GPU one decoder call; on a
        CPU chunks of prompts that keep the decoder's tensors in the cache, decoded at once
        by worker threads (:mod:`napari_sam.decode_pool`; the chunks depend only on N and the
        embedding size, so results do not depend on the threads). SAM 2.1 models: one call.

        Parameters
        ----------
        embedding : ImageEmbedding, optional
            Defaults to the image set last.
        points : array-like or tensor (N, P, 2), optional
            (row, col) in original pixels.
        labels : array-like or tensor (N, P), optional
            1 positive, 0 negative, -1 padding (ignored point).
        boxes : array-like or tensor (N, 4), optional
            (row0, col0, row1, col1).
        mask_inputs : array-like or tensor (N, 4E, 4E) or (N, 1, 4E, 4E), optional
            Low-resolution logits.
        multimask : bool
            3 candidates per prompt instead of 1.
        upsample : bool
            Also return full-resolution masks (skip when only some masks will be kept).
        """
        emb = self.embedding if embedding is None else embedding
        if embedding is not None:
            self.check_embedding(emb)
        if self.sam2 is not None:
            return self._predict_batch_sam2(emb, points, labels, boxes, mask_inputs, multimask,
                                            upsample)
        spec = emb.spec(self.img_size)
        dev = self.device
        pt, bx, mk, n = prompt_tensors(points, labels, boxes, mask_inputs, spec, dev)
        if n is None:
            raise ValueError("give at least one prompt: points, boxes or mask_inputs")
        cache = self._click_cache(emb) if n == 1 and mk is None else None
        if cache is not None:  # one click: many small operators, one CPU thread is faster
            with one_cpu_thread(dev):
                sparse, _ = self.model.prompt_encoder(points=pt, boxes=bx, masks=None)
                logits, scores = self._click_decoder.decode(cache, sparse, multimask)
                self._count_decode()
                logits, scores = logits.float(), scores.float()
                masks = self.upsample(logits, emb) if upsample else None
            return BatchPrediction(masks=masks, scores=scores, logits=logits)
        feats = emb.features.to(dev)[None]

        def decode(s: slice):
            with autocast(dev, self.dtype):
                lg, sc = self.model.decode(
                    feats, points=None if pt is None else (pt[0][s], pt[1][s]),
                    boxes=None if bx is None else bx[s], masks=None if mk is None else mk[s],
                    multimask=multimask,
                )
            lg, sc = lg.float(), sc.float()
            return lg, sc, (self.upsample(lg, emb) if upsample else None)

        # on a CPU in chunks that stay in the cache, on worker threads (decode_pool); one
        # call on a GPU, for no prompt, and where a prompt of batch 1 is broadcast
        sizes = {len(x) for x in (None if pt is None else pt[0], bx, mk) if x is not None}
        chunks = (chunk_slices(n, int(feats.shape[-2] * feats.shape[-1]))
                  if dev.type == "cpu" and n > 0 and len(sizes) == 1 else [slice(None)])
        parts = run_chunks(decode, chunks)
        self._count_decode()
        logits, scores, masks = (None if part[0] is None else torch.cat(part)
                                 for part in zip(*parts))
        return BatchPrediction(masks=masks, scores=scores, logits=logits)

    @torch.inference_mode()
    def upsample(self, logits: torch.Tensor, embedding: ImageEmbedding | None = None) -> torch.Tensor:
        """Low-resolution logits (..., 4E, 4E) -> boolean masks (..., H, W) at image size.

        Same steps as Meta's ``Sam.postprocess_masks``: bilinear to the model input size,
        crop the padding, bilinear to the original size, threshold at 0.
        """
        emb = self.embedding if embedding is None else embedding
        if self.sam2 is not None:
            return self.sam2.upsample(logits, emb)
        return self.upsample_logits(logits, emb) > self.model.mask_threshold

    def upsample_logits(self, logits: torch.Tensor, embedding: ImageEmbedding) -> torch.Tensor:
        """Low-resolution logits (..., 4E, 4E) -> float32 logits (..., H, W) at image size,
        as :meth:`upsample` makes them before its threshold (SAM 1 models)."""
        up = upsample_click_logits(logits, embedding, self.img_size)  # one pass where exact
        return upsample_logits(logits, embedding, self.img_size) if up is None else up

    def _click_cache(self, emb: ImageEmbedding):
        """The cached decoder's per-image tensors for ``emb``, made on its first click and
        kept for the last :data:`CLICK_CACHES` embeddings clicked (the windows of a tiled
        image that a click decodes in each keep theirs); None where the plain decoder runs
        (also inside :func:`no_click_cache`, where propagation's sweeps and segment
        everything decode). A click therefore decodes the same way whatever was decoded
        before it: a session replayed in a new process gives the masks the dock showed."""
        if not self.cached_decoder or self._click_decoder is None or getattr(_local, "off", False):
            return None
        with self._lock:
            feats = emb.features
            # the same tensor first (free), then equal contents (an embedding read again)
            found = next((i for i, entry in enumerate(self._clicks) if entry[0] is feats), None)
            if found is None:
                found = next((i for i, (last, _) in enumerate(self._clicks)
                              if last.shape == feats.shape and torch.equal(last, feats)),
                             None)
            if found is not None:
                entry = self._clicks.pop(found)
                self._clicks.append(entry)
                return entry[1]
            self._clicks.append([feats, self._click_decoder.prepare(feats)])
            del self._clicks[:-CLICK_CACHES]
            return self._clicks[-1][1]

    def _count_decode(self) -> None:
        with self._lock:
            self.decoder_calls += 1

    def _predict_batch_sam2(self, emb, points, labels, boxes, mask_inputs, multimask, upsample):
        """:meth:`predict_batch` with a SAM 2.1 model: masks from the unclamped logits,
        logits returned clamped to +-32 (as Meta's ``SAM2ImagePredictor``)."""
        logits, scores, _ = self.sam2.decode(emb, points, labels, boxes, mask_inputs, multimask)
        self._count_decode()
        masks = self.sam2.upsample(logits, emb) if upsample else None
        return BatchPrediction(masks=masks, scores=scores, logits=self.sam2.clamp(logits))


def warn_constant_image(image: np.ndarray, stacklevel: int = 3) -> None:
    """Warn (``UserWarning``) when every pixel of ``image`` (Y, X) or (Y, X, C) holds one
    value (non-finite values ignored; all-NaN counts): SAM then sees a blank image and its
    masks follow the prompts alone, not objects (a wrong channel, slice or file)."""
    from napari_sam.automatic.foreground import constant_value, constant_words

    if image.ndim not in (2, 3) or image.size == 0 or image.dtype.kind not in "biuf":
        return
    value = constant_value(image)
    if value is not None:
        warnings.warn(f"the image is constant ({constant_words(value)}): SAM sees a blank "
                      "image, so masks follow the prompts alone, not objects; check the "
                      "channel, slice or file", UserWarning, stacklevel=stacklevel)


def _shape_or_none(image) -> tuple[int, ...] | None:
    """The shape of an array-like, or None when it has none (e.g. a ragged list)."""
    try:
        return tuple(int(v) for v in np.shape(image))
    except (TypeError, ValueError):
        return None


def nonfinite_parameters(model) -> list[str]:
    """Names of the model's parameters and buffers that hold NaN or inf."""
    bad = []
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad.append(name)
    return bad
