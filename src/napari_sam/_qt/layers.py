"""The napari layers the plugin makes: prompt points, prompt boxes, preview and result labels.

Points carry a categorical feature ``prompt`` ("positive" / "negative") that sets their colour:
green for positive, magenta for negative (tell-apart for most colour-blind users as well).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_sam.annotate.image_source import ImageSource
from napari_sam.annotate.prompt_groups import boxes_from_shapes
from napari_sam.prompts import MIN_BOX_SIDE

__all__ = [
    "BOXES_NAME",
    "MIN_BOX_SIDE",
    "NEGATIVE_COLOR",
    "POINTS_NAME",
    "POSITIVE_COLOR",
    "PREVIEW_NAME",
    "TARGET_NAME",
    "LayerWatch",
    "add_boxes_layer",
    "add_labels_layer",
    "add_points_layer",
    "add_preview_layer",
    "alignment_problem",
    "box_rectangles",
    "boxes_from_layer",
    "data_to_world_matrix",
    "drop_shown_prompts",
    "geometry",
    "layer_coords",
    "read_boxes",
    "read_points",
    "remove_layer",
    "same",
    "set_geometry",
    "transform_problem",
    "unwrap",
]

POINTS_NAME = "SAM points"
BOXES_NAME = "SAM boxes"
PREVIEW_NAME = "SAM current object"
TARGET_NAME = "segmentation"
POSITIVE_COLOR = "#39ff14"
NEGATIVE_COLOR = "#ff00ff"
PROMPT_KINDS = ("positive", "negative")
#: the preview's colours, object 1, 2, ... (cycled): bright colours far (RGB distance >= 0.4)
#: from the first 20 colours of napari's labels colormap and from the prompt points', so a
#: preview never looks like a committed label (it had label 1's colour)
PREVIEW_COLORS = ("#00ff99", "#0066ff", "#ff99cc", "#ff0099", "#ffffff", "#0000ff")


def unwrap(obj):
    """The object behind napari's ``PublicOnlyProxy``, or ``obj`` itself.

    napari hands a plugin opened from the menu a proxy of the viewer, and every layer read
    through it is a new proxy: ``proxy is layer`` is False, and ``id(proxy.data)`` changes
    between two reads. The session keeps the layers themselves.
    """
    while obj is not None and hasattr(obj, "__wrapped__"):
        obj = obj.__wrapped__
    return obj


#: the GL programs of the Shapes layers :func:`remove_layer` removed, kept (see there)
_KEPT_PROGRAMS: list = []


def remove_layer(viewer, layer) -> None:
    """Remove ``layer`` (one the plugin made) from ``viewer``; a Shapes layer's OpenGL
    programs are kept for the life of the process.

    On Mesa's software OpenGL (llvmpipe: Xvfb, remote desktops, machines without a GPU
    driver) deleting the GL programs of the viewer's last Shapes layer makes the second
    frame drawn after it crash the process: a segmentation fault in ``glDrawArrays`` while
    the image layer is drawn (napari 0.9, vispy 0.17, Mesa 22.3; vispy issue #1611 is the
    same crash on a Windows driver). vispy deletes a visual's GL objects with its Python
    objects, as soon as napari removes the layer; so closing the dock, which removes the
    'SAM boxes' layer, crashed napari at the next redraws (a pan, the next dock's first
    progress bar). Kept: the five small programs of that layer's visuals (and the buffers of
    its few boxes), never the layer; nothing where the viewer has no canvas.
    """
    _KEPT_PROGRAMS.extend(_gl_programs(viewer, layer))
    viewer.layers.remove(layer)


def _gl_programs(viewer, layer) -> list:
    """The vispy programs drawing Shapes ``layer`` in ``viewer``'s canvas ([] for another
    kind of layer, or without a canvas)."""
    from napari.layers import Shapes

    layer = unwrap(layer)
    if not isinstance(layer, Shapes):
        return []
    try:
        window = unwrap(viewer).window
        nodes = [window._qt_viewer.canvas.layer_to_visual[layer].node]
    except (AttributeError, KeyError, RuntimeError):  # headless, or napari changed
        return []
    programs = []
    while nodes:
        node = nodes.pop()
        if hasattr(node, "_subvisuals"):  # a vispy CompoundVisual (vispy is napari's)
            nodes.extend(node._subvisuals)
        elif getattr(node, "view_program", None) is not None:  # the program it draws with
            programs.append(node.view_program)
    return programs


def same(a, b) -> bool:
    """Whether ``a`` and ``b`` are the same layer, proxied or not (None is no layer)."""
    return a is not None and b is not None and unwrap(a) is unwrap(b)


def data_to_world_matrix(layer) -> np.ndarray:
    """The layer's whole data -> world transform as an (ndim + 1) homogeneous matrix
    (``affine * (rotate * shear * scale + translate)``), read through the public
    ``layer.data_to_world``."""
    n = layer.ndim
    origin = np.asarray(layer.data_to_world(np.zeros(n)), dtype=float)
    out = np.eye(n + 1)
    for axis in range(n):
        out[:n, axis] = np.asarray(layer.data_to_world(np.eye(n)[axis]), float) - origin
    out[:n, n] = origin
    return out


def _stretch(source: ImageSource) -> tuple[np.ndarray, np.ndarray]:
    """Our layers' data -> the image's data, per axis ``x * factor + offset``: the channel
    axis (size 1 in our layers) stretched over the image's channels."""
    factor, offset = np.ones(source.ndim), np.zeros(source.ndim)
    if source.channel_axis is not None:
        c = source.stack.n_channels
        factor[source.channel_axis] = c
        offset[source.channel_axis] = (c - 1) / 2
    return factor, offset


