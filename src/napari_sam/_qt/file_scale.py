"""The voxel size of an image layer's file, which napari's reader drops: the dock sets it on
the layer, so that the labels made and saved from the dock keep it as the command line's do.

napari opens an ImageJ TIFF of a CT volume with 12.5 µm voxels (or a confocal stack with
2 µm z steps and 0.3 µm pixels) at scale 1 in pixels; the labels layers the dock made copied
that, and labels saved from napari lost the voxel size the command line's outputs keep
(porosity or volume measurements need it). A layer the user scaled is left as it is.

The view follows where napari's fit of the view is still what it shows (the image just
opened): a scale of 0.5 µm left it in the top-left quarter of the canvas (and a z step of
2 µm moved the slider to another slice); the view is fitted again and the slice kept. A view
the user moved, or fitted to other layers (a second file picked later), is left as it is.
"""

from __future__ import annotations

import numpy as np

__all__ = ["apply_file_scale", "file_time_interval"]


def file_time_interval(layer) -> dict | None:
    """The time between frames (``{"value", "unit"}``, :mod:`napari_sam.io.time_interval`)
    that the file of image ``layer`` names for its time axis, which napari's reader drops
    too: the dock puts it in its labels layers' ``metadata["time_interval"]``, which our
    writer saves (as ``napari-sam auto`` writes it); None where the file names none."""
    from napari_sam.io import file_header

    path = getattr(getattr(layer, "source", None), "path", None)
    header = file_header(path) if path else None
    if header is None or "T" not in header.axes:
        return None
    return header.time_interval


def apply_file_scale(layer, layers=(), viewer=None) -> str:
    """Set image ``layer``'s scale (and units) from the voxel size its file's metadata names,
    when the layer has napari's default scale (all 1), translate (0) and units (pixels).

    Only the spatial axes get a size (Z, Y, X); a time or channel axis keeps 1. Nothing
    happens for a layer not read from a file (or read from a PNG or JPEG picture), a file
    without a voxel size (or one of 1 in every axis), or a layer whose dimensions are not the
    file's. When another of ``layers`` (the viewer's) with the same rows and columns is at
    the default scale (labels opened beside the image), nothing is set either, as it would no
    longer line up with the image: the line says so. With ``viewer``, its camera and sliders
    follow the new scale where it still shows what napari fitted (:func:`_still_fitted`).

    Returns
    -------
    str
        The status line saying what was set (or why not), or "".
    """
    from napari_sam.io import file_header
    from napari_sam.io.readers import PHOTO_SUFFIXES

    from .layers import PREVIEW_NAME, unwrap

    path = getattr(getattr(layer, "source", None), "path", None)
    if not path or str(path).lower().endswith(PHOTO_SUFFIXES) or not np.allclose(
            np.asarray(layer.scale, float), 1.0) or np.any(np.asarray(layer.translate)):
        return ""
    if any(str(u) not in ("pixel", "pixels", "None") for u in getattr(layer, "units", ())):
        return ""
    header = file_header(path)
    if header is None or header.pixel_size is None or np.allclose(header.pixel_size, 1.0):
        return ""
    sizes = header.pixel_size
    axes = header.axes
    axes = axes[:-1] if getattr(layer, "rgb", False) and axes.endswith("C") else axes
    if len(axes) != layer.ndim:
        return ""
    size_of = dict(zip([a for a in "ZYX" if a in axes], (float(s) for s in sizes)))
    unit = header.unit or "pixel"
    said = (f"Voxel size {' x '.join(f'{size_of[a]:g}' for a in 'ZYX' if a in size_of)} "
            f"{unit} ({''.join(a for a in 'ZYX' if a in size_of)}) from the file of "
            f"'{layer.name}' (napari's reader dropped it)")
    beside = [other.name for other in map(unwrap, layers) if other is not layer
              and type(other).__name__ in ("Image", "Labels") and other.name != PREVIEW_NAME
              and np.allclose(np.asarray(other.scale, float), 1.0)
              and tuple(getattr(other.data, "shape", ())[-2:]) == tuple(layer.data.shape[-2:])]
    if beside:
        return (f"{said}: not set on the layer, as '{beside[0]}' of the same size is at scale "
                "1 and would no longer line up with it (set both layers' scale in napari to "
                "use it).")
    follow = viewer is not None and _still_fitted(viewer, layer)
    shown = np.asarray(layer.world_to_data(np.asarray(viewer.dims.point))) if follow else None
    layer.scale = [size_of.get(a, 1.0) for a in axes]
    if follow:
        _fit_again(viewer, layer, shown)
    try:
        layer.units = [unit if a in size_of else "pixel" for a in axes]
    except (ValueError, TypeError, AttributeError):  # a unit napari does not know
        return (f"{said}: the layer's scale is set; its unit '{unit}' is unknown to napari, "
                "so the axes stay in pixels and labels saved from here claim no unit.")
    return f"{said}: the layer's scale is set, and labels made here keep it."



def _still_fitted(viewer, layer) -> bool:
    """Whether ``viewer`` shows what napari's fit of the view shows (nobody moved it since)
    and ``layer`` has no rotation, shear or affine transform (its scale alone places it)."""
    eye = np.eye(layer.ndim)
    if not (np.allclose(layer.rotate, eye) and np.allclose(layer.shear, 0)
            and np.allclose(layer.affine.affine_matrix, np.eye(layer.ndim + 1))):
        return False
    cam = getattr(viewer, "scene", viewer).camera  # (napari 0.9: viewer.camera deprecated)
    before = (tuple(cam.center), float(cam.zoom), tuple(cam.angles))
    viewer.reset_view()
    fitted = (np.allclose(before[0], cam.center, atol=1e-3)
              and np.isclose(before[1], cam.zoom, rtol=1e-3))
    cam.center, cam.zoom, cam.angles = before  # (within one event: nothing was drawn)
    return bool(fitted)


def _fit_again(viewer, layer, shown) -> None:
    """Fit the view again after ``layer``'s scale changed, and show its slice ``shown`` (the
    data point shown before) again on the sliders."""
    viewer.reset_view()
    world = np.asarray(layer.data_to_world(shown), float)
    n = viewer.dims.ndim
    for i, axis in enumerate(range(n - layer.ndim, n)):
        if axis >= 0 and axis not in viewer.dims.displayed:
            viewer.dims.set_point(axis, world[i])
