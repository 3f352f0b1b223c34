"""What a commit of the annotation session must not do without the user knowing: write a
preview that no longer matches the prompts drawn (live preview off), erase a refined label
where its new mask is empty, or move a refined label onto another object.

Pure functions of the preview, the prompts and the labels; the session raises their messages
as :class:`~napari_sam.annotate.errors.UserError` and shows them in the status line while
previewing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_sam.annotation import ObjectMask, ObjectPreview

__all__ = ["preview_out_of_date", "refine_changed", "refine_problem", "volume_out_of_date"]


def _same_prompt(a, b) -> bool:
    """Whether two drawn prompts (points, labels, box) hold the same values."""
    if a is None or b is None:
        return a is b
    if (a.box is None) != (b.box is None):
        return False
    return (np.array_equal(np.asarray(a.points, float), np.asarray(b.points, float))
            and np.array_equal(np.asarray(a.labels), np.asarray(b.labels))
            and (a.box is None or np.array_equal(np.asarray(a.box, float),
                                                 np.asarray(b.box, float))))


def preview_out_of_date(previews: Sequence[ObjectPreview], objects) -> str:
    """Why the slice preview ``previews`` is not the decoding of the prompts drawn now
    (``objects``: :func:`~napari_sam.annotate.prompt_groups.group_prompts`' objects), "" when
    it is: on the slices of the preview, every object has the prompts it was decoded from,
    and no object was added or removed."""
    shown = {(p.key, p.z): p.prompt for p in previews}
    slices = {p.z for p in previews}
    drawn = {(o.key, z): sp for o in objects for z, sp in o.slices.items() if z in slices}
    if set(drawn) != set(shown) or any(not _same_prompt(drawn[k], shown[k]) for k in drawn):
        return ("the prompts changed since the preview was computed, so the preview is not "
                "what they segment: press Shift+S to compute it, then Shift+C")
    return ""


def refine_changed(previewed: int, now: int) -> str:
    """Why a slice preview made while refining label ``previewed`` (0: none) is not what a
    commit refining ``now`` would write, "" when they are the same label."""
    if int(previewed) == int(now):
        return ""
    what = (f"label {previewed}" if previewed else "no label") + " then, " + (
        f"label {now}" if now else "no label") + " now"
    return ("the label refined changed since the preview was computed ('Refine selected "
            f"label' or the label picked: {what}), so it would replace the wrong label: press "
            "Shift+S to compute the preview again, then Shift+C")


def volume_out_of_date(drawn_then, drawn_now) -> str:
    """Why a propagated preview made from the prompt arrays ``drawn_then`` (points, labels,
    boxes) is not what the prompts ``drawn_now`` propagate, "" when they are the same."""
    if drawn_then is None or all(np.array_equal(np.asarray(a), np.asarray(b))
                                 for a, b in zip(drawn_then, drawn_now)):
        return ""
    return ("the prompts changed since the propagation, so the preview is not what they "
            "propagate: press Shift+D to propagate again, then Shift+C")


def refine_problem(objects: Sequence[ObjectMask], labels: np.ndarray) -> str:
    """Why committing ``objects`` into the (Z, Y, X) ``labels`` would damage a refined label,
    "" when it would not: a refined mask that is empty where the label is (the label would be
    erased there: a negative point alone often leaves nothing), or one that does not touch
    the label at all (it is another object: the label would move there)."""
    for obj in objects:
        if not obj.replaces:
            continue
        old = labels == obj.replaces if obj.z is None else labels[obj.z] == obj.replaces
        where = "" if obj.z is None else f" on slice {obj.z}"
        n_old = int(old.sum())
        if not n_old:
            continue
        if not obj.mask.any():
            return (f"the refined mask of label {obj.replaces}{where} is empty, so committing "
                    f"would erase label {obj.replaces} there ({n_old} pixels): add a positive "
                    "point on the part to keep (a negative point alone often leaves nothing), or "
                    "untick 'Refine selected label'; to erase the label, use the labels layer's "
                    "eraser")
        if not (obj.mask & old).any():
            return (f"the refined mask{where} does not touch label {obj.replaces}: it is another "
                    f"object, and committing would move label {obj.replaces} there; click on "
                    f"label {obj.replaces} to refine it, or untick 'Refine selected label' to "
                    "commit a new label")
    return ""
