"""Train or finetune a SAM-family model on (image, instance labels) pairs.

One training step takes a batch of images, encodes them once, and for up to
``objects_per_image`` objects per image simulates an interactive session the way SAM was
trained:

1. a first prompt: one random positive point (decoded with 3 candidate masks; only the best
   candidate is penalised) or a jittered box (one mask);
2. ``n_corrections`` correction clicks, each sampled from the error region of the previous
   prediction (positive in a missed region, negative in a spurious one), with the previous
   low-resolution logits of the chosen mask as the mask prompt (one mask).

Each decoder call handles every object of the batch at once. The loss is SAM's: focal (x20)
+ dice on the masks (upsampled to the model input size, as at inference) and MSE between the
IoU head and the actual IoU, averaged over all iterations.

Validation runs the :class:`~napari_sam.predictor.Predictor` on the original images: one
click at the centre of each object (best of 3 candidates by predicted IoU) and the tight box.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from napari_sam.device import autocast, resolve_device, resolve_precision

from .data import TrainItem, load_pairs, make_items, split_items
from .losses import LossWeights, sam_loss
from .prompts import (
    boxes_of_masks_torch,
    central_point,
    correction_clicks,
    correction_clicks_torch,
    jitter_boxes_torch,
    masks_to_boxes,
    sample_points_torch,
)

__all__ = [
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "evaluate",
    "position_aware_init",
    "save_checkpoint",
    "train",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass
class TrainConfig:
    """Hyperparameters of :class:`Trainer` (all have working defaults for finetuning).

    Attributes
    ----------
    lr : float
        Peak AdamW learning rate (linear warmup, then cosine decay to ``lr * min_lr_ratio``).
    weight_decay : float
    warmup_steps : int
    min_lr_ratio : float
    batch_size : int
        Images per step.
    objects_per_image : int
        Objects sampled per image and step (all of them when fewer).
    n_corrections : int
        Correction-click iterations after the first prompt.
    p_box : float
        Probability that an object's first prompt is a box instead of a point.
    p_farthest : float
        Probability that a correction click is the point farthest inside the error region
        (else uniformly random in it).
    correction_fraction : float
        Share of each step's objects (0 < f <= 1, at least one per prompt kind) that go on
        to the correction iterations. Each iteration is a decoder pass with its backward,
        which is most of a step's cost: at 0.5 a demo-model step of the correction phase
        takes 1.20 s instead of 1.68 s on a 2-core CPU (batch 4, 2 iterations), and every
        object still learns from its first prompt.
    p_drop_mask : float
        Probability, per correction iteration, of decoding without the mask prompt (so the
        model also works when a caller passes only points).
    point_interior_bias : float
        Probability that a first click is drawn towards the object's middle.
    box_noise : float
        Box jitter, relative to the box side (SAM: 0.1).
    freeze_encoder : bool
        Train only the prompt encoder and mask decoder; image embeddings are computed once
        per (augmented) image and cached.
    augment : bool
        Random flips and 90-degree rotations.
    grad_clip : float
        Gradient-norm clipping (0 disables).
    precision : {"auto", "fp32", "bf16", "fp16"}
        Autocast dtype; "auto" is bf16 on CUDA and fp32 on the CPU.
    loss_resolution : {"input", "low"}
        Compute the mask loss on logits upsampled to the model input size, as inference
        does ("input"), or on the low-resolution logits against area-downsampled targets
        ("low", 4x cheaper).
    loss : LossWeights
    propagation : bool
        For items whose ``meta["partner"]`` (a neighbouring slice of the same volume) is in
        the batch, also train the step ``segment_volume`` takes: each object's predicted mask
        prompts the partner slice (box + low-resolution logits), against the partner's mask
        of the same id, which is empty where the object ends.
    propagation_hops : int
        Propagation steps per pair (>= 1). Each further hop prompts the partner slice again
        with the previous hop's prediction (box + logits), against the same target. Inference
        chains steps over slices that look alike; where an object has ended, the next source
        is the model's own leftover blob on background, which one hop never shows it (it then
        tends to copy the blob forever). The second hop teaches it to let such blobs vanish.
    """

    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 10
    min_lr_ratio: float = 0.05
    batch_size: int = 2
    objects_per_image: int = 8
    n_corrections: int = 3
    correction_fraction: float = 1.0
    p_box: float = 0.5
    p_farthest: float = 0.5
    p_drop_mask: float = 0.1
    point_interior_bias: float = 0.5
    box_noise: float = 0.1
    freeze_encoder: bool = False
    augment: bool = True
    grad_clip: float = 1.0
    precision: str = "auto"
    loss_resolution: str = "input"
    loss: LossWeights = field(default_factory=LossWeights)
    propagation: bool = True
    propagation_hops: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- checkpoints


def _atomic_write_bytes(path: Path, write: Callable[[Any], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def sidecar_path(path: str | os.PathLike) -> Path:
    """``model.pt`` -> ``model.json`` (what :func:`napari_sam.load_model` reads)."""
    return Path(path).with_suffix(".json")


def save_checkpoint(model, path: str | os.PathLike, metadata: dict[str, Any]) -> Path:
    """Write ``model.state_dict()`` (Meta's SAM key layout, float32, CPU) to ``path`` and
    ``metadata`` plus the architecture and the file's sha256 to the JSON sidecar. Both are
    written to temporary names and renamed, so an interrupted save leaves the previous
    files intact."""
    import hashlib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu()
          for k, v in model.state_dict().items()}
    _atomic_write_bytes(path, lambda fh: torch.save(sd, fh))
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    from napari_sam import __version__
    from napari_sam.models.build import architecture_name

    meta = {
        "format_version": FORMAT_VERSION,
        "napari_sam_version": __version__,
        "architecture": architecture_name(model.config),
        "config": model.config.to_dict(),
        "input_size": int(model.img_size),
        **metadata,
        "sha256": h.hexdigest(),
        "size": path.stat().st_size,
    }
    text = json.dumps(meta, indent=1, default=json_default)
    _atomic_write_bytes(sidecar_path(path), lambda fh: fh.write(text.encode()))
    return path


def json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    return str(o)


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(
    model,
    items: Sequence[TrainItem],
    *,
    device="cpu",
    max_objects: int | None = None,
    n_clicks: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Prompted-segmentation quality through the :class:`Predictor` on original images.

    Per object: one positive click at its most central pixel (3 candidates, the one with the
    highest predicted IoU is kept), its tight box, and optionally ``n_clicks`` correction
    clicks after the first click (farthest point of the larger error region, previous logits
    as mask prompt, one mask).

    Returns
    -------
    dict with "point_iou", "box_iou", "val_iou" (their mean) and, with ``n_clicks``,
    "click_iou" (list after each click) and arrays "point_ious", "box_ious",
    "click_ious" (objects x clicks) for detailed analysis.
    """
    from napari_sam.predictor import Predictor

    was_training = model.training
    pred = Predictor(model, device=device, precision="fp32")
    rng = np.random.default_rng(seed)
    p_ious, b_ious, c_ious = [], [], []
    budget = max_objects
    try:
        for item in items:
            ids = item.meta.get("eval_ids")
            ids = np.unique(item.labels[item.labels > 0]) if ids is None else np.asarray(ids)
            if budget is not None:
                if budget <= 0:
                    break
                ids = ids[:budget]
                budget -= len(ids)
            if len(ids) == 0:
                continue
            emb = pred.set_image(item.image, contrast_limits=item.contrast_limits)
            gt = torch.from_numpy(item.labels[None] == ids[:, None, None])  # (K, H, W)
            pts = np.array([central_point(g) for g in gt.numpy()], np.float32)[:, None]  # (K,1,2)
            lab = np.ones((len(ids), 1), np.int64)
            out = pred.predict_batch(emb, points=pts, labels=lab, multimask=True)
            best = out.scores.argmax(1)
            rows = torch.arange(len(ids))
            masks = out.masks[rows, best]
            p_ious.append(_iou(masks, gt))
            boxes = masks_to_boxes(gt)[:, [1, 0, 3, 2]]  # (x0,y0,x1,y1) -> (r0,c0,r1,c1)
            outb = pred.predict_batch(emb, boxes=boxes, multimask=False)
            b_ious.append(_iou(outb.masks[:, 0], gt))
            if n_clicks:
                logits = out.logits[rows, best][:, None]
                cur = masks
                per_click = []
                for _ in range(n_clicks):
                    xy, lb = correction_clicks(cur, gt, rng, p_farthest=1.0)
                    # points in (row, col) for the predictor; padding points keep label -1
                    pts = np.concatenate([pts, xy[:, None, ::-1]], 1)
                    lab = np.concatenate([lab, lb[:, None]], 1)
                    o = pred.predict_batch(emb, points=pts, labels=lab, mask_inputs=logits,
                                           multimask=False)
                    logits, cur = o.logits, o.masks[:, 0]
                    per_click.append(_iou(cur, gt))
                c_ious.append(np.stack(per_click, 1))
    finally:
        model.train(was_training)
    p = np.concatenate(p_ious) if p_ious else np.zeros(0)
    b = np.concatenate(b_ious) if b_ious else np.zeros(0)
    res: dict[str, Any] = {
        "n_objects": int(len(p)),
        "point_iou": float(p.mean()) if len(p) else float("nan"),
        "box_iou": float(b.mean()) if len(b) else float("nan"),
        "point_ious": p,
        "box_ious": b,
    }
    res["val_iou"] = (res["point_iou"] + res["box_iou"]) / 2
    if n_clicks:
        c = np.concatenate(c_ious) if c_ious else np.zeros((0, n_clicks))
        res["click_ious"] = c
        res["click_iou"] = [float(v) for v in c.mean(0)] if len(c) else []
    return res


def _iou(masks: Tensor, gt: Tensor) -> np.ndarray:
    m = masks.reshape(len(masks), -1).cpu()
    g = gt.reshape(len(gt), -1)
    inter = (m & g).sum(1).double()
    union = (m | g).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union)).numpy()


