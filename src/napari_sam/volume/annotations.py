"""What the user asks :func:`napari_sam.segment_volume` for: prompts per object and slice.

Owns :class:`SlicePrompt` (the public prompt of one object on one slice), their validation
against the embedded stack and their merging into one :class:`ObjectPrompts` per object
(annotated slices, stop markers, negative-only constraints), and
:func:`prompts_from_labels` (seeding from existing labels). Points are (row, col) and boxes
(row0, col0, row1, col1) in pixels of the stack's slices; slices index the propagation axis.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from napari_sam.prompts import (
    PromptKind,
    box_problem,
    clip_box,
    labels_are_binary,
    plain,
    point_rows,
    points_outside,
)
from napari_sam.words import counted

# the message per napari_sam.prompts.box_problem
_BOX_MESSAGES = {
    "shape": "{where}: box must be 4 finite numbers (row0, col0, row1, col1), got {raw}",
    "inverted": "{where}: box {box} is inverted; need row1 >= row0 and col1 >= col0",
    "outside": "{where}: box {box} lies outside the slices of shape {size}",
}

__all__ = ["N_CANDIDATES", "Annotation", "ObjectPrompts", "SlicePrompt", "candidate_problem",
           "candidate_value_problem", "normalize_prompts", "prompt_candidate_problem",
           "prompts_from_labels"]


@dataclass
class SlicePrompt:
    """Prompts for one object on one slice.

    Attributes
    ----------
    slice : int
        Index along the propagation axis (0 <= slice < Z). A whole-number float (``3.0``,
        e.g. the first coordinate of a napari Points layer's ``data``) is taken as that
        integer; ``3.5``, NaN, infinities and booleans are refused.
    points : array-like (P, 2), optional
        (row, col) pixel coordinates.
    labels : array-like (P,), optional
        1 positive, 0 negative; default all positive. Only negative points (no box or mask)
        on a slice are a constraint, not an annotation: they are added to the prompt that
        propagation brings onto that slice (and do nothing where the object does not reach
        it); an object needs a positive point, a box or a mask on some slice.
    box : array-like (4,), optional
        (row0, col0, row1, col1).
    mask : array-like (Y, X) bool, optional
        The object's mask on this slice. Alone, it is taken as the object's segmentation on
        this slice as is; with points or a box it becomes a mask prompt for the decoder.
    stop : bool
        A stop marker: the object is absent from this slice and propagation ends before it.
        A stop marker carries no other prompt.
    candidate : int, optional
        Which of the three candidate masks of a single click (one positive point, no box or
        mask) seeds the object on this slice: 0, 1 or 2, in the decoder's order (what the
        dock shows after Shift+M). None: the best scoring, as everywhere else.
    """

    slice: int
    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    box: np.ndarray | None = None
    mask: np.ndarray | None = None
    stop: bool = False
    candidate: int | None = None

    _KEYS = ("slice", "points", "labels", "box", "mask", "stop", "candidate")

    def __repr__(self) -> str:  # one line: a mask as its shape and area, not its pixels
        parts = [f"slice={self.slice!r}"]
        for key in ("points", "labels", "box"):
            value = getattr(self, key)
            if value is not None:
                a = np.asarray(value)
                parts.append(f"{key}={a.tolist()!r}" if a.size <= 8
                             else f"{key}=<{a.shape} {a.dtype} array>")
        if self.mask is not None:
            m = np.asarray(self.mask)
            parts.append(f"mask=<{m.shape} {m.dtype} array, {int(np.count_nonzero(m))} px>")
        if self.stop:
            parts.append("stop=True")
        if self.candidate is not None:
            parts.append(f"candidate={self.candidate!r}")
        return f"SlicePrompt({', '.join(parts)})"

    @classmethod
    def coerce(cls, value) -> SlicePrompt:
        """A :class:`SlicePrompt` from itself or a plain dict with the same keys."""
        if isinstance(value, SlicePrompt):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - set(cls._KEYS)
            if unknown:
                raise ValueError(
                    f"unknown slice prompt keys {sorted(unknown)}; allowed: {list(cls._KEYS)}"
                )
            if "slice" not in value:
                raise ValueError(
                    f"a slice prompt needs a 'slice' index, got keys {sorted(value)}; "
                    "e.g. {'slice': 12, 'points': [[40, 52]]}"
                )
            return cls(**value)
        raise TypeError(
            f"a slice prompt must be a SlicePrompt or a dict, got {type(value).__name__}"
        )


@dataclass
class Annotation:
    """Validated and merged prompts of one object on one slice."""

    points: np.ndarray | None  # (P, 2) float64
    labels: np.ndarray | None  # (P,) int64
    box: np.ndarray | None  # (4,) float64
    mask: np.ndarray | None  # (Y, X) bool
    candidate: int | None = None  # the single click's candidate kept (None: best scoring)

    @property
    def mask_only(self) -> bool:
        return self.mask is not None and self.points is None and self.box is None

    @property
    def kind(self) -> PromptKind:
        """Prompts of one kind are decoded together in one call (a single click is
        ambiguous: it decodes 3 candidates and keeps the best scoring)."""
        return PromptKind.of(0 if self.points is None else len(self.points),
                             self.box is not None, self.mask is not None)


@dataclass
class ObjectPrompts:
    """Validated prompts of one object over the stack."""

    id: int
    annotations: dict[int, Annotation]  # slice -> annotation
    stops: list[int]  # sorted slices with stop markers
    # slice -> (P, 2) negative points on a slice with no other prompt of the object: added to
    # the prompt propagated onto that slice (a constraint, not an annotation)
    negatives: dict[int, np.ndarray] = field(default_factory=dict)


def _as_id(key) -> int:
    if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)):
        raise ValueError(
            f"object ids must be positive integers (0 is background), got {key!r}"
        )
    if int(key) <= 0:
        raise ValueError(f"object ids must be positive integers (0 is background), got {key}")
    return int(key)


def _validate_slice(z, obj_id: int, n_slices: int) -> int:
    """``z`` as an int in ``0..n_slices - 1``: an integer, or a whole-number float such as a
    napari Points layer's ``3.0``; ValueError naming the object for anything else."""
    if isinstance(z, (float, np.floating)) and not isinstance(z, (bool, np.bool_)):
        if not np.isfinite(z) or z != np.floor(z):
            raise ValueError(
                f"object {obj_id}: slice index must be a whole number, got {float(z)!r} "
                "(round the coordinate, e.g. int(round(z)), if it comes from a Points layer)"
            )
        z = int(z)
    if isinstance(z, (bool, np.bool_)) or not isinstance(z, (int, np.integer)):
        raise ValueError(f"object {obj_id}: slice index must be an integer, got {z!r}")
    if not 0 <= int(z) < n_slices:
        raise ValueError(
            f"object {obj_id}: slice {int(z)} is out of range for a stack of {n_slices} slices "
            f"(valid: 0..{n_slices - 1}); negative indices are not accepted"
        )
    return int(z)


