"""What a training run says about its validation: the notes on the data before it starts
(:func:`data_notes`), an epoch's validation fields and words (:func:`validation_fields`,
:func:`validation_words`) and the note when the validation items hold no object to measure
(:func:`no_objects_note`: the run then picks its best epoch by training IoU, never by nan)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_sam.words import counted

from .data import MIN_OBJECT_PIXELS, TrainItem

__all__ = ["data_notes", "no_objects_note", "validation_fields", "validation_words"]


def data_notes(pairs, items, val_items, img_size: int) -> list[str]:
    """What the user should know about the training data before training starts: the
    images :func:`~napari_sam.training.data.make_items` left out (no object large enough at
    the model input), a validation on the training item itself (only one item usable) or on
    slices of the one stack trained on."""
    used = {it.source for it in items}
    notes = [f"{pair.name}: left out of training: no object has at least {MIN_OBJECT_PIXELS} "
             f"pixels at the model input ({img_size} px)"
             for i, pair in enumerate(pairs) if i not in used]
    if val_items and val_items[0].meta.get("shared"):
        notes.append(f"only one image{' slice' if pairs[items[0].source].labels.ndim == 3 else ''}"
                     f" has objects to train on ({items[0].name}): validation runs on it too, "
                     "so the validation IoU measures the fit to the training data, not how the "
                     "model does on new images; give more labelled images for a held-out "
                     "validation")
    elif val_items and len(pairs) == 1 and pairs[0].labels.ndim == 3:
        notes.append(f"validation holds out {counted(len(val_items), 'slice')} "
                     "of the one stack "
                     f"({pairs[0].name}) trained on: neighbouring slices show the same "
                     "objects, so the validation IoU is close to the fit to the training "
                     "data; give another labelled stack for a held-out validation")
    return _movie_notes(pairs, bool(val_items)) + notes


def _movie_notes(pairs, split: bool) -> list[str]:
    """For each movie of volumes trained on (``pair.movie``): its time points with labels,
    each a training stack of its own, those left out, and (``split``) that the validation
    split holds out whole time points."""
    movies: dict[str, tuple[int, list[int]]] = {}
    for pair in pairs:
        if pair.movie is not None:
            name, t, n = pair.movie
            movies.setdefault(name, (n, []))[1].append(t)
    notes = []
    for name, (n, used) in movies.items():
        left = [t for t in range(n) if t not in used]
        notes.append(
            f"{name}: a movie of {n} time points: "
            + (f"each of the {len(used)} time points" if len(used) > 1 else "the one time point")
            + f" with labels (t={', '.join(map(str, used))}) is a training stack of its own"
            + (f"; time points without labels (t={', '.join(map(str, left))}) are left out"
               if left else "")
            + ("; the validation split holds out whole time points (neighbouring time points "
               "show the same objects, so it measures the fit to this movie more than to new "
               "ones)" if split and len(used) > 1 else ""))
    return notes


def no_objects_note(val_items: Sequence[TrainItem], save: str = "best") -> str:
    """The note when :func:`~napari_sam.training.evaluation.evaluate` found no object in the
    validation items: which images, where to add labelled ones, and what the run does instead
    (it picks the best epoch by training IoU; ``save="last"`` writes the last epoch).

    Parameters
    ----------
    val_items : sequence of TrainItem
        The validation items (``name``: the image's, or "IMAGE / LABELS" naming both files;
        ``[z=..]`` after it for a stack slice).
    save : {"best", "last"}
        The run's ``save`` (:func:`~napari_sam.training.run.train`): which epoch it writes.

    Returns
    -------
    str
    """
    names = [it.name or f"item {i}" for i, it in enumerate(val_items)]
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    images = [n.split(" / ")[0].split("[z=")[0] for n in names]  # "IMAGE / LABELS[z=3]"
    folders = sorted({str(Path(n).parent) for n in images if n})
    where = (f" in {', '.join(folders)}" if folders and folders != ["."] else "")
    written = ("the last epoch (save='last')" if save == "last"
               else "the epoch with the best training IoU")
    return (f"validation had no objects: the {counted(len(names), 'validation image')} "
            f"({shown}) {'holds' if len(names) == 1 else 'hold'} no labelled object to "
            f"measure, so there is no validation IoU and the checkpoint is {written}; add "
            f"labelled images{where} (each with its label image) for a held-out validation, "
            "or train with --val-fraction 0 (val_fraction=0) to skip it")


def validation_fields(ev: dict[str, Any], base: dict[str, Any] | None, shared: bool
                      ) -> dict[str, Any]:
    """An epoch's validation entries of the history from what ``evaluate`` returned.

    Parameters
    ----------
    ev : dict
        :func:`~napari_sam.training.evaluation.evaluate`'s result.
    base : dict or None
        The base model's validation (``val_object_ious``: per object, the same objects).
    shared : bool
        Whether validation ran on the training data (only one usable item).

    Returns
    -------
    dict
        ``val_objects`` always; ``val_iou``, ``val_point_iou``, ``val_box_iou`` (and
        ``val_gain_se`` with the base's objects) only when there were objects: without, no
        IoU is recorded (was: nan, which the report printed and the best epoch compared).
    """
    rec: dict[str, Any] = {"val_objects": int(ev["n_objects"])}
    if not ev["n_objects"]:
        return rec
    rec.update(val_point_iou=ev["point_iou"], val_box_iou=ev["box_iou"], val_iou=ev["val_iou"])
    before = np.asarray((base or {}).get("val_object_ious", []), float)
    mine = ev["object_ious"]
    if len(before) == len(mine) > 1:  # the same objects: the gain's paired standard error
        rec["val_gain_se"] = float(np.std(mine - before, ddof=1) / np.sqrt(len(mine)))
    if shared:
        rec["val_on_training_data"] = True
    return rec


def validation_words(rec: dict[str, Any], shared: bool) -> str:
    """The validation part of an epoch's line: ", val IoU 0.712 (point ..., box ...)", or
    ", no validation objects" when validation found none (never "val IoU nan")."""
    if rec.get("val_iou") is None:
        return ", no validation objects (best epoch by training IoU)"
    return (f", val IoU{' (on the training data)' if shared else ''} {rec['val_iou']:.3f} "
            f"(point {rec['val_point_iou']:.3f}, box {rec['val_box_iou']:.3f})")
