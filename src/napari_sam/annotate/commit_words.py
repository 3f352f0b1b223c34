"""What a commit, an undo or a redo of the annotation session did, in the status line's
words (true pixel counts, the pixels left alone because they were edited since)."""

from __future__ import annotations

import numpy as np

from napari_sam.words import counted, for_count, in_frames

__all__ = ["LIVE_OFF", "describe_commit", "edited_note", "nothing_to_commit"]

#: What answers a prompt added while 'Live preview' is off (nothing is decoded until Shift+S)
LIVE_OFF = ("Prompt kept; 'Live preview' is off, so nothing is decoded yet: press Shift+S to "
            "preview the object, then Shift+C to commit it.")


def nothing_to_commit(prompt_arrays, live: bool, current_z, axis_kind: str = "z") -> str:
    """Why a commit found no preview: no prompts, prompts on other slices only, or prompts not
    previewed yet (``prompt_arrays``: the session's (points (P, 3), point labels, boxes
    (N, 5)), z first; ``live``: whether 'Live preview' is on; ``current_z()``: the slice
    shown; ``axis_kind`` "t": a time series, told in frames). A user who clicked with the
    live preview off was told to click."""
    from napari_sam.trace import describe_slices

    points, _, boxes = prompt_arrays
    if not len(points) + len(boxes):
        return "Nothing to commit: click a point or draw a box on the object first."
    slices, z = sorted({int(round(v)) for v in [*points[:, 0], *boxes[:, 0]]}), current_z()
    if z not in slices:
        where = describe_slices(slices, True)
        return in_frames(f"Not committed: nothing is previewed on this slice ({z}); the "
                         f"prompts are on {where}: go there to preview and commit them "
                         "(Shift+D propagates them).", axis_kind)
    why = "'Live preview' is off" if not live else "its preview is not ready"
    return in_frames(f"Not committed: the prompts have no preview yet ({why}). Press Shift+S "
                     "to preview them on this slice, check the mask, then Shift+C.", axis_kind)


def edited_note(commit, redo: bool) -> str:
    """The status note after an undo (``redo``: a redo) of ``commit`` that left pixels alone
    because they were edited since the commit (the undo), e.g. " 97 pixels changed since the
    commit (painted, erased or committed over) were left as they are."; "" when it left none.
    A redo that found the commit's pixels all back (``found_back``) says so, "Label 2 is
    already back (napari's Ctrl+Z?): nothing was written."; an undo that found none of them,
    that the commit was already undone or erased on the layer, and that Redo puts it back.
    """
    n = commit.left
    if redo and commit.found_back:
        what = _labels_words(commit.ids)
        verb = "is" if len(commit.ids) == 1 else "are"
        return (f" {what} {verb} already back, pixel for pixel (napari's Ctrl+Z?): nothing was "
                "written.")
    if not n and commit.n_written == 0:  # napari's Ctrl+Z, or the eraser, did it already
        if redo:
            return " Nothing changed: its undo had restored no pixel."
        back = "; Redo puts it back." if commit.n_pixels else "."
        if commit.ids and commit.ids == commit.new_ids:
            verb = "was" if len(commit.ids) == 1 else "were"
            return (f" Nothing changed: {_labels_words(commit.ids).lower()} {verb} already "
                    f"removed from the layer (napari's Ctrl+Z or the eraser?){back}")
        return (" Nothing changed: its pixels were already as before the commit (napari's "
                f"Ctrl+Z or the eraser?){back}")
    if not n:
        return ""
    what = f"{n} pixel changed" if n == 1 else f"{n} pixels changed"
    verb = "was left as it is" if n == 1 else "were left as they are"
    since = "the undo" if redo else "the commit"
    rest = ("; nothing else was left to " + ("redo" if redo else "undo")
            if commit.n_written == 0 else "")
    return f" {what} since {since} (painted, erased or committed over) {verb}{rest}."


def _labels_words(ids) -> str:
    """"Label 2" or "Labels 2, 3"."""
    return ("Label " if len(ids) == 1 else "Labels ") + ", ".join(str(i) for i in ids)


def describe_commit(commit, objects: list, data: np.ndarray) -> str:
    """What ``commit`` (of ``objects`` into (Z, Y, X) ``data``, after it) wrote, in true
    pixel counts: new labels with their size, "Committed labels 6, 7 (812 pixels)."; a
    refined label with its size where it was refined and the pixels it gained and lost,
    "Refined label 5: 1325 pixels on slice 3 now (1231 added, 162 removed).", on a movie of
    volumes with the time point ("Committed label 1 (444 pixels) at time point 2."). A new label
    that other labels lie inside of (a fragment the eraser left of a committed object, which
    the commit does not overwrite) is named with them and what makes one object of them."""
    new, parts, inside = [], [], []
    at = getattr(commit, "time_point", None)  # a movie's (ImageSource.in_layer)
    when = "" if at is None else f" at time point {at}"
    for obj, change, i in zip(objects, commit.changes, commit.ids):
        if not obj.replaces:
            new.append((i, len(change.index)))
            inside.append(_fragments_note(obj, i, data, commit.ids))
            continue
        added, removed = int((change.after == i).sum()), int((change.before == i).sum())
        region, where = (data, "") if obj.z is None else (data[obj.z], f" on slice {obj.z}")
        size = counted(int((region == i).sum()), "pixel")
        parts.append(f"Refined label {i}: {size}{where}{when} now "
                     f"({added} added, {removed} removed).")
    if new:
        ids = ", ".join(str(i) for i, _ in new)
        size = counted(sum(n for _, n in new), "pixel")
        parts.insert(0, f"Committed {for_count(len(new), 'label')} {ids} ({size}){when}.")
    return " ".join(parts + [n for n in inside if n])


def _fragments_note(obj, value: int, data: np.ndarray, ours=()) -> str:
    """The sentence naming the other labels that lie, at least half of their pixels on the
    mask's slice (or in the volume), under new label ``value``'s mask (``obj.mask``) in
    ``data`` after the commit; "" when none does (a neighbour the mask touches is not one;
    nor the labels ``ours`` of the same commit)."""
    region = data if obj.z is None else data[obj.z]
    under = region[obj.mask]
    under = under[(under != 0) & ~np.isin(under, [value, *ours])]
    others, counts = np.unique(under, return_counts=True)
    if not others.size:
        return ""
    box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in np.nonzero(obj.mask))
    found = []
    for other, n in zip(others.tolist(), counts.tolist()):
        # in the mask's box first: the whole region is read only for a likely fragment
        if 2 * n >= int((region[box] == other).sum()) and 2 * n >= int((region == other).sum()):
            found.append((other, n))
    if not found:
        return ""
    names = ", ".join(f"{other} ({counted(n, 'pixel')})" for other, n in found)
    one = len(found) == 1
    where = "" if obj.z is None else f" on slice {obj.z}"
    first = found[0][0]
    return (f"Label{'s' * (not one)} {names} remain{'s' * one} inside label {value}{where} "
            "(commits do not overwrite other labels): to make one object, undo and refine "
            f"label {first} instead (select it, tick 'Refine selected label'), or tick "
            "'Overwrite other labels' and commit again.")