def _validate_annotation(sp: SlicePrompt, obj_id: int, size: tuple[int, int]) -> Annotation:
    where = f"object {obj_id}, slice {sp.slice}"
    pts, lab = _validate_points(sp, where, size)
    box = _validate_box(sp, where, size)
    mask = _validate_mask(sp, where, size)
    if pts is None and box is None and mask is None:
        raise ValueError(
            f"{where}: the prompt has no points, box or mask and is not a stop marker"
        )
    return Annotation(pts, lab, box, mask, _validate_candidate(sp.candidate, where))


#: candidate masks of a single click (SAM's multimask output): a ``candidate`` is 0, 1 or 2
N_CANDIDATES = 3


def candidate_problem(candidate, *, points: int = 0, positive: int = 0, box: bool = False,
                      mask: bool = False, stop: bool = False, others: int = 0) -> str | None:
    """Why a prompt cannot carry ``candidate``, in words (None: it can); the one rule that
    the API, sessions, batch prompts files and the dock share.

    A candidate (0, 1 or 2, the decoder's order; None: the best scoring) picks one of the
    three masks of a single click: one point labelled 1, with no box, mask or stop marker,
    and no other prompt of the same object on that slice (``others``). Other prompts give
    one mask.

    Parameters
    ----------
    candidate : int or None
        The value given (already read as a number by the caller; anything else is refused).
    points, positive : int
        The prompt's points, and how many of them are labelled 1.
    box, mask, stop : bool
        Whether it has a box, a mask, or is a stop marker.
    others : int
        Other prompts of the same object on the same slice.
    """
    if candidate is None:
        return None
    problem = candidate_value_problem(candidate)
    if problem:
        return problem
    if points == 1 and positive == 1 and not (box or mask or stop or others):
        return None
    has = ", ".join([f"{counted(points, 'point')} ({positive} positive)"] * bool(points)
                    + ["a box"] * bool(box) + ["a mask"] * bool(mask)
                    + ["is a stop marker"] * bool(stop)
                    + [f"{counted(others, 'other prompt')} of the object on its slice"]
                    * bool(others))
    return ("'candidate' belongs to a single click (one point labelled 1, no box, mask or "
            "stop marker, no other prompt of the object on its slice): only such a prompt "
            f"gives three masks to choose from, and this one has {has}; remove 'candidate'"
            + " or the other prompts on that slice" * bool(others))


