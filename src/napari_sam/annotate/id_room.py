"""Whether the ids a commit gives fit in the target labels' dtype: a uint8 layer holds ids up to
255, and the 256th object is refused before anything is written, with a status line that says
what to do (not a bare ``OverflowError`` from :func:`napari_sam.annotation.apply_objects`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_sam.annotation import ObjectMask, fresh_id

__all__ = ["NEW_LAYER_ENTRY", "id_room_problem"]

#: The 'Labels layer' box's entry for a new layer (the dock's widget shows this text).
NEW_LAYER_ENTRY = "new 'segmentation' layer"


def id_room_problem(labels: np.ndarray, objects: Sequence[ObjectMask], name: str) -> str:
    """Why committing ``objects`` into ``labels`` would give an id its dtype cannot hold
    ("" when every id fits).

    Parameters
    ----------
    labels : numpy.ndarray
        (Z, Y, X) integer labels the commit writes into.
    objects : sequence of ObjectMask
        The objects committed; each one without ``replaces`` takes the next fresh id.
    name : str
        The labels layer's name, for the message.

    Returns
    -------
    str
        A full refusal that names the layer, its dtype's largest id, and what to do.
    """
    if labels.dtype.kind not in "iu":
        return ""
    new = sum(1 for o in objects if not o.replaces)
    if not new:
        return ""
    first = fresh_id(labels)
    last = first + new - 1
    most = int(np.iinfo(labels.dtype).max)
    if last <= most:
        return ""
    ids = f"label {last}" if new == 1 else f"labels {first} to {last}"
    return (
        f"Not committed: '{name}' is {labels.dtype} and holds ids up to {most}; this commit "
        f"needs {ids}. Pick \"{NEW_LAYER_ENTRY}\" in 'Labels layer' and commit again (its ids "
        f"start at 1, so they repeat ids of '{name}'); or, to keep one id per object, give "
        f"'{name}' a larger dtype: type in napari's console: layer = viewer.layers[{name!r}]; "
        "layer.data = layer.data.astype('uint32') (then commit again)."
    )
