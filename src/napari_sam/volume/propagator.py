"""The propagator: carries objects slice by slice through a stack, all objects together.

Owns :class:`Propagator`: segmenting the annotated slices (drawn masks as they are, the other
prompts in one decoder call per kind of prompt), the up and down sweeps that prompt each
slice from the previous slice's masks (one batched call per slice whatever the number of
objects), the per-slice step (decode, exclusive masks, IoU with the previous mask, contrast
rules, verdict) and the contrast references the fade and rebound rules judge by. Stop rules
are in :mod:`napari_sam.volume.stop_rules` and :mod:`napari_sam.volume.claims`; chains in
:mod:`napari_sam.volume.chains`; labels in :mod:`napari_sam.volume.records`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
import torch

from napari_sam.edge_threshold import edge_aligned_masks, edge_map
from napari_sam.predictor import no_click_cache
from napari_sam.progress import IncreasingProgress
from napari_sam.prompts import (
    MASK_PROMPT_LOGIT,
    PromptKind,
    clip_box,
    group_by_kind,
    low_res_scale,
    mask_to_logits,
    pad_points,
    stack_prompts,
    upsample_logits,
)
from napari_sam.volume.annotations import Annotation
from napari_sam.volume.chains import Chain, ChainState, make_chains, pending_slices
from napari_sam.volume.claims import resolve_claims
from napari_sam.volume.mask_prompts import (
    box_from_mask,
    center_from_mask,
    mask_stats,
    points_from_mask,
    shift_pixels,
)
from napari_sam.volume.records import Record, compose_labels
from napari_sam.volume.stop_rules import REBOUND_SLICES, contrast_and_error, stop_reason
from napari_sam.words import counted

__all__ = ["Propagator", "best_candidates"]

_USER_LOGIT = 1.0e4  # full-resolution "logit" of a mask the user gave: always wins overlaps
# added to the logits of masks decoded from the user's prompts on their own slice: there they
# outrank masks propagated into that slice from other slices (but not drawn masks)
_ANNOTATED_OFFSET = 1.0e3


class Propagator:
    """Carries every object through the stack: segments the annotated slices, then sweeps up
    and down decoding all live chains of a slice together, judging each new mask by the stop
    rules; keeps the accepted masks (:attr:`records`) for the labels.

    Used by :func:`napari_sam.segment_volume` in this order: :meth:`annotate`,
    :meth:`make_chains`, :meth:`sweep` up and down (at once where they are independent:
    :func:`napari_sam.volume.sweeps.run_sweeps`), :meth:`resolve_claims`, :meth:`compose`.
    The keyword arguments are segment_volume's (resolved: no "auto").
    """

    def __init__(self, emb, objects, *, predictor, mode, motion, min_area, iou_threshold,
                 area_factor, min_score, max_slices, exclusive, progress,
                 fade_fraction=None, claimed_fraction=None, rebound_fraction=None,
                 rebound_noise=None, seed_edges=False):
        self.emb = emb
        self.objects = objects
        self.pred = predictor
        self.mode = mode
        self.motion = motion
        self.rules = dict(min_area=min_area, iou_threshold=iou_threshold,
                          area_factor=area_factor, min_score=min_score)
        self.claimed_fraction = claimed_fraction
        # the fade rule needs the images: embeddings from napari_sam.embed keep their stack
        self.stack = getattr(emb, "stack", None)
        self.fade_fraction = fade_fraction if self.stack is not None else None
        self.rebound_fraction = rebound_fraction if self.stack is not None else None
        self.rebound_noise = rebound_noise
        #: cut the annotated slices' masks on the image's edges (segment_volume's boundary)
        self.seed_edges = bool(seed_edges) and self.stack is not None
        # the planes the rules measure, scaled to the contrast limits (0-1): a float64 stack
        # of values beyond float32's range (1e40) became inf, and every object ran through
        # the whole stack; contrasts are compared as ratios, so the scale changes no rule
        limits = getattr(emb, "contrast_limits", None)
        lo, hi = (None, None) if limits is None else (float(limits[0]), float(limits[1]))
        self._scaling = (lo, 1.0 / (hi - lo)) if limits is not None and np.isfinite(
            hi - lo) and hi > lo else None
        self.intensity_span = (None if limits is None
                               else 1.0 if self._scaling is not None else hi - lo)
        # each thread's last slice read (:meth:`_plane`): the sweeps may run in two threads
        self._planes = threading.local()
        self.max_slices = max_slices
        self.exclusive = exclusive
        self.progress = progress
        # counted in object-slices (Z per object), so that every slice carried reports (a
        # callback that cancels by raising, the dock's, gets its chance on every slice)
        self._counter = None if progress is None else IncreasingProgress(
            progress, int(emb.shape[0]) * max(1, len(objects)))
        self.chains: list[Chain] = []
        self.n_slices, self.h, self.w = (int(s) for s in emb.shape)
        self.img_size = int(predictor.img_size)
        self.low_res = int(predictor.low_res_size)
        self.thr = float(getattr(getattr(predictor, "model", None), "mask_threshold", 0.0))
        self.device = torch.device(getattr(predictor, "device", "cpu"))
        self.records: dict[tuple[int, int], Record] = {}
        # slices from the annotated slice of the chain that made a record (0: annotated)
        self.distance: dict[tuple[int, int], int] = {}
        self.chain_of: dict[tuple[int, int], Chain] = {}
        self.seeds: dict[tuple[int, int], ChainState] = {}
        #: (object index, annotated slice) -> its seed's reference contrast, measured once
        self._seed_contrasts: dict[tuple[int, int], tuple[float, float]] = {}
        #: (object index, annotated slice) -> the model's own mask for a drawn mask: what its
        #: contrast references are measured on (a drawn mask is not what propagation decodes)
        self._reference_masks: dict[tuple[int, int], np.ndarray] = {}
        self.calls_per_slice = np.zeros(self.n_slices, np.int64)
        self.decoder_calls = 0
        self._count_lock = threading.Lock()

    # ----------------------------------------------------------------- decoding
    def _decode(self, z: int, **prompts) -> tuple[torch.Tensor, torch.Tensor]:
        """One batched decoder call on slice z -> (logits (N, C, 4E, 4E), scores (N, C))."""
        out = self.pred.predict_batch(embedding=self.emb[z], upsample=False, **prompts)
        with self._count_lock:
            self.calls_per_slice[z] += 1
            self.decoder_calls += 1
        return out.logits.float(), out.scores.float()

    def _masks(self, full: np.ndarray, distance: np.ndarray | None = None,
               edges: np.ndarray | None = None) -> np.ndarray:
        """(N, H, W) logits of objects decoded together -> masks (cut at the model's
        threshold, or on ``edges``, an :func:`~napari_sam.edge_threshold.edge_map`); with
        ``exclusive``, a pixel claimed by several of them stays only with the one nearest
        its annotated slice (``distance`` (N,), in slices; default all equal), then with the
        highest logit there (ties: all)."""
        masks = (full > self.thr if edges is None else
                 np.stack([edge_aligned_masks(f[None], edges)[0][0] for f in full]))
        if self.exclusive and len(full) > 1:
            if distance is not None and np.ptp(distance) > 0:
                d = np.where(masks, np.asarray(distance, np.float32)[:, None, None], np.inf)
                masks &= d <= d.min(0)
            top = np.where(masks, full, -np.inf).max(0)
            masks &= full >= top
        return masks

    def _full(self, logits: torch.Tensor, emb) -> np.ndarray:
        """(N, 4E, 4E) low-resolution logits -> (N, H, W) float32 numpy logits."""
        return upsample_logits(logits, emb, self.img_size).cpu().numpy()

    def _plane(self, z: int) -> np.ndarray:
        """Slice z of the stack as float32 (Y, X), channels averaged, scaled to the contrast
        limits (0-1) where known; each thread keeps its last one."""
        last = getattr(self._planes, "last", None)
        if last is None or last[0] != z:
            if self._scaling is None:
                img = np.asarray(self.stack[z], np.float32)
                img = img.mean(-1) if img.ndim == 3 else img
            else:  # one float64 plane, scaled in place (an 8192² RGB slice: no 2 GB spikes)
                lo, scale = self._scaling
                img = np.array(self.stack[z], np.float64)
                img = img.mean(-1) if img.ndim == 3 else img
                img -= lo
                img *= scale
                img = img.astype(np.float32)
            last = self._planes.last = (z, img)
        return last[1]

    def _reference_contrast(self, z: int, mask: np.ndarray) -> tuple[float, float]:
        """Contrast of a chain's starting mask and its standard error; NaN where it is too
        faint to judge fading by (below 2 % of the stack's intensity range)."""
        c, e = (float(v[0]) for v in contrast_and_error(self._plane(z), mask))
        span = self.intensity_span
        if span is None or not span > 0:
            img = self._plane(z)
            finite = img[np.isfinite(img)]  # NaN pixels made the span, so every reference, NaN
            span = float(finite.max() - finite.min()) if finite.size else 0.0
        return (c, e) if np.isfinite(c) and abs(c) >= 0.02 * span else (float("nan"), 0.0)

    def _seed_contrast(self, k: int, z: int, error: bool = False):
        """Reference contrast of object k's seed mask on its annotated slice z (NaN where it
        has none or is too faint), measured once per seed, on the model's own mask where the
        user drew one; with ``error``, (contrast, standard error)."""
        key = (k, z)
        if key not in self._seed_contrasts:
            seed = self.seeds.get(key)
            mask = self._reference_masks.get(key, None if seed is None else seed.mask)
            self._seed_contrasts[key] = (
                (float("nan"), 0.0) if seed is None or seed.area == 0 or not mask.any()
                else self._reference_contrast(z, mask))
        return self._seed_contrasts[key] if error else self._seed_contrasts[key][0]

    def _chain_reference(self, c: Chain) -> float:
        """The contrast a chain's fading is judged against: the object's strongest contrast
        over its annotated slices (in the sign of the chain's own), but never more than the
        chain's own starting contrast / fade_fraction, so that a slice as contrasted as the
        annotated slice the chain starts from never counts as faded. With one annotated slice
        this is that slice's contrast. NaN (no rule) where the start is too faint to judge."""
        start = self._seed_contrast(c.k, c.start)
        if not np.isfinite(start) or not self.fade_fraction:
            return start
        same_sign = [abs(r) for r in (self._seed_contrast(c.k, z)
                                      for z in self.objects[c.k].annotations)
                     if np.isfinite(r) and np.sign(r) == np.sign(start)]
        strongest = max(same_sign)  # the start itself is among them
        return float(np.sign(start) * min(strongest, abs(start) / self.fade_fraction))

    def _accept(self, z: int, ks: Sequence[int], full: np.ndarray, scores: np.ndarray,
                masks: np.ndarray, boxes: np.ndarray, offset: float = 0.0) -> None:
        """Keep cropped full-resolution logits of accepted masks for the final composition
        (``offset`` ranks masks from annotations above propagated ones)."""
        for i, k in enumerate(ks):
            r0, c0, r1, c1 = boxes[i].astype(int)
            win = (i, slice(r0, r1 + 1), slice(c0, c1 + 1))
            crop = np.where(masks[win], full[win] + offset, -np.inf).astype(np.float32)
            self.records[(k, z)] = Record(r0, c0, crop, float(scores[i]))
            self.distance[(k, z)] = 0

    # ----------------------------------------------------------------- annotated slices
    def annotate(self) -> None:
        """Segment every object on its annotated slices: these masks seed the chains."""
        by_slice: dict[int, list[tuple[int, Annotation]]] = {}
        for k, obj in enumerate(self.objects):
            for z, ann in obj.annotations.items():
                by_slice.setdefault(z, []).append((k, ann))
        for z in sorted(by_slice):
            self._annotate_slice(z, by_slice[z])

    def _annotate_slice(self, z: int, items: list[tuple[int, Annotation]]) -> None:
        """Drawn masks are taken as they are; the other prompts are decoded, one call per
        kind of prompt."""
        emb = None
        drawn = []
        for k, ann in items:
            if ann.mask_only:
                emb = emb or self.emb[z]
                drawn.append(self._seed_drawn(z, k, ann.mask, emb))
        if drawn and (self.fade_fraction is not None or self.rebound_fraction is not None):
            self._drawn_references(z, emb, drawn)
        groups = group_by_kind((ann.kind, (k, ann)) for k, ann in items if not ann.mask_only)
        for kind, group in sorted(groups.items()):
            emb = emb or self.emb[z]
            self._decode_annotations(z, emb, kind, group)

    def _seed_drawn(self, z: int, k: int, mask: np.ndarray, emb) -> tuple:
        """Seed object k on slice z with the (Y, X) mask the user drew; returns
        (k, mask, its (4E, 4E) low-resolution logits)."""
        low = mask_to_logits(mask, emb.original_size, emb.input_size,
                             self.img_size, self.low_res).to(self.device)
        full = np.full((1, *mask.shape), _USER_LOGIT, np.float32)
        self._seed(z, [k], mask[None], low[None], np.ones(1), full)
        return k, mask, low

    def _decode_annotations(self, z: int, emb, kind: PromptKind,
                            items: list[tuple[int, Annotation]]) -> None:
        """Seed the objects ``items`` of one kind of prompt on slice z in one decoder call
        (the best scoring candidate of each, or the one its annotation chose)."""
        ks = [k for k, _ in items]
        anns = [a for _, a in items]
        # float32 as the dock's preview decodes them (annotation.decode_slice): the same
        # prompt gives the same logits, so Propagate starts from the mask the preview showed
        kw = stack_prompts(kind, [a.points for a in anns], [a.labels for a in anns],
                           [a.box for a in anns], dtype=np.float32)
        if kind.mask:
            kw["mask_inputs"] = mask_to_logits(
                np.stack([a.mask for a in anns]), emb.original_size,
                emb.input_size, self.img_size, self.low_res)
        logits, scores = best_candidates(*self._decode(z, multimask=kind.multimask, **kw),
                                         chosen=[a.candidate for a in anns])
        full = self._full(logits, emb)
        # the slice as the dock's preview cuts it (annotation.slice_edges)
        edges = edge_map(np.asarray(self.stack[z])) if self.seed_edges else None
        self._seed(z, ks, self._masks(full, edges=edges), logits, scores.cpu().numpy(), full)

    def _drawn_references(self, z: int, emb, drawn: list) -> None:
        """The contrast references of drawn masks are measured on the mask the model decodes
        from them (their box and mask, as propagation prompts the next slice): a drawn mask
        is often larger than the model's masks, whose 3-pixel ring then falls on the object's
        edge, so a reference from the drawn mask would be higher than any propagated mask
        could show, and the fade rule would stop the chain at once."""
        boxes = np.stack([box_from_mask(m) for _, m, _ in drawn])
        low = torch.stack([lw for _, _, lw in drawn])
        logits, _ = self._decode(z, multimask=False, boxes=boxes, mask_inputs=low)
        masks = self._full(logits[:, 0], emb) > self.thr
        for (k, _, _), m in zip(drawn, masks):
            self._reference_masks[(k, z)] = m

    def _seed(self, z, ks, masks, lowres, scores, full) -> None:
        area, boxes, cents = mask_stats(masks)
        for i, k in enumerate(ks):
            self.seeds[(k, z)] = ChainState(masks[i], lowres[i], float(area[i]),
                                        None if area[i] == 0 else boxes[i],
                                        None if area[i] == 0 else cents[i])
        ok = [i for i in range(len(ks)) if area[i] > 0]
        if ok:
            self._accept(z, [ks[i] for i in ok], full[ok], scores[ok], masks[ok], boxes[ok],
                         offset=_ANNOTATED_OFFSET)

    # ----------------------------------------------------------------- chains
    def make_chains(self) -> tuple[list[Chain], list[Chain]]:
        """The up and down chains of every object (:func:`make_chains`)."""
        up, down = make_chains(self.objects, self.n_slices)
        self.chains = up + down
        return up, down

    def report_progress(self, finish: bool = False) -> None:
        """``progress(done, Z x objects)``: the slices each object has been carried through
        or no chain of it may fill any more (an annotated slice, a stopped chain's far side),
        summed over the objects (one object: the stack's slices); it only grows, by at least
        one for every slice a chain is carried onto, each value once, and ends at the total
        (``finish``, or every chain stopped)."""
        if self._counter is None:
            return
        if finish:
            self._counter.finish()
            return
        left = sum(pending_slices(c) for c in self.chains)
        self._counter(self._counter.total - left)

    def start_sweep(self, chains: list[Chain]) -> None:
        """Put each chain on its seed and measure what the contrast rules judge it by (or
        give it its stop reason where it cannot run). A down chain with a partner reads
        where its partner ended: start it after the up sweep."""
        for c in chains:
            direction = c.direction
            c.state = self.seeds[(c.k, c.start)]
            c.last = c.start
            if c.partner is not None:  # meet the up chain where it ended
                c.bound = max(c.bound, c.partner.last + 1)
            if c.state.area == 0:
                c.reason = "vanished"
            elif c.bound * direction <= c.start * direction:
                c.reason = c.bound_reason
            elif self.fade_fraction is not None or self.rebound_fraction is not None:
                c.ref_contrast = self._chain_reference(c)
                start, err = self._seed_contrast(c.k, c.start, error=True)
                c.peak_contrast = c.low_contrast = abs(start)
                c.peak_error = c.low_error = err
                c.low_slice = c.start

    def sweep(self, chains: list[Chain], direction: int,
              report: Callable[[int], None] | None = None, started: bool = False) -> None:
        """Carry ``chains`` (all of one ``direction``, +1 up, -1 down) slice by slice
        through the stack. After each slice ``report(slices swept)`` is called (default:
        :meth:`report_progress`); ``started``: :meth:`start_sweep` ran already."""
        if not started:
            self.start_sweep(chains)
        if report is None and self.progress is not None:
            def report(_swept):
                self.report_progress()
        zs = range(self.n_slices) if direction > 0 else range(self.n_slices - 1, -1, -1)
        with no_click_cache():  # the same masks whatever was decoded before (and alongside)
            self._sweep_slices(chains, direction, zs, report)
        for c in chains:
            if c.alive:
                c.reason = c.bound_reason

    def _sweep_slices(self, chains: list[Chain], direction: int, zs: range,
                      report: Callable[[int], None] | None) -> None:
        """The slices ``zs`` of a sweep, each with the chains live there."""
        for i, z in enumerate(zs):
            live = []
            for c in chains:
                if not c.alive or (z - c.start) * direction <= 0:
                    continue
                if (z - c.bound) * direction > 0:
                    c.reason = c.bound_reason
                elif self.max_slices is not None and c.steps >= self.max_slices:
                    c.reason = "max_slices"
                else:
                    live.append(c)
            if live:
                self._step(z, live, direction)
            if report is not None:
                report(i + 1)

    def _prompts(self, live: list[Chain], shifts: np.ndarray, emb) -> dict:
        """Decoder prompts for the next slice from each chain's last mask."""
        mode = self.mode
        h, w = self.h, self.w
        kw = {}
        if mode in ("box", "box+mask"):
            boxes = np.stack([c.state.box for c in live]) + np.tile(shifts, 2)
            kw["boxes"] = clip_box(boxes, (h, w))
        if mode == "box+mask":
            low = torch.stack([c.state.lowres for c in live])
            if shifts.any():
                scale = low_res_scale(emb, self.img_size, self.low_res)
                low = torch.stack([
                    shift_pixels(low[i], *np.round(shifts[i] * scale).astype(int).tolist(),
                                 fill=-MASK_PROMPT_LOGIT)
                    for i in range(len(live))
                ])
            kw["mask_inputs"] = low
        if mode == "center":
            pts = np.stack([center_from_mask(c.state.mask) for c in live])
            pts = np.clip(pts + shifts, 0, [h - 1, w - 1])
            kw.update(points=pts[:, None], labels=np.ones((len(live), 1), np.int64))
        if mode == "points":
            derived = [points_from_mask(c.state.mask) for c in live]
            kw["points"], kw["labels"] = pad_points(
                [np.clip(pp + shifts[i], 0, [h - 1, w - 1]) for i, (pp, _) in enumerate(derived)],
                [ll for _, ll in derived])
        return kw

    def _decode_live(self, z: int, live: list[Chain], shifts: np.ndarray, emb):
        """Decode the next masks of ``live`` chains on slice z: one call, and a second one for
        the chains whose object has negative points on z (added to their propagated prompts;
        kept apart so that the padding they need never changes the others' prompts)."""
        # a single centre point is ambiguous: keep the best of three candidates
        multi = self.mode == "center"
        neg = [i for i, c in enumerate(live) if z in self.objects[c.k].negatives]
        if not neg:
            return self._decode(z, multimask=multi, **self._prompts(live, shifts, emb))
        plain = [i for i in range(len(live)) if i not in set(neg)]
        out_l, out_s = [None] * len(live), [None] * len(live)
        for group, add in ((plain, False), (neg, True)):
            if not group:
                continue
            kw = self._prompts([live[i] for i in group], shifts[group], emb)
            if add:
                kw = self._add_negatives(z, [live[i] for i in group], kw)
            lg, sc = self._decode(z, multimask=multi, **kw)
            for j, i in enumerate(group):
                out_l[i], out_s[i] = lg[j], sc[j]
        return torch.stack(out_l), torch.stack(out_s)

    def _add_negatives(self, z: int, chains: list[Chain], kw: dict) -> dict:
        """The objects' negative points on slice z appended to the chains' point prompts."""
        negs = [self.objects[c.k].negatives[z] for c in chains]
        zeros = [np.zeros(len(x), np.int64) for x in negs]
        old_p, old_l = kw.get("points"), kw.get("labels")
        if old_p is not None:
            negs = [np.concatenate([old_p[i], x]) for i, x in enumerate(negs)]
            zeros = [np.concatenate([old_l[i], x]) for i, x in enumerate(zeros)]
        pts, lab = pad_points(negs, zeros)
        kw.update(points=pts, labels=lab)
        return kw

    def _step(self, z: int, live: list[Chain], direction: int) -> None:
        """Carry the ``live`` chains onto slice z: decode, judge by the stop rules, keep the
        accepted masks."""
        n = len(live)
        shifts = self._motion_shifts(live)
        emb = self.emb[z]
        logits, scores = best_candidates(*self._decode_live(z, live, shifts, emb))
        full = self._full(logits, emb)
        masks = self._masks(full, np.array([c.steps + 1 for c in live]))
        area, boxes, cents = mask_stats(masks)
        iou = self._iou_with_previous(live, masks, area, shifts)
        prev_area = np.array([c.state.area for c in live])
        sc = scores.cpu().numpy()
        fade, con, err = self._contrast_rules(z, live, masks, area)
        reasons = stop_reason(area, prev_area, iou, sc, **self.rules, **fade)
        for i, c in enumerate(live):
            reasons[i] = self._judge(c, str(reasons[i]))
            if reasons[i]:
                continue
            if c.rises == 0 and np.isfinite(con[i]):
                c.track_contrast(float(con[i] * np.sign(c.ref_contrast)), z, float(err[i]))
            c.state = ChainState(masks[i], logits[i], float(area[i]), boxes[i], cents[i],
                                 prev_centroid=c.state.centroid)
            c.last = z
            c.steps += 1
        ok = [i for i in range(n) if not reasons[i]]
        if ok:
            self._accept(z, [live[i].k for i in ok], full[ok], sc[ok], masks[ok], boxes[ok])
            for i in ok:
                key = (live[i].k, z)
                self.distance[key] = live[i].steps
                self.chain_of[key] = live[i]

    def _motion_shifts(self, live: list[Chain]) -> np.ndarray:
        """(N, 2) (row, col) shift of each chain's prompts: its centroid's last motion where
        ``motion`` is on, else zeros."""
        shifts = np.zeros((len(live), 2))
        if self.motion:
            for i, c in enumerate(live):
                if c.state.prev_centroid is not None:
                    shifts[i] = c.state.centroid - c.state.prev_centroid
        return shifts

    @staticmethod
    def _iou_with_previous(live: list[Chain], masks: np.ndarray, area: np.ndarray,
                           shifts: np.ndarray) -> np.ndarray:
        """(N,) IoU of each new (H, W) mask with its chain's previous mask (moved by its
        shift)."""
        n = len(live)
        prev = np.stack([c.state.mask for c in live])
        if shifts.any():
            ishift = np.round(shifts).astype(int)
            prev = np.stack([shift_pixels(prev[i], *ishift[i].tolist(), fill=False)
                             for i in range(n)])
        inter = np.count_nonzero((masks & prev).reshape(n, -1), axis=1)
        union = area + np.count_nonzero(prev.reshape(n, -1), axis=1) - inter
        return np.where(union > 0, inter / np.maximum(union, 1), 0.0)

    def _contrast_rules(self, z: int, live: list[Chain], masks: np.ndarray, area: np.ndarray):
        """The fade and rebound rules' arguments of :func:`stop_reason` for the new masks
        (empty where both rules are off), their contrasts (N,) and standard errors (N,)."""
        n = len(live)
        con = np.full(n, np.nan)
        err = np.zeros(n)
        if self.fade_fraction is None and self.rebound_fraction is None:
            return {}, con, err
        ref = np.array([c.ref_contrast for c in live])
        judged = np.flatnonzero(np.isfinite(ref) & (area > 0))
        if judged.size:
            con[judged], err[judged] = contrast_and_error(self._plane(z), masks[judged])
        fade = dict(contrast=con, ref_contrast=ref, fade_fraction=self.fade_fraction,
                    peak_contrast=np.array([c.peak_contrast for c in live]),
                    low_contrast=np.array([c.low_contrast for c in live]),
                    rebound_fraction=self.rebound_fraction, contrast_error=err,
                    peak_error=np.array([c.peak_error for c in live]),
                    low_error=np.array([c.low_error for c in live]),
                    rebound_noise=self.rebound_noise)
        return fade, con, err

    def _judge(self, c: Chain, reason: str) -> str:
        """The chain's verdict on the new slice ("" accepted): a rebound counts only when it
        holds on REBOUND_SLICES slices in a row; a chain that stops gets its reason (and a
        rebounded one is cut back to its dimmest slice)."""
        if reason == "rebounded":
            c.rises += 1
            if c.rises < REBOUND_SLICES:
                reason = ""  # kept until the next slice confirms the rise
        elif not reason:
            c.rises = 0
        if reason:
            c.reason = reason
            if reason == "rebounded":
                self._cut_back(c)
        return reason

    def _cut_back(self, c: Chain) -> None:
        """Drop a chain's slices beyond its dimmest one (where one object ends and the next
        begins)."""
        for z in range(c.low_slice + c.direction, c.last + c.direction, c.direction):
            key = (c.k, z)
            if self.chain_of.get(key) is c:
                del self.records[key], self.distance[key], self.chain_of[key]
        c.last = c.low_slice
    # ----------------------------------------------------------------- after the sweeps
    def resolve_claims(self) -> None:
        """Apply the claimed rule to the accepted masks (:func:`resolve_claims`)."""
        resolve_claims(self.records, self.distance, self.chain_of, self.claimed_fraction)

    def compose(self) -> np.ndarray:
        """(Z, Y, X) labels from the accepted masks (:func:`compose_labels`)."""
        return compose_labels(self.records, self.distance, [o.id for o in self.objects],
                              (self.n_slices, self.h, self.w))


def best_candidates(logits: torch.Tensor, scores: torch.Tensor, chosen=None):
    """The best scoring candidate of each object, or the one ``chosen``: (N, C, 4E, 4E)
    logits and (N, C) scores -> (N, 4E, 4E) and (N,). ``chosen``: None, or N candidate
    indices, None where the best scoring is kept (a single click's Shift+M choice)."""
    best = scores.argmax(1)
    if chosen is not None and any(c is not None for c in chosen):
        best = best.clone()
        for i, c in enumerate(chosen):
            if c is not None:
                if not 0 <= int(c) < scores.shape[1]:
                    raise ValueError(f"candidate {c} of object {i}: the decoder gave "
                                     f"{counted(scores.shape[1], 'candidate')} for its "
                                     "prompt")
                best[i] = int(c)
    idx = torch.arange(len(best), device=best.device)
    return logits[idx, best], scores[idx, best]