def geometry(source: ImageSource, image_layer) -> dict:
    """The transform of our layers: the image layer's whole transform (scale, translate,
    rotate, shear and affine) and units, so that our layers' data coordinates are the image's data
    coordinates (the channel axis stretched over the channels)."""
    from napari.utils.transforms import Affine

    factor, offset = _stretch(source)
    scale = np.asarray(image_layer.scale, dtype=float)
    linear = Affine(scale=scale, rotate=np.asarray(image_layer.rotate, float),
                    shear=np.asarray(image_layer.shear, float)).linear_matrix
    return {
        "scale": scale * factor,
        "translate": np.asarray(image_layer.translate, dtype=float) + linear @ offset,
        "rotate": np.array(image_layer.rotate, dtype=float),
        "shear": np.array(image_layer.shear, dtype=float),
        "affine": np.array(image_layer.affine.affine_matrix, dtype=float),
        # the physical units too (um, nm): saved labels keep them, napari warns of none
        "units": tuple(getattr(image_layer, "units", ()) or ()) or None,
    }


def set_geometry(layer, geom: dict) -> None:
    """Give ``layer`` the transform ``geom`` (:func:`geometry`)."""
    layer.affine = geom["affine"]
    layer.rotate = geom["rotate"]
    layer.shear = geom["shear"]
    layer.scale = geom["scale"]
    layer.translate = geom["translate"]
    if geom.get("units") is not None:
        layer.units = geom["units"]


def transform_problem(source: ImageSource, image_layer) -> str | None:
    """Why the image layer's transform cannot be prompted (None: it can).

    Scale, translate and rotate or shear within the (Y, X) plane are fine: our layers copy
    them. A transform that mixes the stack (or channel) axis with rows and columns tilts
    the slices out of the view's plane: a click there does not fall on one slice.
    """
    matrix = data_to_world_matrix(image_layer)[:-1, :-1]
    yx = list(source.spatial_axes[-2:])
    rest = [a for a in range(source.ndim) if a not in yx]
    tol = 1e-6 * max(np.abs(matrix).max(), 1e-12)
    coupled = (np.abs(matrix[np.ix_(yx, rest)]).max(initial=0) > tol
               or np.abs(matrix[np.ix_(rest, yx)]).max(initial=0) > tol)
    block = matrix[np.ix_(rest, rest)]
    mixed = np.abs(block - np.diag(np.diag(block))).max(initial=0) > tol
    if not (coupled or mixed):
        return None
    return (f"'{image_layer.name}' has a rotate, shear or affine transform that tilts its "
            "(Y, X) slices out of the view's plane (it mixes the stack or channel axis with "
            "rows and columns), so a click does not fall on one slice: this is not "
            "supported. Rotate or shear it only within its (Y, X) plane, or reset its "
            "transform (layer.rotate, layer.shear, layer.affine) and pick it again.")


