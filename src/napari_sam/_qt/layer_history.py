"""Commits, undos and redos of the dock as steps of napari's own undo history of the labels
layer, so that napari's Ctrl+Z (and Ctrl+Shift+Z) undo the latest change whichever tool made
it. Before, the dock wrote into ``layer.data`` behind napari's back: a Ctrl+Z after a commit
undid the brush stroke made before it and wrote that stroke's old pixels over the commit
(session 34's walk-through: a committed label gone, the status still naming it)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["record_step"]


def record_step(layer, changes: Sequence, undoing: bool = False) -> bool:
    """Record one step the dock has just written into ``layer.data`` as one item of the
    layer's napari undo history, and show it: napari redraws the box of the pixels written
    (a whole-layer ``refresh`` re-coloured the whole slice: 0.16 s a commit on a 4000 x 4000
    image).

    Parameters
    ----------
    layer : napari.layers.Labels
        Its ``data`` a writable numpy array (the dock commits into no other).
    changes : sequence of napari_sam.annotation.Change
        What the step wrote, in the order written (a commit's or a redo's ``changes``; an
        undo's, which it applied in reverse): flat indices into ``layer.data``, values
        before and after.
    undoing : bool
        The step was an undo (it wrote each change's ``before``).

    Returns
    -------
    bool
        Whether it was recorded and shown; False (nothing written, another kind of array,
        over ``MAX_PIXELS`` pixels): the caller refreshes the layer.

    Notes
    -----
    The values the step wrote are put back as they were and written again through
    ``Labels.data_setitem`` inside ``Labels.block_history`` (napari's public way to write with
    history), so the layer ends as the step left it and napari's history holds the step.
    """
    changes = [c for c in changes if len(c.index)]
    data = getattr(layer, "data", None)
    if not changes or not isinstance(data, np.ndarray) or not layer.visible:
        # (a hidden layer shows a 1 x 1 uint8 placeholder: napari's data_setitem casts the
        # values to it and fails on updating it, leaving its history step half made)
        return False
    flat = data.reshape(-1)
    if not np.shares_memory(flat, data) or sum(len(c.index) for c in changes) > MAX_PIXELS:
        return False
    index = _sorted_unique(changes)
    now = flat[index].copy()
    prior = now.copy()
    # before the step: a commit's (or redo's) first write of a pixel; an undo's last one
    order = changes if undoing else changes[::-1]
    for c in order:
        prior[np.searchsorted(index, c.index)] = c.after if undoing else c.before
    flat[index] = prior
    try:
        with layer.block_history():
            # refresh: napari redraws the box of these pixels on the slice shown
            layer.data_setitem(np.unravel_index(index, data.shape), now, refresh=True)
    finally:  # as the step left it, also if napari failed (the dock's history has the step)
        flat[index] = now
    # the layer list's thumbnail (a whole-layer refresh redrew it too); napari has no public
    # way to redraw only the thumbnail
    layer._update_thumbnail()
    return True


#: Steps writing more pixels than this are not put in napari's history (it keeps three index
#: arrays per pixel, and the write takes seconds on the main thread): napari's Ctrl+Z then
#: does not undo them, the dock's Undo does.
MAX_PIXELS = 1 << 22


def _sorted_unique(changes) -> np.ndarray:
    """The flat indices the changes wrote, sorted, each once (one change's are already: a
    mask's pixels in order; sort and drop repeats otherwise, 50x faster than np.unique)."""
    if len(changes) == 1:
        return np.asarray(changes[0].index)
    index = np.sort(np.concatenate([c.index for c in changes]))
    return index[np.r_[True, index[1:] != index[:-1]]]