def prompt_candidate_problem(candidate, prompt, others: int = 0) -> str | None:
    """:func:`candidate_problem` of a prompt written as a mapping (a session file's record,
    a prompts file's entry): ``points`` [[row, col], ...], ``labels``, ``box``, ``stop``."""
    labels = prompt.get("labels") or []
    return candidate_problem(
        candidate, points=len(prompt.get("points") or ()), positive=sum(v == 1 for v in labels),
        box=prompt.get("box") is not None, stop=bool(prompt.get("stop")), others=others)


def candidate_value_problem(candidate) -> str | None:
    """Why ``candidate`` is no candidate index (0, 1 or 2; None: the best scoring), in
    words; None when it is one."""
    if candidate is None or (not isinstance(candidate, (bool, np.bool_))
                             and isinstance(candidate, (int, np.integer))
                             and 0 <= int(candidate) < N_CANDIDATES):
        return None
    return ("'candidate' must be 0, 1 or 2 (which of a single click's three masks to keep; "
            f"none: the best scoring), got {candidate!r}")


def _validate_candidate(value, where: str) -> int | None:
    """The candidate index of a slice prompt (None: the best scoring)."""
    problem = candidate_value_problem(value)
    if problem:
        raise ValueError(f"{where}: {problem}")
    return None if value is None else int(value)


def _check_candidate(ann: Annotation, where: str) -> None:
    """A candidate is chosen among the three masks of a single click only."""
    labels = np.zeros(0) if ann.labels is None else ann.labels
    problem = candidate_problem(
        ann.candidate, points=len(labels), positive=int(labels.sum()),
        box=ann.box is not None, mask=ann.mask is not None)
    if problem:
        raise ValueError(f"{where}: {problem}")


def _validate_points(sp: SlicePrompt, where: str, size: tuple[int, int]):
    """(P, 2) float64 points and (P,) int64 labels of a slice prompt, or (None, None)."""
    if sp.points is None:
        if sp.labels is not None:
            raise ValueError(f"{where}: labels were given without points")
        return None, None
    pts = point_rows(np.asarray(sp.points, dtype=np.float64))
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise ValueError(
            f"{where}: points must have shape (P, 2) as (row, col), got {pts.shape}"
        )
    if not np.isfinite(pts).all():
        raise ValueError(f"{where}: points must be finite (row, col) pairs")
    outside = points_outside(pts, size)
    if outside.any():
        raise ValueError(
            f"{where}: point (row, col) = {plain(pts[outside][0])} is outside the slices of "
            f"shape {size}; give points in pixels of the embedded stack"
        )
    if sp.labels is None:
        return pts, np.ones(len(pts), np.int64)
    lab = np.asarray(sp.labels).reshape(-1)
    if len(lab) != len(pts):
        raise ValueError(
            f"{where}: got {len(pts)} points but {len(lab)} labels; give one label "
            "per point (1 positive, 0 negative)"
        )
    if not labels_are_binary(lab):
        raise ValueError(
            f"{where}: labels must be 1 (positive) or 0 (negative), got {np.unique(lab)}"
        )
    return pts, lab.astype(np.int64)


def _validate_box(sp: SlicePrompt, where: str, size: tuple[int, int]) -> np.ndarray | None:
    """The (4,) float64 box of a slice prompt clipped to the slices, or None."""
    if sp.box is None:
        return None
    box = np.asarray(sp.box, dtype=np.float64).reshape(-1)
    problem = box_problem(box, size)
    if problem is not None:
        raise ValueError(_BOX_MESSAGES[problem].format(where=where, raw=sp.box,
                                                       box=plain(box), size=size))
    return clip_box(box, size)


