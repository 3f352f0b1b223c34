"""What :func:`napari_sam.segment_volume` returns.

Owns :class:`VolumeResult` (labels, per-slice scores, stop reasons, slice ranges, chains,
decoder-call counts, lost objects) and :func:`build_result`, which reads it off the
propagation: an object is on a slice only where the composed labels hold it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from napari_sam.volume.annotations import ObjectPrompts
from napari_sam.volume.chains import Chain
from napari_sam.volume.records import Record
from napari_sam.words import counted

__all__ = ["LostObjectsWarning", "VolumeResult", "build_result", "lost_notes", "warn_lost"]


class LostObjectsWarning(UserWarning):
    """Objects asked for that ended with no voxel in the labels (``VolumeResult.lost`` says
    why). Warned by :func:`napari_sam.segment_volume` and
    :func:`napari_sam.sam2_volume.segment_volume_sam2`; the dock and the CLI say it in their
    own words and silence it (``warnings.simplefilter("ignore", LostObjectsWarning)``)."""


def lost_notes(lost: dict[int, str]) -> list[str]:
    """One sentence per reason in ``lost`` ({id: why}), naming the ids:
    ``"objects [2] are not in the labels: <why>"``."""
    by_reason: dict[str, list[int]] = {}
    for oid, why in lost.items():
        by_reason.setdefault(why, []).append(oid)
    return [f"objects {sorted(ids)} are not in the labels: {why}"
            for why, ids in by_reason.items()]


def warn_lost(lost: dict[int, str], stacklevel: int = 2) -> None:
    """One :class:`LostObjectsWarning` per sentence of :func:`lost_notes`."""
    for note in lost_notes(lost):
        warnings.warn(f"{note} (see VolumeResult.lost)", LostObjectsWarning,
                      stacklevel=stacklevel + 1)


@dataclass
class VolumeResult:
    """Result of :func:`segment_volume`.

    Attributes
    ----------
    labels : numpy.ndarray (Z, Y, X)
        Object ids as given (0 background); the smallest unsigned dtype that holds them.
    scores : dict[int, dict[int, float]]
        ``scores[id][z]``: predicted IoU of the object's mask on slice z (1.0 for masks the
        user gave), for the slices where the object is in ``labels``.
    stop_reasons : dict[int, dict[str, str]]
        ``stop_reasons[id] = {"up": reason, "down": reason}``: why propagation ended above
        the object's highest annotated slice ("up", increasing index) and below its lowest
        ("down"); keys of :data:`STOP_REASONS`. Only objects present in ``labels``.
    slice_range : dict[int, tuple[int, int]]
        ``(first, last)`` slice (inclusive) on which the object is in ``labels``.
    chains : list[dict]
        Every propagation run: ``{"id", "direction", "start", "last", "reason"}`` including
        the runs that fill gaps between annotated slices.
    decoder_calls : int
        Batched decoder calls made.
    calls_per_slice : numpy.ndarray (Z,) int
        Decoder calls made on each slice.
    lost : dict[int, str]
        Objects given prompts that are nowhere in ``labels`` (every pixel of their masks went
        to other objects), with the reason; they are in none of the dicts above, and
        :func:`segment_volume` warns about them.
    """

    labels: np.ndarray
    scores: dict[int, dict[int, float]]
    stop_reasons: dict[int, dict[str, str]]
    slice_range: dict[int, tuple[int, int]]
    chains: list[dict] = field(default_factory=list)
    decoder_calls: int = 0
    calls_per_slice: np.ndarray | None = None
    lost: dict[int, str] = field(default_factory=dict)

    @property
    def object_ids(self) -> list[int]:
        return sorted(self.stop_reasons)

    def __array__(self, dtype=None, copy=None):
        return self.labels if dtype is None else self.labels.astype(dtype)

    def __repr__(self) -> str:  # one line, not the arrays (a notebook cell's last line)
        n, lab = len(self.stop_reasons), np.asarray(self.labels)
        lost = f", {len(self.lost)} lost" if self.lost else ""
        return (f"VolumeResult({counted(n, 'object')}{lost}, labels {tuple(lab.shape)} "
                f"{lab.dtype}, {self.decoder_calls} decoder calls)")


def build_result(labels: np.ndarray, records: dict[tuple[int, int], Record],
                 objects: list[ObjectPrompts], up: list[Chain], down: list[Chain],
                 decoder_calls: int, calls_per_slice: np.ndarray, warn: bool = True
                 ) -> VolumeResult:
    """The :class:`VolumeResult` of a finished propagation.

    Parameters
    ----------
    labels : numpy.ndarray (Z, Y, X)
        The composed labels.
    records : dict (object index, slice) -> Record
        The accepted masks that went into ``labels``.
    objects : list of ObjectPrompts
        The objects, by index.
    up, down : list of Chain
        Every chain of the two sweeps.
    decoder_calls : int
    calls_per_slice : numpy.ndarray (Z,) int
    warn : bool
        Warn about the lost objects (False: ``VolumeResult.lost`` only).

    Warns
    -----
    LostObjectsWarning
        For objects that are not in the labels (``VolumeResult.lost`` says why): their
        masks lost every pixel to other objects, or the model gave none.
    """
    ids = [o.id for o in objects]
    present = _slices_present(labels, records, ids)
    scores: dict[int, dict[int, float]] = {i: {} for i in ids if present[i]}
    for (k, z), rec in sorted(records.items(), key=lambda t: t[0][1]):
        if z in present[ids[k]]:
            scores[ids[k]][z] = rec.score
    slice_range = {i: (min(z), max(z)) for i, z in present.items() if z}
    decoded = {ids[k] for k, _ in records}  # objects the model gave a mask with pixels
    reasons, lost = _stop_reasons(objects, present, up, down, decoded)
    if warn:
        warn_lost(lost, stacklevel=4)  # build_result, segment_volume, its wrapper: the caller
    chains = [
        {"id": ids[c.k], "direction": "up" if c.direction > 0 else "down", "start": c.start,
         "last": c.last, "reason": c.reason}
        for c in up + down
    ]
    return VolumeResult(labels, scores, reasons, slice_range, chains, decoder_calls,
                        calls_per_slice, lost)


def _slices_present(labels: np.ndarray, records: dict[tuple[int, int], Record],
                    ids: list[int]) -> dict[int, set[int]]:
    """id -> the slices the labels hold it on: an object that lost a slice's pixels to others
    is not on it."""
    present: dict[int, set[int]] = {i: set() for i in ids}
    for (k, z), rec in records.items():  # within each mask's window, as compose wrote it
        hh, ww = rec.logits.shape
        if (labels[z, rec.r0 : rec.r0 + hh, rec.c0 : rec.c0 + ww] == ids[k]).any():
            present[ids[k]].add(z)
    return present


def _stop_reasons(objects: list[ObjectPrompts], present: dict[int, set[int]],
                  up: list[Chain], down: list[Chain], decoded: set[int]):
    """{id: {"up": reason, "down": reason}} of the objects in the labels, and {id: why} of
    those lost (``decoded``: the ids the model gave a mask with pixels, on some slice)."""
    reasons: dict[int, dict[str, str]] = {}
    lost: dict[int, str] = {}
    for k, obj in enumerate(objects):
        if not present[obj.id] and obj.id not in decoded:
            lost[obj.id] = (
                "the model gave an empty mask for its prompts (a box without area, or a "
                "click it reads as background); give it a positive point inside the object "
                "or a box around it"
            )
            continue
        if not present[obj.id]:
            lost[obj.id] = (
                "its masks lost every pixel to other objects (their prompts segment the same "
                "thing); give it prompts on its own object"
            )
            continue
        lo, hi = min(obj.annotations), max(obj.annotations)
        r_up = next(c.reason for c in up if c.k == k and c.start == hi)
        r_down = next(c.reason for c in down if c.k == k and c.start == lo)
        reasons[obj.id] = {"up": r_up, "down": r_down}
    return reasons, lost