def alignment_problem(layer, source: ImageSource, image_layer) -> str | None:
    """Why labels ``layer`` cannot take commits for this image (None: it can): its shape is
    not :attr:`ImageSource.layer_shape`, or its transform puts its pixels elsewhere than the
    image's (another scale, translate, rotate, shear or affine)."""
    shape = tuple(int(s) for s in layer.data.shape)
    if shape != tuple(source.layer_shape):
        return (f"'{layer.name}' has shape {shape} but the image '{image_layer.name}' needs "
                f"{tuple(source.layer_shape)}: pick a labels layer made for this image, or "
                "\"new 'segmentation' layer\" in 'Labels layer'.")
    factor, offset = _stretch(source)
    to_image = np.diag(np.append(factor, 1.0))
    to_image[:-1, -1] = offset
    mine = data_to_world_matrix(layer)
    theirs = data_to_world_matrix(image_layer) @ to_image
    tol = 1e-3 * float(np.abs(np.asarray(image_layer.scale, float)).min())
    if np.allclose(mine, theirs, rtol=1e-6, atol=tol):
        return None
    geom = geometry(source, image_layer)
    what = [name for name in ("scale", "translate", "rotate", "shear")
            if not np.allclose(np.asarray(getattr(layer, name), float), geom[name], atol=1e-9)]
    if not np.allclose(layer.affine.affine_matrix, image_layer.affine.affine_matrix):
        what.append("affine")
    return (f"'{layer.name}' does not line up with the image '{image_layer.name}' (its "
            f"{', '.join(what) or 'transform'} differs), so labels would land on other pixels "
            f"than the prompts: give it the image's transform (e.g. layer.scale = "
            f"{geom['scale'].tolist()}, layer.translate = {geom['translate'].tolist()}) or pick "
            "\"new 'segmentation' layer\" in 'Labels layer'.")


def add_points_layer(viewer, source: ImageSource, image_layer):
    """The prompt points layer (the layer itself, never a proxy: :func:`unwrap`)."""
    features = pd.DataFrame({"prompt": pd.Categorical([], categories=PROMPT_KINDS)})
    layer = viewer.add_points(
        np.empty((0, source.ndim)),
        ndim=source.ndim,
        name=POINTS_NAME,
        features=features,
        feature_defaults={"prompt": "positive"},
        face_color="prompt",
        face_color_cycle={"positive": POSITIVE_COLOR, "negative": NEGATIVE_COLOR},
        border_color="black",
        border_width=0.1,
        size=max(3.0, min(source.shape[1:3]) / 40),
        # on screen at most 24 px: zoomed in on a small object of a large image, a point
        # sized for the whole image would hide the object
        canvas_size_limits=(4, 24),
        out_of_slice_display=False,
        **geometry(source, image_layer),
    )
    layer = unwrap(layer)
    layer.mode = "add"
    return layer


def add_boxes_layer(viewer, source: ImageSource, image_layer):
    layer = viewer.add_shapes(
        ndim=source.ndim,
        name=BOXES_NAME,
        face_color="transparent",
        edge_color="#ffd700",
        edge_width=min(max(1.0, min(source.shape[1:3]) / 200), 4.0),
        **geometry(source, image_layer),
    )
    layer = unwrap(layer)
    layer.mode = "add_rectangle"
    return layer


def add_preview_layer(viewer, source: ImageSource, image_layer):
    """The preview layer: labels 1, 2, ... of the objects previewed, in
    :data:`PREVIEW_COLORS`, at 0.6 opacity."""
    from napari.utils.colormaps import CyclicLabelColormap
    from napari.utils.colormaps.standardize_color import transform_color

    layer = add_labels_layer(viewer, source, image_layer, PREVIEW_NAME, dtype=np.uint16)
    colors = np.concatenate([[[0.0, 0.0, 0.0, 0.0]], transform_color(list(PREVIEW_COLORS))])
    layer.colormap = CyclicLabelColormap(colors=colors)
    layer.opacity = 0.6
    return layer


def add_labels_layer(viewer, source: ImageSource, image_layer, name: str, dtype=np.uint32):
    data = np.zeros(source.layer_shape, dtype=dtype)
    return unwrap(viewer.add_labels(data, name=name, **geometry(source, image_layer)))