def _validate_mask(sp: SlicePrompt, where: str, size: tuple[int, int]) -> np.ndarray | None:
    """The (Y, X) bool mask of a slice prompt, or None."""
    if sp.mask is None:
        return None
    mask = np.asarray(sp.mask)
    if mask.shape != tuple(size):
        raise ValueError(
            f"{where}: mask has shape {mask.shape} but the embedded stack's slices are "
            f"{size}; masks must come from the same stack (and axis order) as the embedding"
        )
    if mask.dtype.kind in "iu":
        ids = np.unique(mask[mask != 0])
        if len(ids) > 1:
            shown = ", ".join(str(int(i)) for i in ids[:5]) + (", ..." if len(ids) > 5 else "")
            raise ValueError(
                f"{where}: the mask holds {len(ids)} label ids ({shown}), not one object: "
                f"give one object's mask (e.g. labels == {int(ids[0])}), or prompts for every "
                f"labelled object with napari_sam.volume.prompts_from_labels(labels, slice={sp.slice})")
    mask = mask.astype(bool)
    if not mask.any():
        raise ValueError(f"{where}: the mask is empty; give a non-empty mask or remove it")
    return mask


def _merge(a: Annotation, b: Annotation, where: str) -> Annotation:
    if a.box is not None and b.box is not None:
        raise ValueError(f"{where}: two boxes on the same slice; give one box per object")
    if a.points is not None and b.points is not None:
        pts = np.concatenate([a.points, b.points])
        lab = np.concatenate([a.labels, b.labels])
    else:
        pts = a.points if a.points is not None else b.points
        lab = a.labels if a.labels is not None else b.labels
    if a.mask is not None and b.mask is not None:
        mask = a.mask | b.mask
    else:
        mask = a.mask if a.mask is not None else b.mask
    if a.candidate is not None and b.candidate is not None and a.candidate != b.candidate:
        raise ValueError(f"{where}: two different candidates ({a.candidate}, {b.candidate}) "
                         "on the same slice; give one")
    cand = a.candidate if a.candidate is not None else b.candidate
    return Annotation(pts, lab, a.box if a.box is not None else b.box, mask, cand)


def normalize_prompts(prompts, shape: tuple[int, int, int],
                      method: str = "sam1") -> list[ObjectPrompts]:
    """Check ``{object_id: [SlicePrompt or dict, ...]}`` against a (Z, Y, X) ``shape`` and
    return the objects sorted by id; ValueError naming the object and slice of a bad prompt.
    ``method`` ("sam1" or "sam2") is the propagation the prompts are for: it words what
    negative points do in the message for an object with only negative points."""
    if not isinstance(prompts, Mapping):
        raise TypeError(
            "prompts must be a mapping {object_id: [SlicePrompt or dict, ...]}, got "
            f"{type(prompts).__name__}"
        )
    if len(prompts) == 0:
        raise ValueError("no prompts given; add at least one object with a prompt on one slice")
    n_slices, size = shape[0], (shape[1], shape[2])
    objects = []
    for key in sorted(prompts, key=lambda k: _as_id(k)):
        obj_id = _as_id(key)
        value = prompts[key]
        items = [value] if isinstance(value, (SlicePrompt, Mapping)) else list(value or [])
        annotations: dict[int, Annotation] = {}
        stops: set[int] = set()
        for item in items:
            sp = SlicePrompt.coerce(item)
            z = _validate_slice(sp.slice, obj_id, n_slices)
            sp = SlicePrompt(z, sp.points, sp.labels, sp.box, sp.mask, bool(sp.stop),
                             sp.candidate)
            if sp.stop:
                if (sp.points is not None or sp.box is not None or sp.mask is not None
                        or sp.candidate is not None):
                    raise ValueError(
                        f"object {obj_id}, slice {z}: a stop marker carries no points, box, "
                        "mask or candidate; give the stop marker and the prompts on different "
                        "slices"
                    )
                stops.add(z)
                continue
            ann = _validate_annotation(sp, obj_id, size)
            if z in annotations:
                ann = _merge(annotations[z], ann, f"object {obj_id}, slice {z}")
            annotations[z] = ann
        for z, a in annotations.items():
            _check_candidate(a, f"object {obj_id}, slice {z}")
        negatives = {z: a.points for z, a in annotations.items()
                     if a.box is None and a.mask is None and not a.labels.any()}
        for z in negatives:
            del annotations[z]
        if not annotations:
            if negatives:
                raise ValueError(
                    f"object {obj_id} has only negative points (slices {sorted(negatives)}); "
                    "negative points alone start nothing: add a positive point, a box or a mask "
                    f"on at least one slice {_NEGATIVES_USE.get(method, _NEGATIVES_USE['sam1'])}"
                )
            raise ValueError(
                f"object {obj_id} has no prompts (only stop markers or nothing); add points, a "
                "box or a mask on at least one slice, or remove the object"
            )
        clash = stops & (set(annotations) | set(negatives))
        if clash:
            raise ValueError(
                f"object {obj_id}: slice {min(clash)} has both a stop marker and prompts; "
                "remove one of them"
            )
        objects.append(ObjectPrompts(obj_id, annotations, sorted(stops), negatives))
    _same_prompts(objects)
    return objects


