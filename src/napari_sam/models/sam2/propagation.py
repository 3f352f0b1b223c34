"""Propagate objects through a stack with SAM 2's memory, in the model's input frame.

:class:`Sam2Tracker` follows Meta's video predictor, without its frame files: slices come
as (3, S, S) float tensors (already contrast-mapped, resized and normalised by the caller),
and are encoded once each and cached while they can still be used. For every object:

1. each prompted slice is decoded from its prompts alone (clicks and box corners, or a
   mask taken as the output) and its memory is encoded from the thresholded mask;
2. the object is tracked forwards from its first prompted slice to the end of the stack,
   then backwards from there to the first slice; prompted slices keep their own output,
   every other slice attends to the memories of all prompted slices, of the six slices
   before it (in the direction of travel) and to the pointers of up to 15 of them.

Memory stays bounded: a tracked slice's memory (D_mem x E x E, stored in bfloat16 as Meta
does) and its low-resolution mask are dropped once no later step can attend to them, so a
long stack holds at most ``3 * max(num_maskmem, max_object_pointers) + 3`` memories per
object (49 with the official options) whatever its length: those within reach behind the
slice being tracked and those within reach of the object's first prompted slice, where the
backward sweep starts. Only the object pointers (D floats a slice) of every tracked slice
stay. :attr:`Sam2Tracker.peak_memories` records the most held at once.

Slices' image features come from a :class:`~.feature_cache.Sam2FeatureCache` when one is
given (a second run with a correction prompt encodes nothing again), else only the last
encoded slice is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .feature_cache import Sam2FeatureCache
from .memory_bank import FrameOutput, MemoryBank
from .model import ImageFeatures, Sam2Model

__all__ = ["Sam2Prompts", "Sam2Tracker"]


@dataclass
class Sam2Prompts:
    """One object's prompts by slice, in the model input frame.

    Attributes
    ----------
    points : dict of int to (Tensor, Tensor)
        slice -> ((P, 2) (x, y) float, (P,) int labels: 1 positive, 0 negative, 2 and 3
        box corners, which come first).
    masks : dict of int to Tensor
        slice -> (S, S) bool/float mask prompt.
    candidates : dict of int to int
        slice -> which of a single click's three masks starts the object there (0, 1 or 2,
        in the decoder's order); slices without one keep the best scoring.
    """

    points: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)
    masks: dict[int, Tensor] = field(default_factory=dict)
    candidates: dict[int, int] = field(default_factory=dict)

    @property
    def slices(self) -> list[int]:
        return sorted(set(self.points) | set(self.masks))


class Sam2Tracker:
    """Track objects through a stack of slices with a :class:`Sam2Model`.

    Parameters
    ----------
    model : Sam2Model
    slice_image : callable
        ``slice_image(z)`` -> (3, S, S) float tensor, the normalised model input of slice z.
    num_slices : int
    fill_hole_area : int
        Background holes of at most this many low-resolution pixels inside a predicted mask
        are filled (Meta's video predictor uses 8 with its compiled extension and skips the
        step without it); 0 turns it off.
    feature_cache : Sam2FeatureCache, optional
        Where slices' features are looked up before encoding and kept after (bound to the
        stack by the caller).

    Attributes
    ----------
    encoder_calls : int
        Slices encoded by this tracker.
    stopped : dict of (int, str) to (int, str)
        (object id, "up" | "down") -> (slice, reason) where a sweep ended early: "absent"
        or "stop_marker".
    banks : dict of int to MemoryBank
        The objects' memory banks after :meth:`propagate_all`.
    peak_memories : int
        The most tracked-slice memories one object held at once.
    """

    def __init__(self, model: Sam2Model, slice_image: Callable[[int], Tensor],
                 num_slices: int, fill_hole_area: int = 0,
                 feature_cache: Sam2FeatureCache | None = None):
        self.model = model
        self.slice_image = slice_image
        self.num_slices = int(num_slices)
        self.fill_hole_area = int(fill_hole_area)
        self.feature_cache = feature_cache
        self._cache: tuple[int, ImageFeatures] | None = None
        self.encoder_calls = 0
        self.stopped: dict[tuple[int, str], tuple[int, str]] = {}
        self.banks: dict[int, MemoryBank] = {}
        self.peak_memories = 0

    # ------------------------------------------------------------------ features
    def features(self, z: int) -> ImageFeatures:
        """Slice z's encoder output: from the feature cache when it holds it, else encoded
        (the last slice is kept, as propagation moves on)."""
        if self._cache is not None and self._cache[0] == z:
            return self._cache[1]
        found = None if self.feature_cache is None else self.feature_cache.get(z)
        if found is None:
            param = next(self.model.parameters())
            image = self.slice_image(z).to(param.device, param.dtype).unsqueeze(0)
            found = self.model.encode_image(image)
            self.encoder_calls += 1
            if self.feature_cache is not None:
                self.feature_cache.put(z, found)
        self._cache = (z, found)
        return found

    # ------------------------------------------------------------------ steps
    def _store(self, out: FrameOutput) -> FrameOutput:
        """What the bank keeps, as Meta's video predictor: memory features in bfloat16, the
        low-resolution masks (holes filled), not the (B, 1, S, S) high-resolution ones."""
        out.high_res_masks = None
        if out.memory is not None:
            out.memory = out.memory.to(torch.bfloat16)
        if self.fill_hole_area > 0:
            out.low_res_masks = fill_small_holes(out.low_res_masks, self.fill_hole_area)
        return out

    def prompt(self, z: int, prompts: Sam2Prompts) -> FrameOutput:
        """Decode an object's prompts on slice z and encode its memory."""
        model, image = self.model, self.features(z)
        if z in prompts.masks:
            mask = prompts.masks[z].float()[None, None]
            out = model.track_step(z, image, MemoryBank(), mask=mask, starts=True,
                                   num_frames=self.num_slices, encode_memory=False)
        else:
            points, labels = prompts.points[z]
            out = model.track_step(z, image, MemoryBank(), points[None].float(),
                                   labels[None].to(torch.int32), starts=True,
                                   num_frames=self.num_slices, encode_memory=False,
                                   candidate=prompts.candidates.get(z))
        out = self._store(out)
        s = model.config.image_size
        high = torch.nn.functional.interpolate(out.low_res_masks, size=(s, s),
                                               mode="bilinear", align_corners=False)
        memory, position = model.encode_memory(image.features, high, out.object_logits,
                                               from_points=True)
        out.memory, out.memory_position = memory.to(torch.bfloat16), position
        return out

    def track(self, z: int, bank: MemoryBank, reverse: bool) -> FrameOutput:
        """Slice z from memory alone."""
        out = self.model.track_step(z, self.features(z), bank, num_frames=self.num_slices,
                                    reverse=reverse)
        return self._store(out)

    # ------------------------------------------------------------------ propagation
    def propagate(self, prompts: Sam2Prompts) -> Iterator[tuple[int, FrameOutput]]:
        """One object: yield (slice, output) for every slice (see :meth:`propagate_all`)."""
        for z, _, out in self.propagate_all({1: prompts}):
            yield z, out

    def propagate_all(self, objects: dict[int, Sam2Prompts],
                      stop_after_absent: int | None = None,
                      stops: dict[int, list[int]] | None = None
                      ) -> Iterator[tuple[int, int, FrameOutput]]:
        """Yield (slice, object id, output): first every prompted slice, then one sweep
        forwards and one backwards in which each slice is encoded once for all objects.

        An object is tracked forwards from its first prompted slice to the end of the stack
        and backwards from there to the first slice (its own prompted slices keep their
        outputs). With ``stop_after_absent`` = N, an object's sweep in a direction ends
        after N tracked slices in a row where the model says the object is absent
        (:attr:`stopped` records where and why). ``stops`` = {object id: slices} ends an
        object's sweep before each of its stop-marker slices (reason "stop_marker").
        """
        for oid, p in objects.items():
            if not p.slices:
                raise ValueError(f"object {oid} has no prompts: give at least one click, "
                                 "box or mask on one slice")
        banks = {oid: MemoryBank() for oid in objects}
        for z in sorted(set().union(*(p.slices for p in objects.values()))):
            for oid, p in objects.items():
                if z in p.points or z in p.masks:
                    banks[oid].prompted[z] = self.prompt(z, p)
                    yield z, oid, banks[oid].prompted[z]
        starts = {oid: p.slices[0] for oid, p in objects.items()}
        self.stopped, self.banks, self.peak_memories = {}, banks, 0
        stops = {oid: set((stops or {}).get(oid, ())) for oid in objects}
        for reverse in (False, True):
            yield from self._sweep(objects, banks, starts, reverse, stop_after_absent, stops)

    def _sweep(self, objects, banks, starts, reverse: bool, stop_after_absent, stops):
        """One direction for all objects, slice by slice."""
        direction = "down" if reverse else "up"
        order = range(max(starts.values()), -1, -1) if reverse \
            else range(min(starts.values()), self.num_slices)
        absent = {oid: 0 for oid in objects}
        for z in order:
            for oid in objects:
                if (z > starts[oid]) if reverse else (z < starts[oid]):
                    continue  # not reached yet in this direction
                if (oid, direction) in self.stopped or z in banks[oid].prompted:
                    absent[oid] = 0
                    continue
                if z in stops[oid]:
                    self.stopped[(oid, direction)] = (z, "stop_marker")
                    continue
                banks[oid].tracked[z] = out = self.track(z, banks[oid], reverse)
                self._forget(banks[oid], z, reverse, objects[oid].slices)
                held = sum(o.memory is not None for o in banks[oid].tracked.values())
                self.peak_memories = max(self.peak_memories, held)
                absent[oid] = absent[oid] + 1 if float(out.object_logits.max()) <= 0 else 0
                if stop_after_absent and absent[oid] >= stop_after_absent:
                    self.stopped[(oid, direction)] = (z, "absent")
                yield z, oid, out

    def _forget(self, bank: MemoryBank, z: int, reverse: bool, prompted: list[int]):
        """Drop the memories and masks of tracked slices no later step can attend to
        (pointers stay: they are small and a later step within reach may use them); the
        caller has had each slice's output when it was yielded."""
        reach = max(self.model.config.num_maskmem, self.model.config.max_object_pointers)
        start = prompted[0]
        for t, out in bank.tracked.items():
            if out.memory is None:
                continue
            behind = (t > z + reach) if reverse else (t < z - reach)
            near_start = abs(t - start) <= reach
            if behind and not near_start:  # only its pointer (D floats) stays
                out.memory = out.memory_position = out.low_res_masks = None


def fill_small_holes(mask_logits: Tensor, max_area: int) -> Tensor:
    """Set background components (logit <= 0, 8-connected) of at most ``max_area`` pixels
    to 0.1 (foreground): (B, 1, H, W) -> (B, 1, H, W)."""
    from skimage.measure import label

    out = mask_logits.clone()
    for b in range(out.shape[0]):
        background = (out[b, 0] <= 0).cpu().numpy()
        labels = label(background, connectivity=2)
        if labels.max() == 0:
            continue
        areas = torch.bincount(torch.from_numpy(labels).flatten())
        small = torch.from_numpy(labels) > 0
        small &= areas[torch.from_numpy(labels)] <= max_area
        out[b, 0][small.to(out.device)] = 0.1
    return out