# ----------------------------------------------------------------------------- init


@torch.no_grad()
def position_aware_init(model, *, gain: float = 1.5, seed: int = 0) -> None:
    """Initialise a from-scratch decoder so that prompts attend to their image location.

    In every token<->image cross-attention of the mask decoder the query and key
    projections get the same random orthonormal matrix (times ``gain``), so the attention
    logit between a point token and a pixel starts as the similarity of their positional
    encodings (largest at the clicked location) plus the similarity of their features,
    instead of random noise. Without this, a randomly initialised decoder spends hundreds of
    steps producing the same mask for every prompt before it discovers where the prompt
    is (the bilinear q.k form starts near a saddle point). Value and output projections,
    the prompt encoder and the image encoder keep their default initialisation.
    """
    gen = torch.Generator().manual_seed(seed)
    tr = model.mask_decoder.transformer
    attns = [tr.final_attn_token_to_image]
    for layer in tr.layers:
        attns += [layer.cross_attn_token_to_image, layer.cross_attn_image_to_token]
    for att in attns:
        out_dim, in_dim = att.q_proj.weight.shape
        w = torch.linalg.qr(torch.randn(in_dim, out_dim, generator=gen))[0].T  # (out, in)
        att.q_proj.weight.copy_(gain * w)
        att.k_proj.weight.copy_(gain * w)
        att.q_proj.bias.zero_()
        att.k_proj.bias.zero_()


