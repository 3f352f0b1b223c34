"""The annotation core shared by the GUI and session replay (no Qt; tested without it).

* Decoding: :func:`decode_slice` turns the objects prompted on one slice into candidate masks
  in as few batched decoder calls as their kinds of prompt allow (objects with a box, with
  points only, with a mask prompt, single clicks that ask for three candidates): never one
  call per object (on a tiled embedding, :class:`napari_sam.tiling.TiledEmbedding`, one
  :func:`napari_sam.tiled_prompts.decode_tiled` call per object, masks in the whole image's
  frame). The same function decodes in the GUI and in :mod:`napari_sam.session`'s
  replay, which is what makes a replay pixel-identical.
* Commits: :func:`apply_objects` writes object masks into a (Z, Y, X) label array in place
  and records, for every pixel it changed, the value before and after, so
  :meth:`CommitHistory.undo` restores the array exactly and :meth:`CommitHistory.redo`
  re-applies it ("labels are sacred"). Pixels of other objects are never written unless
  ``overwrite`` is set. Undo and redo write only pixels that still hold what the commit (or
  the undo) left there: a pixel edited since (painted or erased by hand, written by a later
  commit of another kind) is left as it is and counted (:attr:`Commit.left`); an undo that
  finds the whole commit taken back already (napari's Ctrl+Z) writes nothing but keeps its
  pixels, so that a redo puts it back (:attr:`Commit.written`: what a step wrote, what
  napari's history records), and a redo that
  would give a label id to a second object is refused (:class:`LabelIdTaken`); a redo whose
  pixels are all back already (napari's Ctrl+Z undid the dock's undo) counts as redone
  (:attr:`Commit.found_back`). Undo and redo refuse, and keep the step, labels whose shape is
  not the one the commit wrote into (:class:`LabelsReshaped`).

Slice prompts are duck-typed: anything with ``points`` (P, 2) (row, col), ``labels`` (P,),
``box`` (4,) or None and ``usable`` (e.g.
:class:`napari_sam.annotate.prompt_groups.DrawnPrompts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from napari_sam.prompts import PromptKind, clip_box, group_by_kind, stack_prompts

__all__ = [
    "Change",
    "Commit",
    "CommitHistory",
    "LabelIdTaken",
    "LabelsReshaped",
    "ObjectMask",
    "ObjectPreview",
    "apply_objects",
    "decode_slice",
    "slice_edges",
    "fresh_id",
    "not_writable",
    "mask_prompt",
]

@dataclass
class ObjectMask:
    """One object to write.

    Attributes
    ----------
    mask : numpy.ndarray bool
        (Z, Y, X) over the whole array, or (Y, X) for slice ``z``.
    z : int or None
        Slice of a (Y, X) mask; None for a (Z, Y, X) mask.
    replaces : int
        Id of an existing object this mask refines (0: a new object). Its old pixels in the
        mask's extent (the slice, or the whole array) that the new mask does not cover are
        cleared, and it keeps its id.
    """

    mask: np.ndarray
    z: int | None = None
    replaces: int = 0


class LabelIdTaken(ValueError):
    """A redo would write a new object's label id while another object holds that id (it
    was painted or committed since the undo); nothing was written."""


class LabelsReshaped(ValueError):
    """An undo or redo was given labels of another shape than the commit wrote into (the
    labels were replaced since): its flat indices would land on other pixels, or outside.
    Nothing was written and the step stays in the history."""


@dataclass
class Change:
    """Pixels changed by one write: flat indices, values before and after."""

    index: np.ndarray
    before: np.ndarray
    after: np.ndarray

    def only(self, keep: np.ndarray) -> Change:
        """The change restricted to the pixels where ``keep`` (bool, one per pixel) holds
        (itself when it holds for all: no copy)."""
        if keep.all():
            return self
        return Change(self.index[keep], self.before[keep], self.after[keep])


@dataclass
class Commit:
    """One user commit: changes applied in order, and the ids it wrote.

    Attributes
    ----------
    changes : list of Change
        In the order written. An undo keeps only the pixels it restored (a redo re-applies
        just those), or, when it found the whole commit taken back already (napari's Ctrl+Z
        or the eraser), the pixels as they were before it (a redo puts the commit back); a
        redo keeps only the pixels it wrote.
    ids : list of int
        The label id of each object written.
    new_ids : list of int
        The ids of new objects (not refinements of an existing label).
    target : object
        What the array belongs to (the controller stores the labels layer).
    left : int
        Pixels the last undo or redo left as they were because they had been edited since
        (they no longer held what the commit, or the undo, wrote).
    id_pixels : dict of int to int
        After an undo: how many pixels of each new id the labels still held (pixels edited
        since the commit); a redo finding more refuses (:class:`LabelIdTaken`).
    shape : tuple of int or None
        The shape of the labels written into (axes of size 1 aside, the flat indices of
        ``changes`` address the same pixels); None: not known (any shape is taken).
    found_back : bool
        The last redo found every pixel of the commit already as it wrote them (napari's
        Ctrl+Z undid the dock's undo) and wrote nothing.
    time_point : int or None
        The time point of a movie of volumes the commit was made at (its ``changes`` index
        the whole movie's labels); None for any other image.
    written : list of Change
        What the commit, or its last undo or redo, wrote (in ``changes``' order; an undo
        wrote each one's ``before``). Empty when it wrote nothing (an undo of a commit taken
        back already, a ``found_back`` redo): napari's history then gets no step.
    """

    changes: list[Change] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    target: object = None  # what the array belongs to (the controller stores the layer)
    new_ids: list[int] = field(default_factory=list)
    left: int = 0
    id_pixels: dict = field(default_factory=dict)
    shape: tuple | None = None
    found_back: bool = False
    written: list[Change] = field(default_factory=list)
    time_point: int | None = None

    @property
    def n_pixels(self) -> int:
        return int(sum(len(c.index) for c in self.changes))

    @property
    def n_written(self) -> int:
        """Pixels the commit, or its last undo or redo, wrote."""
        return int(sum(len(c.index) for c in self.written))


def fresh_id(labels: np.ndarray, taken: Sequence[int] = ()) -> int:
    """The smallest id larger than every id in ``labels`` and in ``taken``."""
    top = int(labels.max()) if labels.size else 0
    return max([top, *(int(t) for t in taken)]) + 1


def _check_dtype(labels: np.ndarray, value: int) -> None:
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must have an integer dtype, got {labels.dtype}")
    if value > np.iinfo(labels.dtype).max:
        raise OverflowError(
            f"label id {value} does not fit in the labels layer's dtype {labels.dtype}; "
            "commit into a new labels layer (it uses a larger dtype)"
        )


def _extent(labels: np.ndarray, obj: ObjectMask) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the array region the object lives in, and its mask there."""
    mask = np.asarray(obj.mask, dtype=bool)
    if obj.z is None:
        if mask.shape != labels.shape:
            raise ValueError(f"mask shape {mask.shape} differs from labels {labels.shape}")
        return None, mask
    if mask.shape != labels.shape[1:]:
        raise ValueError(f"slice mask shape {mask.shape} differs from labels {labels.shape[1:]}")
    if not 0 <= obj.z < labels.shape[0]:
        raise IndexError(f"slice {obj.z} is outside the labels (Z = {labels.shape[0]})")
    return obj.z, mask


def _write(labels: np.ndarray, obj: ObjectMask, value: int, overwrite: bool) -> Change:
    z, mask = _extent(labels, obj)
    region = labels if z is None else labels[z]
    offset = 0 if z is None else z * region.size
    current = region.reshape(-1)
    m = mask.reshape(-1)
    writable = m & ((current == 0) | (current == value))
    if overwrite:
        writable = m.copy()
    if obj.replaces:
        # the refined object's old pixels outside the new mask go back to background
        writable |= (current == obj.replaces) & ~m
    idx = np.flatnonzero(writable)
    after = np.where(m[idx], value, 0).astype(labels.dtype)
    before = current[idx].copy()
    changed = before != after
    idx, before, after = idx[changed], before[changed], after[changed]
    current[idx] = after
    return Change(idx + offset, before, after)


def apply_objects(
    labels: np.ndarray,
    objects: Sequence[ObjectMask],
    *,
    overwrite: bool = False,
    taken: Sequence[int] = (),
) -> Commit:
    """Write objects into ``labels`` (Z, Y, X) in place; each new object gets a fresh id.

    Objects are written in order; a later object does not overwrite an earlier one of the
    same commit unless ``overwrite`` is set. Pixels of other objects are kept unless
    ``overwrite`` is set. Refined objects (``replaces``) keep their id.
    """
    problem = not_writable(labels)
    if problem:
        raise TypeError(problem)
    commit = Commit(shape=tuple(labels.shape))
    for obj in objects:
        value = obj.replaces or fresh_id(labels, [*taken, *commit.ids])
        _check_dtype(labels, value)
        change = _write(labels, obj, value, overwrite)
        commit.changes.append(change)
        commit.ids.append(value)
        if not obj.replaces:
            commit.new_ids.append(value)
    commit.written = list(commit.changes)
    return commit


def not_writable(labels) -> str:
    """Why commits cannot write into ``labels`` in place ("" when they can): it must be an
    in-memory, writable, C-contiguous numpy array (not dask, zarr or a read-only view)."""
    if (
        isinstance(labels, np.ndarray)
        and labels.flags.writeable
        and labels.flags.c_contiguous
    ):
        return ""
    return (
        "the labels are not an in-memory writable numpy array; commit into a new labels "
        "layer, or into a writable copy (numpy.array(labels); np.asarray keeps a read-only "
        "array read-only)"
    )


def _flat(labels: np.ndarray) -> np.ndarray:
    flat = labels.reshape(-1)
    if not np.shares_memory(flat, labels):
        raise TypeError("labels must be contiguous to undo/redo in place")
    return flat


def _count_unique(indices: list[np.ndarray]) -> int:
    """How many distinct flat indices the arrays hold together."""
    return int(np.unique(np.concatenate(indices)).size) if indices else 0


def _id_counts(flat: np.ndarray, ids: Sequence[int], step: int = 1 << 24) -> dict[int, int]:
    """Pixels of each id of ``ids`` in ``flat`` (ids absent: left out), read in chunks of
    ``step`` pixels (bounded memory on large volumes; two comparisons a pixel, as a commit's
    new ids lie in one narrow range)."""
    if not len(ids):
        return {}
    lo, hi, wanted = min(ids), max(ids), {int(i) for i in ids}
    counts: dict[int, int] = {}
    for start in range(0, flat.size, step):
        part = flat[start:start + step]
        hit = part[(part >= lo) & (part <= hi)]
        for value, n in zip(*(a.tolist() for a in np.unique(hit, return_counts=True))):
            if value in wanted:
                counts[value] = counts.get(value, 0) + n
    return counts


def _squeezed(shape) -> tuple:
    return tuple(int(n) for n in shape if n != 1)


def _require_shape(commit: Commit, labels: np.ndarray, redo: bool) -> None:
    """Raise :class:`LabelsReshaped` when ``labels`` is not of the shape ``commit`` wrote
    into (axes of size 1 aside: a (Y, X) layer behind a (1, Y, X) view)."""
    shape = tuple(int(n) for n in np.shape(labels))
    if commit.shape is None or _squeezed(shape) == _squeezed(commit.shape):
        return
    ids = ("label " if len(commit.ids) == 1 else "labels ") + ", ".join(map(str, commit.ids))
    raise LabelsReshaped(
        f"the labels have shape {shape} but the commit of {ids} was written into labels "
        f"of shape {tuple(commit.shape)} (they were replaced since); nothing was "
        f"{'redone' if redo else 'undone'} and the step is kept: put the labels of that shape "
        "back, then try again"
    )


def _holding(flat: np.ndarray, changes: Sequence[Change], after: bool) -> np.ndarray:
    """The sorted flat indices of the pixels of ``changes`` that hold what the commit left
    there (``after``: the last write of a pixel written twice), else what they held before it
    (the first ``before``)."""
    index = np.concatenate([c.index for c in changes])
    values = np.concatenate([c.after if after else c.before for c in changes])
    if after:
        index, values = index[::-1], values[::-1]
    index, first = np.unique(index, return_index=True)
    return index[flat[index] == values[first]]


def _all_back(flat: np.ndarray, changes: Sequence[Change]) -> bool:
    """Whether every pixel of ``changes`` holds what they left there (the last write of a
    pixel written twice)."""
    return len(_holding(flat, changes, True)) == _count_unique([c.index for c in changes])


def _at_start(flat: np.ndarray, changes: Sequence[Change]):
    """``at_start(change, current)``: which pixels of ``change`` (now holding ``current``)
    hold what they held before the commit of ``changes`` (its first ``before`` of a pixel
    written twice), read before an undo writes anything."""
    if len(changes) == 1:  # (each pixel once: the change's own values tell)
        return lambda change, current: current == change.before
    start = _holding(flat, changes, False)
    return lambda change, _: np.isin(change.index, start)


class _Later:
    """What the commits undone after ``commit`` (``undone``: the redo stack) claim of the
    pixels an undo of ``commit`` found as before it already; read at the first such pixel."""

    def __init__(self, undone: Sequence[Commit], commit: Commit):
        self.undone, self.commit = undone, commit
        self.claimed = None  # None, or (whether one took a new id of commit, flat indices)

    def free(self, change: Change, done: np.ndarray) -> np.ndarray:
        """The pixels of ``done`` (bool, one per pixel of ``change``) that no later commit
        wrote; none when a later commit took one of ``commit``'s new ids."""
        if not self.undone or not done.any():
            return done
        if self.claimed is None:
            taken = bool({i for c in self.undone for i in c.ids} & set(self.commit.new_ids))
            index = (np.arange(0) if taken else
                     np.unique(np.concatenate([c.index for u in self.undone for c in u.changes]
                                              or [np.arange(0)])))
            self.claimed = taken, index
        taken, index = self.claimed
        return np.zeros_like(done) if taken else done & ~np.isin(change.index, index)


class CommitHistory:
    """Undo and redo stacks of commits. ``max_steps`` bounds memory (oldest dropped)."""

    def __init__(self, max_steps: int = 100):
        self.max_steps = int(max_steps)
        self._undo: list[Commit] = []
        self._redo: list[Commit] = []

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def __len__(self) -> int:
        return len(self._undo)

    def peek_undo(self) -> Commit | None:
        return self._undo[-1] if self._undo else None

    def peek_redo(self) -> Commit | None:
        return self._redo[-1] if self._redo else None

    def push(self, commit: Commit) -> None:
        """Record a commit that was just applied (clears the redo stack)."""
        self._undo.append(commit)
        self._redo.clear()
        del self._undo[: max(0, len(self._undo) - self.max_steps)]

    def undo(self, labels: np.ndarray) -> Commit | None:
        """Restore ``labels`` as it was before the last commit; returns that commit.

        Only pixels that still hold what the commit wrote are restored; pixels edited since
        (by hand, or by a commit not undone first) are left as they are and counted in the
        commit's ``left``. The commit keeps only the pixels restored, so a redo re-applies
        exactly what this undo took back (an erased part of the label stays erased). An undo
        that finds none to restore (napari's Ctrl+Z, or the eraser, took the whole commit back)
        writes nothing and keeps the pixels found as before the commit, so that a redo puts
        the commit back; not those a later commit (one undone before this one) wrote, nor any
        when a later commit took one of its new ids (the label was gone when it was made: the
        redo would make two objects of one id). Raises :class:`LabelsReshaped`, and keeps the
        step, when ``labels`` has another shape than the commit wrote into.
        """
        if not self._undo:
            return None
        _require_shape(self._undo[-1], labels, redo=False)
        commit = self._undo.pop()
        commit.found_back = False
        flat = _flat(labels)
        # nothing to take away (napari's Ctrl+Z, or the eraser, took it all back): the pixels
        # found as before the commit are kept for the redo, which puts the commit back
        gone = not any((flat[c.index] == c.after).any() for c in commit.changes)
        at_start = _at_start(flat, commit.changes) if gone else None
        later = _Later(self._redo, commit)
        kept, written, left = [], [], []
        for change in reversed(commit.changes):
            current = flat[change.index]
            ours = current == change.after
            start = at_start(change, current) if gone else current == change.before
            flat[change.index[ours]] = change.before[ours]
            kept.append(change.only(later.free(change, start) if gone else ours))
            written.append(change.only(ours))
            left.append(change.index[~ours & ~start])
        commit.changes, commit.written = kept[::-1], written[::-1]
        commit.left = _count_unique(left)
        commit.id_pixels = _id_counts(flat, commit.new_ids)
        self._redo.append(commit)
        return commit

    def redo(self, labels: np.ndarray) -> Commit | None:
        """Re-apply the last undone commit; returns it.

        Only pixels that still hold what the undo restored are written (the others were
        edited since: counted in the commit's ``left``). Raises :class:`LabelIdTaken`, and
        writes nothing, when one of the commit's new ids was given to other pixels since the
        undo (the redo would make two objects of one id), and :class:`LabelsReshaped` (the step
        kept) for labels of another shape than the commit wrote into. A commit whose every
        pixel is back already as it wrote it (napari's Ctrl+Z undid the dock's undo) counts as
        redone: it goes back onto the undo stack, nothing written (``found_back``).
        """
        if not self._redo:
            return None
        commit = self._redo[-1]
        _require_shape(commit, labels, redo=True)
        flat = _flat(labels)
        commit.found_back = commit.n_pixels > 0 and _all_back(flat, commit.changes)
        if commit.found_back:
            commit.left, commit.written = 0, []
            self._undo.append(self._redo.pop())
            return commit
        now = _id_counts(flat, commit.new_ids)
        taken = [i for i in commit.new_ids if now.get(i, 0) > commit.id_pixels.get(i, 0)]
        if taken:
            raise LabelIdTaken(
                f"label {', '.join(map(str, taken))} was given to other pixels since the undo "
                "(painted or committed); redoing would make two objects of one id"
            )
        self._redo.pop()
        kept, left = [], []
        for change in commit.changes:
            current = flat[change.index]
            ok = current == change.before
            flat[change.index[ok]] = change.after[ok]
            kept.append(change.only(ok))
            left.append(change.index[~ok & (current != change.after)])
        commit.changes = commit.written = kept
        commit.left = _count_unique(left)
        self._undo.append(commit)
        return commit

    def forget(self, target) -> int:
        """Drop every commit made into ``target`` (e.g. its layer was removed); returns how
        many undo and redo steps went with it."""
        before = len(self._undo) + len(self._redo)
        self._undo = [c for c in self._undo if c.target is not target]
        self._redo = [c for c in self._redo if c.target is not target]
        return before - len(self._undo) - len(self._redo)


# ---------------------------------------------------------------------- decoding


@dataclass
class ObjectPreview:
    """Candidate masks of one object on one slice; ``index`` is the one shown."""

    key: object
    z: int
    masks: np.ndarray  # (C, H, W) bool
    scores: np.ndarray  # (C,) float
    logits: np.ndarray  # (C, 4E, 4E) float
    index: int = 0
    prompt: object = None  # the DrawnPrompts decoded (a session records them)
    mask_prompt: bool = False  # decoded with a mask prompt (the refined label's mask)
    cuts: np.ndarray | None = None  # tiled: (C,) bool, candidate reaches the decoded windows' edge
    edges: bool = False  # masks cut on the strongest image edges (boundary "edge"), not at 0
    #: tiled: the zoomed-out view (napari_sam.tiling.Window) decoded instead of windows
    view: object = None
    #: tiled, decoded with ``zoom=False``: a zoomed-out view is to be decoded too
    zoom_pending: bool = False

    @property
    def mask(self) -> np.ndarray:
        return self.masks[self.index]

    @property
    def score(self) -> float:
        return float(self.scores[self.index])

    @property
    def cut(self) -> bool:
        """Tiled images: the shown mask reaches the outer edge of the windows decoded (not
        the image border), so the object may go on beyond them."""
        return bool(self.cuts is not None and self.cuts[self.index])

    @property
    def n_candidates(self) -> int:
        return len(self.masks)

    def cycle(self) -> int:
        """Show the next candidate; returns its index."""
        self.index = (self.index + 1) % len(self.masks)
        return self.index


def mask_prompt(predictor, embedding, mask: np.ndarray):
    """A (Y, X) bool mask of a slice as the mask prompt :func:`decode_slice` takes for it
    (e.g. the label being refined).

    Returns
    -------
    numpy.ndarray (4E, 4E) float32, or ((4E, 4E), int or Window) on a tiled embedding
        The low-resolution logits; on a :class:`napari_sam.tiling.TiledEmbedding` in the
        frame of the window whose core holds the mask's centre, with that window's index; a
        mask that reaches beyond that window, on an embedding that can zoom out: in the frame
        of a :func:`napari_sam.tiling.zoom_view` that shows all of it, with that view.
    """
    from napari_sam.volume import mask_to_logits

    mask = np.asarray(mask, bool)
    p = predictor
    tiling = getattr(embedding, "tiling", None)
    if tiling is None:
        return mask_to_logits(mask, embedding.original_size, embedding.input_size, p.img_size,
                              p.low_res_size).numpy()
    win = tiling.owner(*np.argwhere(mask).mean(axis=0)) if mask.any() else tiling.windows[0]
    if mask[win.slices].sum() < mask.sum():  # another window may hold all of it
        rr, cc = np.nonzero(mask)
        centre = (int(rr.mean()), int(cc.mean()))
        holding = [w for w in tiling.windows if w.outer[0] <= rr.min() and rr.max() < w.outer[2]
                   and w.outer[1] <= cc.min() and cc.max() < w.outer[3]]
        if holding:  # the one the label's centre lies deepest in
            win = max(holding, key=lambda w: tiling.depth_at(
                w, min(max(centre[0] - w.outer[0], 0), w.shape[0] - 1),
                min(max(centre[1] - w.outer[1], 0), w.shape[1] - 1)))
    if mask[win.slices].sum() < mask.sum() and embedding.can_zoom_out:
        # the label reaches beyond the window around its centre: a view that shows all of it
        from napari_sam.preprocess import ResizeSpec
        from napari_sam.tiling import zoom_view

        rr, cc = np.nonzero(mask)
        view = zoom_view(tiling, [rr.min(), rr.max()], [cc.min(), cc.max()])
        spec = ResizeSpec.for_image(view.shape, p.img_size)
        logits = mask_to_logits(mask[view.slices], spec.original_size, spec.input_size,
                                p.img_size, p.low_res_size)
        return logits.numpy(), view
    e = embedding.embeddings[win.index]
    logits = mask_to_logits(mask[win.slices], e.original_size, e.input_size, p.img_size,
                            p.low_res_size)
    return logits.numpy(), win.index


def decode_slice(
    predictor,
    embedding,
    z: int,
    prompts: list[tuple[object, object]],
    mask_inputs: dict | None = None,
    edges: np.ndarray | None = None,
    zoom: bool = True,
) -> list[ObjectPreview]:
    """Candidate masks for every ``(key, SlicePrompts)`` on slice ``z``.

    Parameters
    ----------
    predictor : napari_sam.Predictor
    embedding : napari_sam.predictor.ImageEmbedding or napari_sam.tiling.TiledEmbedding
        The slice's embedding; a tiled one is decoded object by object
        (:func:`napari_sam.tiled_prompts.decode_tiled`), with (C, Y, X) masks over the whole
        slice and the logits of the window holding the prompts.
    z : int
    prompts : list of (key, SlicePrompts)
        Objects in order; the result keeps it (objects without a usable prompt are left out).
    mask_inputs : dict key -> (4E, 4E) logits, optional
        Mask prompts (e.g. an existing label being refined, :func:`mask_prompt`); on a tiled
        embedding ``(logits, window index)``: logits in that window's frame.
    edges : numpy.ndarray (Y, X) float, optional
        :func:`napari_sam.edge_threshold.edge_map` of the slice: each candidate mask is cut
        where its boundary lies on the strongest edges (boundary ``"edge"``, see
        :func:`slice_edges`) instead of at the model's threshold. Not used on a tiled
        embedding.
    zoom : bool
        Tiled: False decodes in the windows only, never encoding a zoomed-out view; the
        previews that would use one say ``zoom_pending`` (decode again with True).
    """
    mask_inputs = mask_inputs or {}
    groups = group_by_kind(
        (PromptKind.of(len(sp.points), sp.box is not None, key in mask_inputs), (key, sp))
        for key, sp in prompts
        if sp.usable
    )
    from napari_sam.tiling import TiledEmbedding

    tiled = isinstance(embedding, TiledEmbedding)
    out: dict[object, ObjectPreview] = {}
    for kind, items in groups.items():
        out.update(_decode_tiled(predictor, embedding, z, kind, items, mask_inputs, zoom)
                   if tiled else
                   _decode_group(predictor, embedding, z, kind, items, mask_inputs, edges))
    return [out[k] for k, _ in prompts if k in out]


def slice_edges(predictor, stack, z: int, boundary: str = "auto") -> np.ndarray | None:
    """The edge map :func:`decode_slice` cuts slice ``z``'s masks with, or None (cut at the
    model's threshold).

    Parameters
    ----------
    predictor : napari_sam.Predictor
    stack : array-like (Z, Y, X) or (Z, Y, X, C)
        The pixels embedded.
    z : int
    boundary : {"auto", "threshold", "edge"}
        ``"auto"``: the model's ``mask_boundary`` (``"edge"`` for the bundled demo model);
        SAM 2.1 models are always cut at the threshold.
    """
    from napari_sam.edge_threshold import edge_map, resolve_boundary

    if resolve_boundary(boundary, predictor.model) != "edge" or predictor.sam2 is not None:
        return None
    return edge_map(np.asarray(stack[z]))


def _decode_group(predictor, embedding, z, kind, items, mask_inputs, edges=None) -> dict:
    """One batched decoder call for the objects ``items`` [(key, SlicePrompts)] of one kind;
    boxes partly outside the slice are clipped to it, as propagation and
    :meth:`napari_sam.Predictor.predict` clip them."""
    size = tuple(int(v) for v in embedding.original_size)
    kw = stack_prompts(
        kind,
        [sp.points for _, sp in items],
        [sp.labels for _, sp in items],
        [None if sp.box is None else clip_box(np.asarray(sp.box, np.float64), size)
         for _, sp in items],
        dtype=np.float32,
    )
    if kind.mask:
        kw["mask_inputs"] = np.stack([np.asarray(mask_inputs[k], np.float32) for k, _ in items])
    res = predictor.predict_batch(embedding=embedding, multimask=kind.multimask,
                                  upsample=edges is None, **kw)
    if edges is None:
        all_masks = res.masks.cpu().numpy()
    else:
        from napari_sam.edge_threshold import edge_aligned_masks

        up = predictor.upsample_logits(res.logits.float(), embedding)
        all_masks = np.stack([edge_aligned_masks(one, edges)[0] for one in up])
    scores = res.scores.cpu().numpy()
    logits = res.logits.cpu().numpy()
    return {
        key: ObjectPreview(
            key, z, all_masks[i], scores[i], logits[i], index=int(scores[i].argmax()),
            prompt=sp, mask_prompt=kind.mask, edges=edges is not None,
        )
        for i, (key, sp) in enumerate(items)
    }


def _decode_tiled(predictor, tiled, z, kind, items, mask_inputs, zoom: bool = True) -> dict:
    """The objects ``items`` [(key, SlicePrompts)] of one kind on a tiled embedding: one
    :func:`~napari_sam.tiled_prompts.decode_tiled` call each (each object's prompts pick
    the windows decoded)."""
    from napari_sam.tiled_prompts import decode_tiled

    out = {}
    for key, sp in items:
        has_points = len(sp.points) > 0
        mask_input, mask_window = mask_inputs[key] if kind.mask else (None, None)
        res = decode_tiled(
            predictor, tiled,
            points=np.asarray(sp.points, np.float32) if has_points else None,
            labels=np.asarray(sp.labels) if has_points else None,
            box=None if sp.box is None else np.asarray(sp.box, np.float32),
            mask_input=mask_input, multimask=kind.multimask, mask_window=mask_window,
            zoom=zoom,
        )
        scores = np.asarray(res.scores)
        out[key] = ObjectPreview(
            key, z, np.asarray(res.masks, bool), scores, np.asarray(res.logits),
            index=int(scores.argmax()), prompt=sp, mask_prompt=kind.mask,
            cuts=np.asarray(res.cuts, bool), view=res.view, zoom_pending=res.zoom_pending,
        )
    return out
