"""Chains: the runs of one object's masks from an annotated slice towards a bound.

Owns :class:`Chain` (a run's direction, bound, state and the running contrasts the rebound
rule watches), :class:`ChainState` (the mask a run last accepted, which prompts the next
slice) and :func:`make_chains` (which runs an object's annotated slices and stop markers
call for). Directions: +1 "up" (increasing slice index), -1 "down".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from napari_sam.volume.annotations import ObjectPrompts

__all__ = ["Chain", "ChainState", "make_chains", "pending_slices"]


@dataclass
class ChainState:
    """An object's mask on the slice a chain last accepted."""

    mask: np.ndarray  # (H, W) bool
    lowres: torch.Tensor  # (4E, 4E) float32, on the predictor's device
    area: float
    box: np.ndarray | None  # (4,)
    centroid: np.ndarray | None  # (2,)
    prev_centroid: np.ndarray | None = None


@dataclass
class Chain:
    k: int  # object index
    direction: int  # +1 up, -1 down
    start: int
    bound: int  # last slice this chain may fill
    bound_reason: str
    state: ChainState | None = None
    last: int = -1
    steps: int = 0
    reason: str | None = None
    partner: Chain | None = None  # the up chain filling the same gap (for down chains)
    ref_contrast: float = float("nan")  # what fading is judged against (NaN: no rule)
    # the chain's highest contrast so far and its lowest since then, in the sign of
    # ref_contrast (the rebound rule)
    peak_contrast: float = float("nan")
    low_contrast: float = float("nan")
    low_slice: int = -1  # where low_contrast was measured
    # standard errors of peak_contrast and low_contrast (the pixels' own noise)
    peak_error: float = 0.0
    low_error: float = 0.0
    rises: int = 0  # slices in a row on which the rebound rule saw the contrast rise

    @property
    def alive(self) -> bool:
        return self.reason is None

    def track_contrast(self, contrast: float, z: int, error: float = 0.0) -> None:
        """The rebound rule's running peak, and the low since it, after accepting slice z
        (``contrast`` in the sign of ``ref_contrast``, ``error`` its standard error)."""
        if contrast > self.peak_contrast:
            self.peak_contrast = self.low_contrast = contrast
            self.peak_error = self.low_error = error
            self.low_slice = z
        elif contrast < self.low_contrast:
            self.low_contrast, self.low_slice, self.low_error = contrast, z, error


def make_chains(objects: list[ObjectPrompts], n_slices: int) -> tuple[list[Chain], list[Chain]]:
    """The propagation runs of every object: up from its highest annotated slice, down from
    its lowest, and a pair meeting in the middle of each gap between annotated slices (or
    one run to each side of a stop marker inside the gap). Returns (up chains, down chains).
    """
    up, down = [], []
    last = n_slices - 1
    for k, obj in enumerate(objects):
        ann = sorted(obj.annotations)
        stops = np.asarray(obj.stops, int)
        below = stops[stops < ann[0]]
        if below.size:
            down.append(Chain(k, -1, ann[0], int(below.max()) + 1, "stop_marker"))
        else:
            down.append(Chain(k, -1, ann[0], 0, "edge"))
        above = stops[stops > ann[-1]]
        if above.size:
            up.append(Chain(k, +1, ann[-1], int(above.min()) - 1, "stop_marker"))
        else:
            up.append(Chain(k, +1, ann[-1], last, "edge"))
        for a, b in zip(ann[:-1], ann[1:]):
            if b == a + 1:
                continue
            inside = stops[(stops > a) & (stops < b)]
            if inside.size:
                up.append(Chain(k, +1, a, int(inside.min()) - 1, "stop_marker"))
                down.append(Chain(k, -1, b, int(inside.max()) + 1, "stop_marker"))
            else:
                u = Chain(k, +1, a, (a + b) // 2, "met")
                d = Chain(k, -1, b, a + 1, "met", partner=u)
                up.append(u)
                down.append(d)
    return up, down


def pending_slices(c: Chain) -> int:
    """The slices chain ``c`` may still fill: none once it stopped, else those from where
    it is (its last accepted slice, or its start) to its bound. A down chain that meets an
    up chain (``partner``) and has not started yet covers the gap from where its partner
    ended (or, while the partner runs, from its partner's bound), so the pair never counts a
    slice twice. Propagation progress is the slices no chain may still fill."""
    if c.reason is not None:
        return 0
    at = c.start if c.last < 0 else c.last
    bound = c.bound
    p = c.partner
    if p is not None and c.last < 0:
        bound = max(bound, (p.bound if p.alive else p.last) + 1)
    return max(0, (bound - at) * c.direction)
