"""napari's grid mode (Ctrl+G, or the grid button under the layer list) draws each layer, or
each group of ``stride`` layers, in a tile of its own. A click on the image's tile then adds a
point to 'SAM points' at the same place of *its* tile: another pixel of the image than the one
under the mouse, or none. :func:`grid_problem` says so (the dock refuses such clicks and
boxes, as in a 3D view); :func:`grid_of` is the viewer's grid model in any napari version.
"""

from __future__ import annotations

from . import layers as L

__all__ = ["grid_of", "grid_problem"]


def grid_of(viewer):
    """The grid model of ``viewer`` (napari >= 0.6: ``viewer.canvas.grid``; before:
    ``viewer.grid``), with ``enabled``, ``stride`` and ``position``."""
    grid = getattr(getattr(viewer, "canvas", None), "grid", None)
    return grid if grid is not None else viewer.grid


def _tile(grid, layers: list, layer) -> tuple[int, int] | None:
    """(row, column) of ``layer``'s tile among ``layers`` (None: not drawn: hidden)."""
    index = next(i for i, ly in enumerate(layers) if ly is layer)
    try:
        where = grid.position(index, layers)
    except TypeError:  # napari < 0.6: position(index, number of layers)
        where = grid.position(index, len(layers))
    where = tuple(int(v) for v in where)
    return None if where == (-1, -1) else where


def grid_problem(viewer, image_layer, click_layers) -> str | None:
    """Why clicks cannot prompt ``image_layer`` in grid mode (None: grid mode is off, or
    the layers in ``click_layers`` ('SAM points', 'SAM boxes') share the image's tile)."""
    grid = grid_of(L.unwrap(viewer))
    if not grid.enabled:
        return None
    layers = list(L.unwrap(viewer).layers)
    image = L.unwrap(image_layer)
    ours = [L.unwrap(ly) for ly in click_layers if ly is not None]
    ours = [ly for ly in ours if any(ly is x for x in layers)]
    if image is None or not any(image is x for x in layers) or not ours:
        return None
    tile = _tile(grid, layers, image)
    apart = [ly.name for ly in ours if _tile(grid, layers, ly) not in (None, tile)]
    if not apart:
        return None
    return (f"Grid mode is on: each layer is drawn in a tile of its own, so a click on "
            f"'{image.name}' would prompt the pixel at that place of the '{apart[0]}' tile, "
            "not the one under the mouse. Turn grid mode off (Ctrl+G, or the grid button "
            "at the bottom left of the layer list) to prompt; Propagate with 'all objects "
            "with prompts' and Segment everything on the whole stack work in grid mode.")