#: what negative points on slices without a positive point, box or mask do, per method
_NEGATIVES_USE = {
    "sam1": "(negative points on other slices then constrain the propagated masks there)",
    "sam2": "(SAM 2 uses negative points only on a slice that also has a positive point, a "
            "box or a mask of the object)",
}


def _same_prompts(objects: list[ObjectPrompts]) -> None:
    """ValueError when two objects have identical prompts on one slice: they segment the same
    thing, and only one of them could end up in the labels. Two explicit, different
    candidates of one click are two masks (a part and the whole); a candidate left to the
    best scoring (None) may be the other's, so it does not tell them apart."""
    seen: dict[tuple, list[tuple[int, int | None]]] = {}
    for obj in objects:
        for z, a in obj.annotations.items():
            key = (z,) + tuple(
                None if v is None else (v.shape, np.ascontiguousarray(v).tobytes())
                for v in (a.points, a.labels, a.box, a.mask)
            )
            earlier = seen.setdefault(key, [])
            for other, cand in earlier:
                if other != obj.id and (cand is None or a.candidate is None
                                        or cand == a.candidate):
                    raise ValueError(
                        f"objects {other} and {obj.id} have the same prompts on slice {z}: "
                        "they would segment the same thing and one of them would be lost; "
                        "give each object its own prompts, merge them into one object, or "
                        "give each click its own candidate (0, 1 or 2)"
                    )
            earlier.append((obj.id, a.candidate))



def prompts_from_labels(
    labels, slice: int | None = None, ids: Iterable[int] | None = None
) -> dict[int, list[SlicePrompt]]:
    """Seed propagation from existing labels: one mask prompt per object.

    Parameters
    ----------
    labels : array-like, (Y, X) or (Z, Y, X) int
        A label image (0 = background). A 2D array is the labels of slice ``slice``.
    slice : int, optional
        The slice the masks come from. Required for 2D labels. For 3D labels, ``None`` seeds
        every object on the slice where its area is largest.
    ids : iterable of int, optional
        Only these objects (default: every non-zero label present).

    Returns
    -------
    dict
        ``{id: [SlicePrompt(slice, mask=(Y, X) bool)]}`` for :func:`segment_volume`.

    Examples
    --------
    >>> prompts = prompts_from_labels(layer.data, slice=12)        # (Z, Y, X) labels
    >>> result = segment_volume(emb, prompts)
    """
    lab = np.asarray(labels)
    if lab.ndim not in (2, 3):
        raise ValueError(f"labels must be (Y, X) or (Z, Y, X), got shape {lab.shape}")
    if not (np.issubdtype(lab.dtype, np.integer) or lab.dtype == bool):
        raise ValueError(f"labels must be an integer array, got dtype {lab.dtype}")
    if lab.ndim == 2:
        if slice is None:
            raise ValueError("2D labels need the slice they belong to: prompts_from_labels(l, slice=z)")
        if int(slice) < 0:
            raise ValueError(f"slice must be >= 0, got {slice}")
        planes = {int(slice): lab}
    elif slice is not None:
        if not 0 <= int(slice) < lab.shape[0]:
            raise ValueError(
                f"slice {slice} is out of range for labels with {lab.shape[0]} slices"
            )
        planes = {int(slice): lab[int(slice)]}
    else:
        planes = None
    wanted = None if ids is None else {int(i) for i in ids}
    out: dict[int, list[SlicePrompt]] = {}
    if planes is not None:
        (z, plane), = planes.items()
        present = np.unique(plane)
        for i in present[present != 0]:
            if wanted is None or int(i) in wanted:
                out[int(i)] = [SlicePrompt(z, mask=plane == i)]
    else:
        flat = lab.reshape(lab.shape[0], -1)
        present = np.unique(lab)
        for i in present[present != 0]:
            if wanted is not None and int(i) not in wanted:
                continue
            z = int(np.argmax((flat == i).sum(1)))
            out[int(i)] = [SlicePrompt(z, mask=lab[z] == i)]
    if wanted is not None and wanted - set(out):
        raise ValueError(f"labels {sorted(wanted - set(out))} are not present in the given labels")
    if not out:
        raise ValueError("the labels contain no objects (all zero)")
    return out
