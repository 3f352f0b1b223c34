"""Which labels layer an image's commits go into: each labels layer the dock commits into
remembers the images it was committed from (in its ``metadata``, so a dock closed and opened
again finds it too), and picking an image goes back to that image's layer. Two images of the
same shape never share a layer unless the user picks it (before, the layer that fitted was
kept, and one image's commits and autosave took the other's labels)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from napari_sam._qt.layers import TARGET_NAME, same, unwrap

__all__ = ["IMAGES_KEY", "deleted_labels_text", "made_for", "remember_image", "target_for_image"]

#: key of a labels layer's ``metadata``: the ``unique_id`` of each image committed into it
IMAGES_KEY = "napari_sam_images"


def _images(layer) -> list:
    meta = getattr(unwrap(layer), "metadata", None)
    return list(meta.get(IMAGES_KEY, ())) if isinstance(meta, dict) else []


def remember_image(labels_layer, image_layer) -> None:
    """Record that ``image_layer``'s commits go into ``labels_layer``."""
    layer, image = unwrap(labels_layer), unwrap(image_layer)
    uid = getattr(image, "unique_id", None)
    if layer is None or uid is None or uid in _images(layer):
        return
    layer.metadata = {**layer.metadata, IMAGES_KEY: [*_images(layer), uid]}


def made_for(labels_layer, image_layer, alive=None) -> bool | None:
    """True: ``image_layer`` was committed into ``labels_layer``; False: only other images
    were; None: no image was (a layer the user made or picked), or only images no longer
    open (``alive``: the ``unique_id`` of every image open; a file opened again is a new
    layer and may go on in the labels of the old one)."""
    images = [i for i in _images(labels_layer) if alive is None or i in alive]
    if not images:
        return None
    return getattr(unwrap(image_layer), "unique_id", None) in images


def target_for_image(current, fitting: Sequence, image_layer,
                     autosave_holder: Callable[[Sequence], int | None], alive=None):
    """The labels layer commits of ``image_layer`` go into after it was picked (None: a new
    one at the first commit).

    In order: the ``current`` target if it fits and is not another image's; the last of the
    ``fitting`` layers (labels layers of the image's shape and transform) committed from this
    image; the one ``autosave_holder(layers)`` names (it holds this image's autosaved labels:
    a dock opened again) among those no other image committed into; the one named
    'segmentation' that no image committed into; else None. Images not in ``alive`` (the
    ``unique_id`` of the images open; None: all) count as never committed.
    """
    if current is not None and any(same(current, ly) for ly in fitting) \
            and made_for(current, image_layer, alive) is not False:
        return current
    mine = [ly for ly in fitting if made_for(ly, image_layer, alive)]
    if mine:
        return mine[-1]
    free = [ly for ly in fitting if made_for(ly, image_layer, alive) is None]
    held = autosave_holder(free) if free else None
    if held is not None:
        return free[held]
    return next((ly for ly in free if ly.name == TARGET_NAME), None)


def deleted_labels_text(name: str, steps: int, target: bool) -> str:
    """The status line after the labels layer ``name`` was deleted: the undo and redo steps
    (``steps``) that went with it, and where commits go now (``target``: it was the layer
    commits went into)."""
    gone = (f" Its {steps} undo/redo step{'s' if steps != 1 else ''} went with it."
            if steps else "")
    where = (" The next commit goes into a new 'segmentation' layer (or pick one in "
             "'Labels layer')." if target else "")
    return f"The labels layer '{name}' was deleted.{gone}{where}"