def read_points(layer, source: ImageSource) -> tuple[np.ndarray, np.ndarray]:
    """Prompt points as (P, 3) (z, row, col) stack coordinates and (P,) 1/0 labels (of a
    movie: the points at its time point; the others stay in the layer for their own)."""
    if layer is None or len(layer.data) == 0:
        return np.zeros((0, 3)), np.zeros(0, int)
    here = source.at_time_point(layer.data)
    zyx = source.to_zyx(layer.data)[here]
    kinds = layer.features["prompt"].astype(str).to_numpy()[here]
    return zyx, (kinds != "negative").astype(int)




def read_boxes(layer, source: ImageSource) -> list[np.ndarray]:
    """Rectangles of the boxes layer as (4, 3) vertex arrays in (z, row, col); rectangles
    with a side under :data:`MIN_BOX_SIDE` pixels are left out, and a movie's rectangles at
    other time points than its own."""
    if layer is None:
        return []
    out = []
    for verts, kind in zip(layer.data, layer.shape_type):
        if kind != "rectangle" or not source.at_time_point(verts).all():
            continue
        zyx = source.to_zyx(verts)
        if np.ptp(zyx[:, 1:], axis=0).min() < MIN_BOX_SIDE:
            continue
        out.append(zyx)
    return out


def boxes_from_layer(layer, source: ImageSource) -> np.ndarray:
    """Rectangles of the boxes layer as (N, 5) (z, row0, col0, row1, col1) stack boxes."""
    return boxes_from_shapes(read_boxes(layer, source))


def layer_coords(source: ImageSource, zyx, times=None) -> np.ndarray:
    """Stack coordinates (N, 3) (z, row, col) -> layer data coordinates (N, ndim) (a
    movie's at its time point, or at ``times``, (N,) or one time point)."""
    zyx = np.asarray(zyx, dtype=float).reshape(-1, 3)
    out = np.zeros((len(zyx), source.ndim))
    out[:, list(source.spatial_axes)] = zyx if source.is_3d else zyx[:, 1:]
    if source.time_axis is not None:  # a movie's: at its time point
        out[:, source.time_axis] = source.time_point if times is None else times
    return out


def drop_shown_prompts(points, boxes, source: ImageSource | None) -> None:
    """Remove the prompts of the ``points`` and ``boxes`` layers (None: none): all of them,
    or of a movie those at its time point only (the others are other time points' prompts,
    kept for when the time slider comes back to them)."""
    movie = source is not None and source.time_axis is not None
    for layer in (points, boxes):
        if layer is None or not len(layer.data):
            continue
        if not movie:
            layer.data = np.empty((0, layer.ndim)) if layer is points else []
            continue
        here = {i for i, d in enumerate(layer.data) if source.at_time_point(d).all()}
        if here:
            layer.selected_data = here
            layer.remove_selected()


class LayerWatch:
    """Calls ``callback(event)`` whenever one of the events ``names`` of the layer it follows
    fires (default: its transform changed: scale, translate, rotate, shear, affine)."""

    TRANSFORM = ("scale", "translate", "rotate", "shear", "affine")

    def __init__(self, callback, names: tuple[str, ...] = TRANSFORM):
        self._callback, self._names = callback, names
        self.layer = None

    def follow(self, layer) -> None:
        """Listen to ``layer``'s events (None: to no layer's)."""
        if same(layer, self.layer):
            return
        if self.layer is not None:
            for name in self._names:
                getattr(self.layer.events, name).disconnect(self._callback)
        self.layer = layer
        if layer is not None:
            for name in self._names:
                getattr(layer.events, name).connect(self._callback)


def box_rectangles(source: ImageSource, boxes, times=None) -> list[np.ndarray]:
    """(N, 5) boxes ``(z, row0, col0, row1, col1)`` -> the N rectangles (4 corners in layer
    data coordinates each) of a napari shapes layer (a movie's at its time point, or at
    ``times`` (N,))."""
    boxes = np.asarray(boxes, float).reshape(-1, 5)
    at = [None] * len(boxes) if times is None else list(times)
    return [layer_coords(source, [[z, r0, c0], [z, r0, c1], [z, r1, c1], [z, r1, c0]], t)
            for (z, r0, c0, r1, c1), t in zip(boxes, at)]
