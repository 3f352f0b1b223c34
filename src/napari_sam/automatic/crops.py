"""Per-crop processing of segment everything: decode the grid points of one crop (with
:class:`~napari_sam.automatic.grid_decoder.GridDecoder` or the model's own decoder), keep the
masks that pass the predicted-IoU, stability and crop-edge filters, and run NMS
(:class:`CropEngine`); the surviving masks travel as :class:`Candidates`."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

from napari_sam.automatic.boxes import batched_nms
from napari_sam.automatic.grid_decoder import GridDecoder, grid_precision
from napari_sam.automatic.params import AutomaticParams
from napari_sam.automatic.statistics import UpsamplingGeometry, mask_statistics
from napari_sam.predictor import no_click_cache

#: Upsampling geometries built in this process, by sizes and device (see
#: :func:`cached_geometry`); building one took 0.02-0.07 s, as long as decoding a 128 px
#: slice's grid.
_GEOMETRIES: dict[tuple, UpsamplingGeometry] = {}
_GEOMETRIES_MAX = 32
_GEOMETRIES_LOCK = threading.Lock()  # slices of a stack may be segmented by several threads


def cached_geometry(n_low: int, img_size: int, input_size, out_size, device) -> UpsamplingGeometry:
    """The :class:`UpsamplingGeometry` of these sizes on ``device``, built once per process
    (at most :data:`_GEOMETRIES_MAX` kept; the oldest goes first)."""
    key = (int(n_low), int(img_size), tuple(input_size), tuple(out_size), str(device))
    with _GEOMETRIES_LOCK:
        geom = _GEOMETRIES.get(key)
        if geom is None:
            geom = UpsamplingGeometry(n_low, img_size, input_size, out_size, device)
            if len(_GEOMETRIES) >= _GEOMETRIES_MAX:
                _GEOMETRIES.pop(next(iter(_GEOMETRIES)))
            _GEOMETRIES[key] = geom
    return geom


@dataclass
class Candidates:
    """Masks that passed the filters in one crop (tensors on the device).

    Two sets share the rows: ``strict`` marks the masks of the user's thresholds (after NMS
    among themselves), ``lenient`` those within ``rescue_margin`` of them (after NMS among
    themselves), from which masks on pixels nothing else covers are rescued (see
    :func:`~napari_sam.automatic.image2d.segment_2d`)."""

    logits: torch.Tensor  # (K, L, L) low-res logits
    iou: torch.Tensor  # (K,)
    stability: torch.Tensor  # (K,)
    boxes: torch.Tensor  # (K, 4) inclusive, image frame
    area: torch.Tensor  # (K,)
    points: torch.Tensor  # (K, 2) (row, col) image frame
    strict: torch.Tensor  # (K,) bool
    lenient: torch.Tensor  # (K,) bool

    @classmethod
    def cat(cls, parts: list[Candidates]) -> Candidates:
        """The candidates of ``parts`` one after the other."""
        return cls(*(torch.cat(x, 0) for x in zip(*(p.astuple() for p in parts))))

    @classmethod
    def empty(cls, n_low: int, dev) -> Candidates:
        """No candidate, with (0, n_low, n_low) logits on device ``dev``."""
        z = torch.zeros(0, device=dev)
        return cls(
            torch.zeros(0, n_low, n_low, device=dev),
            z,
            z,
            torch.zeros(0, 4, dtype=torch.int64, device=dev),
            torch.zeros(0, dtype=torch.int64, device=dev),
            torch.zeros(0, 2, dtype=torch.float32, device=dev),
            torch.zeros(0, dtype=torch.bool, device=dev),
            torch.zeros(0, dtype=torch.bool, device=dev),
        )

    def astuple(self):
        return (self.logits, self.iou, self.stability, self.boxes, self.area, self.points,
                self.strict, self.lenient)

    def nms(self, thresh: float) -> Candidates:
        """Box NMS within the strict and within the lenient masks (each a greedy NMS by
        predicted IoU, as SAM's); the rows kept by either, by decreasing predicted IoU."""
        idx = torch.arange(len(self), device=self.iou.device)
        keep_s = idx[self.strict][batched_nms(self.boxes[self.strict], self.iou[self.strict],
                                              thresh)]
        if torch.equal(self.strict, self.lenient):  # no rescue margin (stacks): one NMS
            keep_l = keep_s
        else:
            keep_l = idx[self.lenient][batched_nms(self.boxes[self.lenient],
                                                   self.iou[self.lenient], thresh)]
        rows = torch.unique(torch.cat([keep_s, keep_l]))
        rows = rows[torch.argsort(self.iou[rows], descending=True, stable=True)]
        out = self.take(rows)
        out.strict = torch.isin(rows, keep_s)
        out.lenient = torch.isin(rows, keep_l)
        return out

    def take(self, idx: torch.Tensor) -> Candidates:
        """The candidates at ``idx`` (indices or a boolean mask), in that order."""
        return Candidates(*(x[idx] for x in self.astuple()))

    def __len__(self) -> int:
        return int(self.iou.shape[0])


def _box_near_crop_edge(boxes, crop_box, orig_box, atol: float = 20.0) -> torch.Tensor:
    """Meta's ``is_box_near_crop_edge`` in (row0, col0, row1, col1): boxes already uncropped."""
    crop = torch.as_tensor(crop_box, dtype=torch.float32, device=boxes.device)
    orig = torch.as_tensor(orig_box, dtype=torch.float32, device=boxes.device)
    b = boxes.float()
    near_crop = torch.isclose(b, crop[None], atol=atol, rtol=0)
    near_img = torch.isclose(b, orig[None], atol=atol, rtol=0)
    return (near_crop & ~near_img).any(1)


@dataclass
class _Decoded:
    """One batch of prompts decoded: ``logits[k]`` are the C masks of prompt ``prompt[k]``;
    ``keep[k, c]`` whether mask c passed ``pred_iou_thresh``; ``iou`` (n, C) of all prompts."""

    logits: torch.Tensor  # (K, C, L, L)
    iou: torch.Tensor  # (n, C)
    keep: torch.Tensor  # (K, C) bool
    prompt: torch.Tensor  # (K,) int64, index into the batch


class CropEngine:
    """Runs the grid on one embedding (one crop): decode, filter, NMS.

    Holds the decoder, the upsampling geometries (one per crop size) and the grid decoder's
    prompt-independent tensors of the last embedding, so that the slices of a stack and the
    second pass of ``fill_gaps`` reuse them.
    """

    def __init__(self, predictor, params: AutomaticParams):
        self.pred = predictor
        self.model = predictor.model
        self.p = params
        self.fast = params.fast_decoder and GridDecoder.supports(self.model)
        self.decoder = (
            GridDecoder(self.model, precision=grid_precision(predictor.device, predictor.dtype))
            if self.fast
            else None
        )
        self.n_low = 4 * int(self.model.embedding_size)
        self.threshold = float(self.model.mask_threshold)
        self._shared: tuple[torch.Tensor | None, dict | None] = (None, None)
        # the grid decoder's low-rank factors, reused batch after batch (each batch's state
        # is used up in ``_decode`` before the next one is made)
        self._workspace: dict = {}

    def geometry(self, emb) -> UpsamplingGeometry:
        """The upsampling geometry of embedding ``emb`` (built once per size and device in
        this process: every slice of a stack, and every image of one size, shares it)."""
        sizes = (tuple(int(v) for v in emb.input_size), tuple(int(v) for v in emb.original_size))
        return cached_geometry(self.n_low, self.pred.img_size, *sizes, self.pred.device)

    def shared(self, emb) -> dict:
        """The grid decoder's prompt-independent tensors of ``emb`` (kept for the embedding
        last asked for: the second pass of ``fill_gaps`` reuses them)."""
        features, shared = self._shared
        if features is not emb.features:
            shared = self.decoder.prepare(emb.features)
            self._shared = (emb.features, shared)
        return shared

    @torch.inference_mode()
    def process_crop(self, emb, crop_box, image_size, points_rc, stats) -> Candidates:
        """Candidates of one crop, after IoU / stability / edge filters and NMS, by decreasing IoU.

        ``points_rc`` are (row, col) in crop pixels; boxes and points are returned in the
        image frame.
        """
        p = self.p
        dev = self.pred.device
        geom = self.geometry(emb)
        th = self.threshold
        thresholds = (th - p.stability_score_offset, th, th + p.stability_score_offset)
        shared = self.shared(emb) if self.fast else None
        parts: list[Candidates] = []
        pts_all = torch.as_tensor(np.asarray(points_rc, np.float32), device=dev)
        batch = p.points_per_batch or (64 if dev.type == "cpu" else 256)
        for b0 in range(0, len(points_rc), batch):
            pts = np.asarray(points_rc[b0 : b0 + batch], np.float64)
            stats["points"] += len(pts)
            dec = self._decode(emb, shared, pts, stats)
            sel = dec.keep.nonzero()
            if sel.shape[0] == 0:
                continue
            stats["after_iou"] += int(sel.shape[0])
            logits = dec.logits[sel[:, 0], sel[:, 1]]
            prompt = dec.prompt[sel[:, 0]]
            scores = dec.iou[prompt, sel[:, 1]]
            parts.append(self._filter(logits, scores, pts_all[b0 + prompt], geom, thresholds,
                                      crop_box, image_size, stats))
        if not parts:
            return Candidates.empty(self.n_low, dev)
        return Candidates.cat(parts).nms(p.box_nms_thresh)

    def _passes_iou(self, iou: torch.Tensor, strict: bool = False) -> torch.Tensor:
        """(n, C) bool: predicted IoU above ``pred_iou_thresh`` (less ``rescue_margin``
        unless ``strict``; all True when that is <= 0)."""
        t = self.p.pred_iou_thresh - (0.0 if strict else self.p.rescue_margin)
        return iou > t if t > 0 else torch.ones_like(iou, dtype=torch.bool)

    def _decode(self, emb, shared, pts: np.ndarray, stats) -> _Decoded:
        """Decode one batch of (row, col) crop-pixel prompts; the grid decoder runs its
        upscaling head only for prompts with a mask above ``pred_iou_thresh``."""
        n = len(pts)
        dev = self.pred.device
        if self.fast:
            from napari_sam.preprocess import points_to_model

            xy = torch.as_tensor(points_to_model(pts, emb.spec(self.pred.img_size)), device=dev)
            state = self.decoder.tokens(shared, xy, self._workspace)
            keep = self._passes_iou(state.iou)
            rows = keep.any(1).nonzero()[:, 0]
            stats["decoded_masks"] += int(rows.numel())
            logits = self.decoder.masks(shared, state, rows)  # (nr, C, L, L)
            return _Decoded(logits, state.iou, keep[rows], rows)
        with no_click_cache():  # a last batch of one point: no per-image click cache
            out = self.pred.predict_batch(
                emb,
                points=pts[:, None, :],
                labels=np.ones((n, 1), np.int64),
                multimask=True,
                upsample=False,
            )
        stats["decoded_masks"] += n
        return _Decoded(out.logits, out.scores, self._passes_iou(out.scores),
                        torch.arange(n, device=dev))

    def _filter(self, logits, scores, points, geom, thresholds, crop_box, image_size,
                stats) -> Candidates:
        """The masks (K, L, L) of one batch that are not empty, stable enough and (in a crop
        smaller than the image) not cut by the crop's edge; boxes and points moved from the
        crop frame to the image frame."""
        p = self.p
        counts, boxes = mask_statistics(logits, geom, thresholds)
        stab = counts[:, 2].float() / counts[:, 0].float()
        ok = counts[:, 1] > 0
        strict = self._passes_iou(scores, strict=True)
        if p.stability_score_thresh > 0:
            strict = strict & (stab >= p.stability_score_thresh)
            ok &= stab >= p.stability_score_thresh - p.rescue_margin
        off = torch.as_tensor([crop_box[0], crop_box[1]] * 2, device=self.pred.device)
        boxes = boxes + off
        orig_box = (0, 0, *image_size)
        if tuple(crop_box) != orig_box:
            ok &= ~_box_near_crop_edge(boxes, crop_box, orig_box)
        idx = ok.nonzero()[:, 0]
        stats["after_stability"] += int(idx.numel())
        return Candidates(
            logits[idx],
            scores[idx],
            stab[idx],
            boxes[idx],
            counts[idx, 1],
            points[idx] + off[:2].to(points.dtype),
            strict[idx],
            torch.ones(idx.numel(), dtype=torch.bool, device=idx.device),
        )
