"""Which labels layer an image's commits go into: each labels layer the dock commits into
remembers the images it was committed from (in its ``metadata``, so a dock closed and opened
again finds it too), and picking an image goes back to that image's layer. Two images of the
same shape never share a layer unless the user picks it (before, the layer that fitted was
kept, and one image's commits and autosave took the other's labels)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from napari_sam._qt.layers import TARGET_NAME, same, unwrap
from napari_sam.words import counted

__all__ = ["IMAGES_KEY", "deleted_labels_text", "made_for", "open_images", "other_image_problem",
           "remember_image", "reshaped_problem", "target_for_image"]

#: key of a labels layer's ``metadata``: ``{"layer": its own unique_id, "images": [the
#: unique_id of each image committed into it], "shape": the shape of its data they were
#: written into}`` (strings; a copy napari's *Duplicate Layer* makes has another id, so it
#: claims no image)
IMAGES_KEY = "napari_sam_images"


def _record(layer) -> dict:
    layer = unwrap(layer)
    meta = getattr(layer, "metadata", None)
    rec = meta.get(IMAGES_KEY) if isinstance(meta, dict) else None
    if not isinstance(rec, dict) or rec.get("layer") != str(getattr(layer, "unique_id", "")):
        return {}
    return rec


def _images(layer) -> list[str]:
    return [str(i) for i in _record(layer).get("images") or ()]


def _written_shape(layer) -> tuple[int, ...] | None:
    """The shape of ``layer``'s data when the dock last committed into it (None: unknown)."""
    shape = _record(layer).get("shape")
    return tuple(int(n) for n in shape) if isinstance(shape, (list, tuple)) else None


def remember_image(labels_layer, image_layer) -> None:
    """Record that ``image_layer``'s commits go into ``labels_layer``, and the shape of its
    data they are written into (an undo refuses another: :func:`other_image_problem`)."""
    layer, image = unwrap(labels_layer), unwrap(image_layer)
    uid = getattr(image, "unique_id", None)
    if layer is None or uid is None:
        return
    shape = [int(n) for n in layer.data.shape]
    images = _images(layer)
    if str(uid) in images and _written_shape(layer) == tuple(shape):
        return
    images = images if str(uid) in images else [*images, str(uid)]
    rec = {"layer": str(layer.unique_id), "images": images, "shape": shape}
    layer.metadata = {**layer.metadata, IMAGES_KEY: rec}


def made_for(labels_layer, image_layer) -> bool | None:
    """True: ``image_layer`` was committed into ``labels_layer``; False: only other images
    were (open or not); None: no image was (a layer the user made or picked)."""
    images = _images(labels_layer)
    if not images:
        return None
    return str(getattr(unwrap(image_layer), "unique_id", None)) in images


def open_images(viewer) -> set[str]:
    """The ``unique_id`` (as strings) of every image layer open in ``viewer``."""
    from napari.layers import Image

    return {str(ly.unique_id) for ly in map(unwrap, viewer.layers) if isinstance(ly, Image)}


def other_image_problem(target, image_layer, viewer=None) -> str | None:
    """Why an undo or redo of a commit into labels layer ``target`` is refused while
    ``image_layer`` is shown (None: it is not): only other images were committed into it
    (with ``viewer``: whether any of them is still open there), or its data was replaced by
    an array of another shape than the commits were written into (their pixels would land
    elsewhere, or outside it)."""
    if made_for(target, image_layer) is not False:
        return reshaped_problem(target)
    if viewer is not None and not set(_images(target)) & open_images(viewer):
        return (f"the last commit went into '{target.name}', the labels of an image that is "
                "no longer open, so the dock cannot undo or redo it; its labels stay in that "
                "layer (erase one with napari's labels tools if it must go)")
    return (f"the last commit went into '{target.name}', the labels of another image; pick "
            "that image in 'Image' to undo or redo it (one history holds the commits of every "
            "image)")


def reshaped_problem(target) -> str | None:
    """Why the dock cannot undo or redo its commits into labels layer ``target`` now: its data
    has another shape than they were written into, axes of size 1 aside (None: it has not, or
    that is unknown)."""
    written, now = _written_shape(target), tuple(int(n) for n in unwrap(target).data.shape)
    if written is None or [n for n in written if n != 1] == [n for n in now if n != 1]:
        return None  # (axes of size 1 aside, as the history's own check: same pixels)
    return (f"'{target.name}' has shape {now} but its commits were written into shape "
            f"{written} (its data was replaced since); nothing was changed and the step is "
            f"kept: put labels of shape {written} back into '{target.name}' (layer.data = ...), "
            "then try again")


def target_for_image(current, fitting: Sequence, image_layer,
                     autosave_holder: Callable[[Sequence], int | None], alive=()):
    """The labels layer commits of ``image_layer`` go into after it was picked (None: a new
    one at the first commit).

    In order: the ``current`` target if it fits and no other image was committed into it;
    the last of the ``fitting`` layers (labels layers of the image's shape and transform)
    committed from this image; the one ``autosave_holder(layers)`` names (it holds exactly
    this image's autosaved labels: a dock opened again, the file opened again) among those
    no open image committed into (``alive``: the ``unique_id`` of the images open); the one
    named 'segmentation' no image committed into; else None. A layer of an image that was
    closed goes to no other image but through its autosave.
    """
    def orphan(ly) -> bool:
        return made_for(ly, image_layer) is False and not set(_images(ly)) & set(map(str, alive))

    if current is not None and any(same(current, ly) for ly in fitting) \
            and made_for(current, image_layer) is not False:
        return current
    mine = [ly for ly in fitting if made_for(ly, image_layer)]
    if mine:
        return mine[-1]
    free = [ly for ly in fitting if made_for(ly, image_layer) is None or orphan(ly)]
    held = autosave_holder(free) if free else None
    if held is not None:
        return free[held]
    return next((ly for ly in free if ly.name == TARGET_NAME and made_for(ly, image_layer)
                 is None), None)


def deleted_labels_text(name: str, steps: int, target: bool) -> str:
    """The status line after the labels layer ``name`` was deleted: the undo and redo steps
    (``steps``) that went with it, and where commits go now (``target``: it was the layer
    commits went into)."""
    gone = f" Its {counted(steps, 'undo/redo step')} went with it." if steps else ""
    where = (" The next commit goes into a new 'segmentation' layer (or pick one in "
             "'Labels layer')." if target else "")
    return f"The labels layer '{name}' was deleted.{gone}{where}"
