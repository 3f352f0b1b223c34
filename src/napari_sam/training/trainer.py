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

:meth:`Trainer.training_state` / :meth:`Trainer.load_training_state` hold everything a
resumed run needs to continue exactly (weights, optimizer, step counter, random generators).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from napari_sam.device import autocast, resolve_device, resolve_precision

from .checkpoint import cpu_state_dict
from .config import TrainConfig
from .data import TrainItem
from .losses import sam_loss
from .prompts import (
    boxes_of_masks_torch,
    correction_clicks_torch,
    jitter_boxes_torch,
    sample_points_torch,
)

__all__ = ["Trainer", "position_aware_init"]


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



@dataclass
class _StepState:
    """One training step's objects, prompts and losses, all on the training device.

    Objects are split into groups by the kind of their first prompt (points, boxes);
    ``coords`` (K, P, 2), ``labels`` (K, P), ``boxes`` (K, 4) or None and ``prev`` (K, 1, h, w)
    previous low-resolution logits are kept per group index.
    """

    emb: Tensor  # (B, C, E, E) image embeddings
    idx: Tensor  # (N,) image index per object
    gt_full: Tensor  # (N, S, S) bool masks at the input size
    gt: Tensor  # (N, ...) float targets at the loss resolution
    groups: list[np.ndarray]
    is_box: np.ndarray
    n: int
    coords: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    boxes: dict = field(default_factory=dict)
    prev: dict = field(default_factory=dict)
    losses: list = field(default_factory=list)
    parts: dict = field(default_factory=dict)
    n_calls: int = 0
    first_iou: Tensor | None = None
    last_iou: Tensor | None = None
    first: Tensor | None = None
    prop_iou: Tensor | None = None

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

    def _pick_objects(self, items: Sequence[TrainItem], labs_np: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
        """(image index, object id) of up to ``objects_per_image`` objects per image, as two
        (N,) int64 arrays; ids visible after augmentation and listed in ``item.ids``."""
        img_idx, obj_ids = [], []
        for i, it in enumerate(items):
            ids = np.unique(labs_np[i][labs_np[i] > 0])
            ids = np.intersect1d(ids, it.ids) if len(it.ids) else ids
            if len(ids) > self.cfg.objects_per_image:
                ids = self.rng.choice(ids, self.cfg.objects_per_image, replace=False)
            img_idx += [i] * len(ids)
            obj_ids += list(ids)
        return np.asarray(img_idx, np.int64), np.asarray(obj_ids, np.int64)

    def _accumulate(self, st: _StepState, parts: dict, g: np.ndarray) -> None:
        for k in ("focal", "dice", "iou_mse"):
            st.parts[k] = st.parts.get(k, 0.0) + parts[k] * len(g) / st.n
        st.last_iou[torch.as_tensor(g, device=self.device)] = parts["iou"]

    def _first_prompts(self, st: _StepState) -> None:
        """Decode every object from its first prompt: a random point (3 candidates, the one
        with the highest predicted IoU is kept as the next mask prompt) or a jittered box."""
        cfg, dev, s = self.cfg, self.device, self.model.img_size
        for gi, g in enumerate(st.groups):
            g_t = torch.as_tensor(g, device=dev)
            gidx = st.idx[g_t]
            if st.is_box[g[0]]:
                tight = boxes_of_masks_torch(st.gt_full[g_t])
                st.boxes[gi] = jitter_boxes_torch(tight, self.gen, (s, s), noise=cfg.box_noise)
                st.coords[gi] = torch.zeros(len(g), 0, 2, device=dev)
                st.labels[gi] = torch.zeros(len(g), 0, dtype=torch.int64, device=dev)
                logits, iou = self._decode(st.emb, gidx, boxes=st.boxes[gi], multimask=False)
            else:
                st.boxes[gi] = None
                st.coords[gi] = sample_points_torch(st.gt_full[g_t], self.gen,
                                                    interior_bias=cfg.point_interior_bias)
                st.labels[gi] = torch.ones(len(g), 1, dtype=torch.int64, device=dev)
                logits, iou = self._decode(st.emb, gidx, points=(st.coords[gi], st.labels[gi]),
                                           multimask=True)
            loss, parts = sam_loss(self._for_loss(logits), st.gt[g_t], iou, cfg.loss)
            st.losses.append(loss * len(g) / st.n)
            self._accumulate(st, parts, g)
            st.first_iou[g_t] = parts["iou"]
            # the mask a user would see next: highest predicted IoU
            sel = iou.detach().argmax(1)
            rows = torch.arange(len(g), device=dev)
            st.prev[gi] = logits.detach()[rows, sel][:, None]
            st.first[g_t] = st.prev[gi]
        st.n_calls += 1

    def _keep_share_for_corrections(self, st: _StepState) -> None:
        """Only ``correction_fraction`` of each group goes on to the (costly) corrections."""
        for gi, g in enumerate(st.groups):
            k = max(1, int(round(self.cfg.correction_fraction * len(g))))
            sub = np.sort(self.rng.choice(len(g), k, replace=False))
            s_ = torch.as_tensor(sub, device=self.device)
            st.groups[gi] = g[sub]
            st.coords[gi], st.labels[gi] = st.coords[gi][s_], st.labels[gi][s_]
            if st.boxes[gi] is not None:
                st.boxes[gi] = st.boxes[gi][s_]
            st.prev[gi] = st.prev[gi][s_]

    def _correction_round(self, st: _StepState) -> None:
        """One correction click per object, from the error region of its previous mask, with
        the previous logits as mask prompt (dropped with probability ``p_drop_mask``)."""
        cfg = self.cfg
        for gi, g in enumerate(st.groups):
            g_t = torch.as_tensor(g, device=self.device)
            with torch.no_grad():
                pred_up = (self._up(st.prev[gi]) > 0)[:, 0]
            xy, lb = correction_clicks_torch(pred_up, st.gt_full[g_t], self.gen,
                                             p_farthest=cfg.p_farthest)
            st.coords[gi] = torch.cat([st.coords[gi], xy[:, None]], 1)
            st.labels[gi] = torch.cat([st.labels[gi], lb[:, None]], 1)
            masks = None if self.rng.random() < cfg.p_drop_mask else st.prev[gi]
            logits, iou = self._decode(st.emb, st.idx[g_t], points=(st.coords[gi], st.labels[gi]),
                                       boxes=st.boxes[gi], masks=masks, multimask=False)
            loss, parts = sam_loss(self._for_loss(logits), st.gt[g_t], iou, cfg.loss)
            st.losses.append(loss * len(g) / st.n)
            self._accumulate(st, parts, g)
            st.prev[gi] = logits.detach()
        st.n_calls += 1

    def _apply_gradients(self, total: Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], self.cfg.grad_clip
            )
        self.opt.step()
        self.step_count += 1

    def _step_report(self, st: _StepState, total: Tensor) -> dict[str, float]:
        """Loss parts and IoUs of the step, with one transfer to the host for every number."""
        dev = self.device
        keys = ("focal", "dice", "iou_mse")
        nan = torch.tensor(float("nan"), device=dev)
        host = torch.stack([torch.as_tensor(st.parts[k], device=dev).float() / st.n_calls
                            for k in keys] + [total.detach().float(), st.first_iou.mean(),
                                              st.last_iou.mean(),
                                              nan if st.prop_iou is None else st.prop_iou.float()]
                           ).tolist()
        out = dict(zip(keys, host[:3]))
        out.update(loss=host[3], iou_first=host[4], iou_last=host[5],
                   lr=self.opt.param_groups[0]["lr"], objects=st.n, iou_propagated=host[6])
        return out

    def train_step(self, items: Sequence[TrainItem]) -> dict[str, float]:
        """One optimisation step on a batch of items; returns loss parts and mean IoUs.

        Prompts are drawn on the training device for all objects at once (the ``_torch``
        functions of :mod:`napari_sam.training.prompts`); the host only picks which objects
        and which prompt kinds, so a GPU step does not wait on per-object numpy work.
        """
        cfg, dev = self.cfg, self.device
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step_count)
        x, labs_np = self._inputs(items)
        img_idx_np, obj_ids_np = self._pick_objects(items, labs_np)
        if not len(obj_ids_np):
            return {}
        labs = torch.from_numpy(labs_np).to(dev)
        idx = torch.as_tensor(img_idx_np, device=dev)
        gt_full = labs[idx] == torch.as_tensor(obj_ids_np, device=dev)[:, None, None]  # (N,S,S)
        gt = self._targets(gt_full)
        n = len(obj_ids_np)
        emb = self._embed(items, x)
        is_box = self.rng.random(n) < cfg.p_box
        groups = [g for g in (np.flatnonzero(~is_box), np.flatnonzero(is_box)) if len(g)]
        low_size = 4 * int(self.model.embedding_size)
        st = _StepState(emb=emb, idx=idx, gt_full=gt_full, gt=gt, groups=groups, is_box=is_box,
                        n=n, first_iou=torch.zeros(n, device=dev),
                        last_iou=torch.zeros(n, device=dev),
                        first=torch.zeros(n, 1, low_size, low_size, device=dev))
        self._first_prompts(st)
        pairs = _pairs(items)
        if cfg.propagation and pairs:
            prop = self._propagation_loss(pairs, img_idx_np, obj_ids_np, st.first, labs, emb)
            if prop is not None:
                st.losses.append(prop[0])
                st.prop_iou = prop[1]
                st.n_calls += 1
        if cfg.n_corrections and cfg.correction_fraction < 1:
            self._keep_share_for_corrections(st)
        for _ in range(cfg.n_corrections):
            self._correction_round(st)
        total = torch.stack(st.losses).sum() / st.n_calls
        self._apply_gradients(total)
        return self._step_report(st, total)

    # -------------------------------------------------------------- resume
    def training_state(self) -> dict[str, Any]:
        """Everything this trainer needs to continue exactly: current weights (CPU float32),
        optimizer state, step counter, schedule length and every random generator
        (numpy, the prompt generator, torch's CPU/CUDA generators, Python's ``random``)."""
        cuda = [t.cpu() for t in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() \
            and self.device.type == "cuda" else []
        return {
            "model": cpu_state_dict(self.model),
            "optimizer": self.opt.state_dict(),
            "step_count": int(self.step_count),
            "total_steps": int(self.total_steps),
            "numpy_rng": text_ints(self.rng.bit_generator.state),
            "prompt_rng": self.gen.get_state().cpu(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": cuda,
            "python_rng": text_ints(random.getstate()),
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`training_state` returned (the model is changed in place)."""
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.step_count = int(state["step_count"])
        self.total_steps = int(state["total_steps"])
        self.rng.bit_generator.state = int_texts(state["numpy_rng"])
        self.gen.set_state(state["prompt_rng"].to(torch.uint8))
        torch.set_rng_state(state["torch_rng"].to(torch.uint8))
        if state.get("cuda_rng") and self.device.type == "cuda":
            torch.cuda.set_rng_state_all([t.to(torch.uint8) for t in state["cuda_rng"]])
        python = int_texts(state["python_rng"])
        random.setstate((python[0], tuple(python[1]), python[2]))
        self._emb_cache.clear()


def text_ints(obj):
    """Python ints wider than 64 bits as ``{"int": "<decimal>"}`` (torch's safe loader reads
    only 64-bit ints); containers walked, tuples become lists."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (float, str)):
        return obj
    if isinstance(obj, int):
        return {"int": str(obj)} if not -(2**63) <= obj < 2**63 else obj
    if isinstance(obj, dict):
        return {k: text_ints(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [text_ints(v) for v in obj]
    return obj


def int_texts(obj):
    """Undo :func:`text_ints` (lists stay lists)."""
    if isinstance(obj, dict):
        if set(obj) == {"int"}:
            return int(obj["int"])
        return {k: int_texts(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [int_texts(v) for v in obj]
    return obj