# ----------------------------------------------------------------------------- trainer


def _augment(rgb: np.ndarray, lab: np.ndarray, rng: np.random.Generator,
             params: tuple[int, bool] | None = None):
    """Random 90-degree rotation and flip; ``params`` (k, flip) repeats an earlier draw."""
    k, flip = params if params is not None else (int(rng.integers(4)), bool(rng.random() < 0.5))
    if k:
        rgb, lab = np.rot90(rgb, k), np.rot90(lab, k)
    if flip:
        rgb, lab = rgb[:, ::-1], lab[:, ::-1]
    return np.ascontiguousarray(rgb), np.ascontiguousarray(lab), (k, flip)


def _pairs(items: Sequence[TrainItem]) -> list[tuple[int, int]]:
    """(i, j) for items[j] being items[i]'s neighbouring slice (``meta["partner"]``)."""
    where = {id(it): j for j, it in enumerate(items)}
    out = []
    for i, it in enumerate(items):
        j = where.get(id(it.meta.get("partner")))
        if j is not None and j != i:
            out.append((i, j))
    return out


class Trainer:
    """Runs training steps and evaluation for one model.

    Parameters
    ----------
    model : Sam
        Trained in place.
    config : TrainConfig
    device : str or torch.device
    seed : int
    total_steps : int
        Length of the learning-rate schedule.
    """

    def __init__(self, model, config: TrainConfig, *, device="cpu", seed: int = 0,
                 total_steps: int = 1000) -> None:
        self.model = model
        self.cfg = config
        self.device = resolve_device(device)
        self.dtype = resolve_precision(config.precision, self.device)
        if not 0 < config.correction_fraction <= 1:
            raise ValueError(
                f"correction_fraction must be in (0, 1], got {config.correction_fraction}")
        self.model.to(self.device).train()
        self.rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        #: draws the prompts on the training device (``rng`` picks objects and prompt kinds)
        self.gen = torch.Generator(device=self.device).manual_seed(int(seed))
        enc = self.model.image_encoder
        for p in enc.parameters():
            p.requires_grad_(not config.freeze_encoder)
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr,
        )
        self.total_steps = max(1, int(total_steps))
        self.step_count = 0
        self._emb_cache: dict[int, Tensor] = {}
        #: optional callable returning the fraction of training done (0..1); when set, the
        #: cosine schedule follows it instead of ``step / total_steps`` (time-boxed runs)
        self.progress_fn: Callable[[], float] | None = None

    # -------------------------------------------------------------- schedule
    def lr_at(self, step: int) -> float:
        c = self.cfg
        if step < c.warmup_steps:
            return c.lr * (step + 1) / c.warmup_steps
        if self.progress_fn is not None:
            t = min(1.0, max(0.0, float(self.progress_fn())))
        else:
            t = min(1.0, (step - c.warmup_steps) / max(1, self.total_steps - c.warmup_steps))
        return c.lr * (c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))

    # -------------------------------------------------------------- one step
    def _inputs(self, items: Sequence[TrainItem]):
        rgbs, labs = [], []
        drawn: dict[int, tuple[int, bool]] = {}  # neighbouring slices share one augmentation
        for it in items:
            rgb, lab = it.rgb, it.labels_input
            if self.cfg.augment and not self.cfg.freeze_encoder:
                partner = it.meta.get("partner")
                rgb, lab, params = _augment(rgb, lab, self.rng,
                                            drawn.get(id(it), drawn.get(id(partner))))
                drawn[id(it)] = params
                if partner is not None:
                    drawn[id(partner)] = params
            rgbs.append(rgb)
            labs.append(lab)
        s = self.model.img_size
        full_labs = np.zeros((len(items), s, s), np.int32)
        tensors = []
        for i, (rgb, lab) in enumerate(zip(rgbs, labs)):
            h, w = lab.shape
            t = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1)
            tensors.append(self.model.normalize_and_pad(t.to(self.device)))
            full_labs[i, :h, :w] = lab
        x = torch.stack(tensors)
        return x, full_labs

    def _embed(self, items, x) -> Tensor:
        if not self.cfg.freeze_encoder:
            with autocast(self.device, self.dtype):
                return self.model.encode(x)
        out = []
        for i, it in enumerate(items):
            key = id(it)
            if key not in self._emb_cache:
                with torch.no_grad(), autocast(self.device, self.dtype):
                    self._emb_cache[key] = self.model.encode(x[i : i + 1]).float()[0]
            out.append(self._emb_cache[key])
        return torch.stack(out)

    def _decode(self, emb, idx, points=None, boxes=None, masks=None, multimask=False):
        with autocast(self.device, self.dtype):
            logits, iou = self.model.decode(
                emb[idx], points=points, boxes=boxes, masks=masks, multimask=multimask
            )
        return logits.float(), iou.float()

    def _up(self, logits: Tensor) -> Tensor:
        s = self.model.img_size
        return F.interpolate(logits, (s, s), mode="bilinear", align_corners=False)

    def _for_loss(self, logits: Tensor) -> Tensor:
        return logits if self.cfg.loss_resolution == "low" else self._up(logits)

    def _targets(self, gt: Tensor) -> Tensor:
        """(N, S, S) bool masks on the device -> float targets at the loss resolution."""
        gt = gt.float()
        if self.cfg.loss_resolution == "low":
            low = 4 * int(self.model.embedding_size)
            gt = F.adaptive_avg_pool2d(gt[:, None], (low, low))[:, 0]
        return gt

    def _propagation_loss(self, pairs, img_idx, obj_ids, first, labs, emb):
        """Prompt each object of a slice on its neighbouring slice the way ``segment_volume``
        does (box of the predicted mask + its low-resolution logits); loss against the
        neighbour's mask of the same id (empty where the object ends there).

        ``img_idx`` and ``obj_ids`` are (N,) int64 numpy arrays; ``first`` is (N, 1, h, w)
        logits and ``labs`` (B, S, S) int32 labels, both on the device.

        Returns (loss, mean IoU of the propagated masks as a 0-d tensor), or None when no
        object has a predicted mask to propagate.
        """
        dev = self.device
        sel = np.array([o for i, _ in pairs for o in np.flatnonzero(img_idx == i)], np.int64)
        dst = np.array([j for i, j in pairs for _ in np.flatnonzero(img_idx == i)], np.int64)
        if not sel.size:
            return None
        sel_t, dst_t = torch.as_tensor(sel, device=dev), torch.as_tensor(dst, device=dev)
        src = first[sel_t]
        with torch.no_grad():
            pred = (self._up(src) > 0)[:, 0]
        keep = pred.flatten(1).any(1)
        if not bool(keep.any()):
            return None
        sel_t, dst_t, src, pred = sel_t[keep], dst_t[keep], src[keep], pred[keep]
        boxes = boxes_of_masks_torch(pred)
        ids = torch.as_tensor(obj_ids, device=dev)[sel_t]
        gt = self._targets(labs[dst_t] == ids[:, None, None])
        total, first_iou = 0.0, None
        for hop in range(max(1, int(self.cfg.propagation_hops))):
            if hop:  # the previous prediction prompts the same slice again
                with torch.no_grad():
                    pred = (self._up(src) > 0)[:, 0]
                alive = pred.flatten(1).any(1)
                if not bool(alive.any()):
                    break
                boxes = boxes_of_masks_torch(pred[alive])
                dst_t, src, gt = dst_t[alive], src[alive], gt[alive]
            logits, iou = self._decode(emb, dst_t, boxes=boxes, masks=src, multimask=False)
            loss, parts = sam_loss(self._for_loss(logits), gt, iou, self.cfg.loss)
            total = total + loss * len(dst_t) / len(img_idx)
            if first_iou is None:
                first_iou = parts["iou"].mean()
            src = logits.detach()
        return total, first_iou

    def train_step(self, items: Sequence[TrainItem]) -> dict[str, float]:
        """One optimisation step on a batch of items; returns loss parts and mean IoUs.

        Prompts are drawn on the training device for all objects at once (the ``_torch``
        functions of :mod:`napari_sam.training.prompts`); the host only picks which objects
        and which prompt kinds, so a GPU step does not wait on per-object numpy work.
        """
        cfg, dev, rng, gen = self.cfg, self.device, self.rng, self.gen
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step_count)
        x, labs_np = self._inputs(items)
        # objects: (image index, id)
        img_idx, obj_ids = [], []
        for i, it in enumerate(items):
            ids = np.unique(labs_np[i][labs_np[i] > 0])
            ids = np.intersect1d(ids, it.ids) if len(it.ids) else ids
            if len(ids) > cfg.objects_per_image:
                ids = rng.choice(ids, cfg.objects_per_image, replace=False)
            img_idx += [i] * len(ids)
            obj_ids += list(ids)
        if not obj_ids:
            return {}
        img_idx_np = np.asarray(img_idx, np.int64)
        obj_ids_np = np.asarray(obj_ids, np.int64)
        labs = torch.from_numpy(labs_np).to(dev)
        idx = torch.as_tensor(img_idx_np, device=dev)
        gt_full = labs[idx] == torch.as_tensor(obj_ids_np, device=dev)[:, None, None]  # (N,S,S)
        gt = self._targets(gt_full)
        n = len(obj_ids)
        s = self.model.img_size
        emb = self._embed(items, x)

        is_box = rng.random(n) < cfg.p_box
        groups = [g for g in (np.flatnonzero(~is_box), np.flatnonzero(is_box)) if len(g)]
        # state per group: prompts and previous logits, all on the device
        coords: dict[int, Tensor] = {}
        labels: dict[int, Tensor] = {}
        boxes: dict[int, Tensor | None] = {}
        prev: dict[int, Tensor] = {}
        losses: list[Tensor] = []
        parts_acc: dict[str, Tensor] = {}
        n_calls = 0
        first_iou = torch.zeros(n, device=dev)
        last_iou = torch.zeros(n, device=dev)
        low_size = 4 * int(self.model.embedding_size)
        first = torch.zeros(n, 1, low_size, low_size, device=dev)
        pairs = _pairs(items)
        prop_iou = None

        def g_t(g):
            return torch.as_tensor(g, device=dev)

        def accumulate(parts, g):
            for k in ("focal", "dice", "iou_mse"):
                parts_acc[k] = parts_acc.get(k, 0.0) + parts[k] * len(g) / n
            last_iou[g_t(g)] = parts["iou"]

        for gi, g in enumerate(groups):
            gt_g = gt[g_t(g)]
            gidx = idx[g_t(g)]
            if is_box[g[0]]:
                tight = boxes_of_masks_torch(gt_full[g_t(g)])
                boxes[gi] = jitter_boxes_torch(tight, gen, (s, s), noise=cfg.box_noise)
                coords[gi] = torch.zeros(len(g), 0, 2, device=dev)
                labels[gi] = torch.zeros(len(g), 0, dtype=torch.int64, device=dev)
                logits, iou = self._decode(emb, gidx, boxes=boxes[gi], multimask=False)
            else:
                boxes[gi] = None
                coords[gi] = sample_points_torch(gt_full[g_t(g)], gen,
                                                 interior_bias=cfg.point_interior_bias)
                labels[gi] = torch.ones(len(g), 1, dtype=torch.int64, device=dev)
                logits, iou = self._decode(emb, gidx, points=(coords[gi], labels[gi]),
                                           multimask=True)
            loss, parts = sam_loss(self._for_loss(logits), gt_g, iou, cfg.loss)
            losses.append(loss * len(g) / n)
            accumulate(parts, g)
            first_iou[g_t(g)] = parts["iou"]
            # the mask a user would see next: highest predicted IoU
            sel = iou.detach().argmax(1)
            rows = torch.arange(len(g), device=dev)
            prev[gi] = logits.detach()[rows, sel][:, None]
            first[g_t(g)] = prev[gi]
        n_calls += 1
        if cfg.propagation and pairs:
            prop = self._propagation_loss(pairs, img_idx_np, obj_ids_np, first, labs, emb)
            if prop is not None:
                losses.append(prop[0])
                prop_iou = prop[1]
                n_calls += 1
        if cfg.n_corrections and cfg.correction_fraction < 1:
            # only a share of the objects goes on to the (costly) correction iterations
            for gi, g in enumerate(groups):
                k = max(1, int(round(cfg.correction_fraction * len(g))))
                sub = np.sort(rng.choice(len(g), k, replace=False))
                s_ = torch.as_tensor(sub, device=dev)
                groups[gi] = g[sub]
                coords[gi], labels[gi] = coords[gi][s_], labels[gi][s_]
                if boxes[gi] is not None:
                    boxes[gi] = boxes[gi][s_]
                prev[gi] = prev[gi][s_]
        for _ in range(cfg.n_corrections):
            for gi, g in enumerate(groups):
                with torch.no_grad():
                    pred_up = (self._up(prev[gi]) > 0)[:, 0]
                xy, lb = correction_clicks_torch(pred_up, gt_full[g_t(g)], gen,
                                                 p_farthest=cfg.p_farthest)
                coords[gi] = torch.cat([coords[gi], xy[:, None]], 1)
                labels[gi] = torch.cat([labels[gi], lb[:, None]], 1)
                masks = None if rng.random() < cfg.p_drop_mask else prev[gi]
                logits, iou = self._decode(emb, idx[g_t(g)], points=(coords[gi], labels[gi]),
                                           boxes=boxes[gi], masks=masks, multimask=False)
                loss, parts = sam_loss(self._for_loss(logits), gt[g_t(g)], iou, cfg.loss)
                losses.append(loss * len(g) / n)
                accumulate(parts, g)
                prev[gi] = logits.detach()
            n_calls += 1
        total = torch.stack(losses).sum() / n_calls
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], cfg.grad_clip
            )
        self.opt.step()
        self.step_count += 1
        # one transfer to the host for every number reported
        keys = ("focal", "dice", "iou_mse")
        nan = torch.tensor(float("nan"), device=dev)
        host = torch.stack([torch.as_tensor(parts_acc[k], device=dev).float() / n_calls
                            for k in keys] + [total.detach().float(), first_iou.mean(),
                                              last_iou.mean(),
                                              nan if prop_iou is None else prop_iou.float()]
                           ).tolist()
        out = dict(zip(keys, host[:3]))
        out.update(loss=host[3], iou_first=host[4], iou_last=host[5],
                   lr=self.opt.param_groups[0]["lr"], objects=n, iou_propagated=host[6])
        return out


