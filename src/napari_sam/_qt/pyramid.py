"""Multiscale (pyramid) image layers, e.g. OME-Zarr opened by napari: the dock segments
their full-resolution level ``layer.data[0]``, in its pixel grid (napari's ``layer.scale``
and ``layer.translate`` are level 0's, so our layers take them as for any image)."""

from __future__ import annotations

from napari_sam.annotate.image_source import ImageSource, make_source


def layer_source(layer, channel_axis: int | None, channel: int | None,
                 time_point: int | None = None, time_first: bool = False) -> ImageSource:
    """The :class:`ImageSource` of image ``layer`` (a multiscale one: of its level 0; a movie
    of volumes at ``time_point``, its first axis time also when short where ``time_first``:
    :func:`~napari_sam.annotate.image_source.make_source`).

    Raises
    ------
    UnsupportedImage
        The layer's data cannot be segmented; the message says what to do.
    """
    return make_source(layer.data, rgb=bool(getattr(layer, "rgb", False)),
                       channel_axis=channel_axis, channel=channel,
                       multiscale=bool(getattr(layer, "multiscale", False)),
                       time_point=time_point, time_first=time_first)


def level_note(layer) -> str:
    """The status line's words on a multiscale image ``layer``: which level SAM segments,
    e.g. "'x' is a multiscale image (3 levels): SAM segments its full-resolution level
    (64 x 64 px)." ("" for a single-level layer)."""
    if not getattr(layer, "multiscale", False):
        return ""
    shape = tuple(int(n) for n in layer.data[0].shape)
    rows, cols = shape[-3:-1] if getattr(layer, "rgb", False) else shape[-2:]
    return (f"'{layer.name}' is a multiscale image ({len(layer.data)} levels): SAM segments "
            f"its full-resolution level ({rows} x {cols} px).")