# ----------------------------------------------------------------------------- train()


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    model : Sam
        The trained model (the best one by validation IoU when a validation split exists).
    path : Path or None
        The checkpoint written (None when nothing was saved).
    history : list of dict
        Per epoch: "epoch", "loss", "train_iou", "val_point_iou", "val_box_iou",
        "val_iou", "seconds".
    interrupted : bool
        True when training stopped on Ctrl-C (the checkpoint is the last good one).
    """

    model: Any
    path: Path | None
    history: list[dict[str, Any]]
    interrupted: bool = False


def _resolve_model(model, device):
    from napari_sam.models.build import SamConfig, build_sam
    from napari_sam.models.sam import Sam

    if isinstance(model, Sam):
        return model, getattr(model, "model_id", "model")
    if isinstance(model, (SamConfig, dict)):
        cfg = model if isinstance(model, SamConfig) else SamConfig.from_dict(model)
        sam = build_sam(cfg)
        position_aware_init(sam)
        return sam, "scratch"
    from napari_sam.models.registry import load_model

    m = load_model(model if not isinstance(model, str) or not os.path.isfile(model)
                   else Path(model), device="cpu")
    return m, str(model)


def train(
    images,
    labels,
    model="demo",
    out: str | os.PathLike | None = "my_model.pt",
    *,
    epochs: int = 10,
    lr: float = 1e-4,
    batch_size: int = 2,
    objects_per_image: int = 8,
    n_corrections: int = 3,
    freeze_encoder: bool = False,
    val_fraction: float = 0.2,
    seed: int = 0,
    device="auto",
    precision: str = "auto",
    steps_per_epoch: int | None = None,
    max_val_objects: int | None = 200,
    progress: bool = True,
    save: str = "best",
    config: TrainConfig | None = None,
    callback: Callable[[int, dict], None] | None = None,
    data_description: str | None = None,
) -> TrainResult:
    """Train or finetune a SAM-family model on images with instance labels.

    Parameters
    ----------
    images, labels : path, glob, numpy array, or a list of them
        Paired in order (globs sorted). 2D images (Y, X) / (Y, X, 3|4) with (Y, X) labels, or
        stacks (Z, Y, X[, C]) with (Z, Y, X) labels, used slice by slice. Labels are integer
        instance ids, 0 = background. Every check (shapes, dtypes, empty labels, unreadable
        files) runs before training starts and raises ``ValueError``.
    model : str, path, Sam, or SamConfig
        Registry name ("demo", "vit_b", ...), a checkpoint path, a loaded model (trained in
        place), or a :class:`~napari_sam.models.build.SamConfig` to train from scratch.
    out : path or None
        Checkpoint to write (SAM state_dict layout) plus its JSON sidecar (``.json``).
        Written atomically after each epoch whose validation IoU is the best so far
        (``save="best"``) or after every epoch (``save="last"``). None saves nothing.
    epochs, lr, batch_size, objects_per_image, n_corrections, freeze_encoder
        See :class:`TrainConfig`; ``batch_size`` is images per step.
    val_fraction : float
        Held-out share of the images (whole files when several are given).
    seed : int
        Seeds the split, the prompts, augmentation and torch.
    device : "auto", "cpu", "cuda", ...
    precision : {"auto", "fp32", "bf16", "fp16"}
    steps_per_epoch : int, optional
        Default: one pass over the training images.
    max_val_objects : int or None
        Cap on validation objects (speed).
    progress : bool
        tqdm progress bar.
    save : {"best", "last"}
    config : TrainConfig, optional
        Full control; the keyword arguments above override its fields.
    callback : callable(step, info), optional
        Called after every step (e.g. for logging); may raise KeyboardInterrupt to stop.
    data_description : str, optional
        Recorded in the sidecar (default: the file names / array count).

    Returns
    -------
    TrainResult

    Ctrl-C (KeyboardInterrupt) stops training cleanly: the checkpoint on disk is the last
    good one (never half-written) and the result has ``interrupted=True``.
    """
    if save not in ("best", "last"):
        raise ValueError(f"save must be 'best' or 'last', got {save!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    pairs = load_pairs(images, labels)  # all input checks first
    dev = resolve_device(device)
    sam, base = _resolve_model(model, dev)
    items = make_items(pairs, sam.img_size)
    train_items, val_items = split_items(items, val_fraction, seed)
    cfg = copy.deepcopy(config) if config is not None else TrainConfig()
    cfg.lr, cfg.batch_size, cfg.objects_per_image = lr, batch_size, objects_per_image
    cfg.n_corrections, cfg.freeze_encoder, cfg.precision = n_corrections, freeze_encoder, precision
    spe = steps_per_epoch or max(1, math.ceil(len(train_items) / batch_size))
    trainer = Trainer(sam, cfg, device=dev, seed=seed, total_steps=spe * epochs)
    description = data_description or (
        f"{len(pairs)} image(s): " + ", ".join(p.name for p in pairs[:10])
        + (" ..." if len(pairs) > 10 else "")
    )
    meta_base = {
        "base_model": base,
        "data": {
            "description": description,
            "n_images": len(pairs),
            "n_train_items": len(train_items),
            "n_val_items": len(val_items),
            "n_objects": int(sum(len(it.ids) for it in items)),
        },
        "seed": seed,
        "train_config": cfg.to_dict(),
        "trained_by": "napari_sam.training.train",
    }
    return run_training(
        trainer, train_items, val_items, epochs=epochs, steps_per_epoch=spe, out=out,
        meta=meta_base, max_val_objects=max_val_objects, progress=progress, save=save,
        callback=callback,
    )


def run_training(
    trainer: Trainer,
    train_items: Sequence[TrainItem] | Callable[[np.random.Generator, int], list[TrainItem]],
    val_items: Sequence[TrainItem],
    *,
    epochs: int,
    steps_per_epoch: int,
    out,
    meta: dict[str, Any],
    max_val_objects: int | None = 200,
    progress: bool = True,
    save: str = "best",
    callback=None,
    time_limit: float | None = None,
) -> TrainResult:
    """The epoch loop shared by :func:`train` and the demo-model script.

    ``train_items`` is a list (shuffled each epoch) or a function ``(rng, batch_size) ->
    items`` that draws a batch (for streamed synthetic data). ``time_limit`` (seconds) ends
    training early after the epoch in which it is reached (the final validation still runs).
    """
    from tqdm.auto import tqdm

    cfg = trainer.cfg
    out = Path(out) if out is not None else None
    history: list[dict[str, Any]] = []
    best = -math.inf
    best_state = None
    interrupted = False
    saved: Path | None = None
    t_start = time.perf_counter()
    rng = trainer.rng
    # a SIGTERM (e.g. from a job scheduler) is handled like Ctrl-C
    old_term = None
    try:
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread
        pass
    try:
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            sums: dict[str, float] = {}
            count = 0
            if callable(train_items):
                batches = (train_items(rng, cfg.batch_size) for _ in range(steps_per_epoch))
            else:
                order = list(rng.permutation(len(train_items)))
                while len(order) < steps_per_epoch * cfg.batch_size:
                    order += list(rng.permutation(len(train_items)))
                batches = (
                    [train_items[j] for j in order[k * cfg.batch_size : (k + 1) * cfg.batch_size]]
                    for k in range(steps_per_epoch)
                )
            bar = tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch}/{epochs}",
                       disable=not progress, leave=False)
            for batch in bar:
                info = trainer.train_step(batch)
                if not info:
                    continue
                count += 1
                for k in ("loss", "iou_first", "iou_last"):
                    sums[k] = sums.get(k, 0.0) + info[k]
                bar.set_postfix(loss=f"{info['loss']:.3f}", iou=f"{info['iou_last']:.3f}")
                if callback is not None:
                    callback(trainer.step_count, info)
                if time_limit is not None and time.perf_counter() - t_start > time_limit:
                    break
            bar.close()
            rec: dict[str, Any] = {
                "epoch": epoch,
                "steps": trainer.step_count,
                "loss": sums.get("loss", float("nan")) / max(count, 1),
                "train_iou_first": sums.get("iou_first", float("nan")) / max(count, 1),
                "train_iou": sums.get("iou_last", float("nan")) / max(count, 1),
            }
            score = rec["train_iou"]
            if val_items:
                ev = evaluate(trainer.model, val_items, device=trainer.device,
                              max_objects=max_val_objects)
                rec.update(val_point_iou=ev["point_iou"], val_box_iou=ev["box_iou"],
                           val_iou=ev["val_iou"], val_objects=ev["n_objects"])
                score = ev["val_iou"]
            rec["seconds"] = time.perf_counter() - t0
            history.append(rec)
            msg = (f"epoch {epoch}/{epochs}: loss {rec['loss']:.4f}, train IoU "
                   f"{rec['train_iou']:.3f}")
            if val_items:
                msg += (f", val IoU {rec['val_iou']:.3f} (point {rec['val_point_iou']:.3f}, "
                        f"box {rec['val_box_iou']:.3f})")
            logger.info(msg)
            if progress:
                tqdm.write(msg)
            improved = score > best
            if improved:
                best = score
                if val_items:
                    best_state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            if out is not None and (save == "last" or improved):
                saved = save_checkpoint(
                    trainer.model, out,
                    {**meta, "epochs_done": epoch, "steps": trainer.step_count,
                     "metrics": history, "best_epoch": epoch, "interrupted": False},
                )
            if time_limit is not None and time.perf_counter() - t_start > time_limit:
                break
    except KeyboardInterrupt:
        interrupted = True
        msg = "training interrupted"
        msg += f"; the last good checkpoint is {saved}" if saved else "; no checkpoint was written"
        logger.warning(msg)
        if progress:
            tqdm.write(msg)
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    if best_state is not None and save == "best":
        trainer.model.load_state_dict(best_state)
    trainer.model.eval()
    return TrainResult(model=trainer.model, path=saved, history=history, interrupted=interrupted)


def _raise_interrupt(signum, frame):  # pragma: no cover - signal handler
    raise KeyboardInterrupt
