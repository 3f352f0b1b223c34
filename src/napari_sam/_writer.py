"""napari writer: a labels layer -> compressed TIFF keeping the layer's scale as pixel size.

File > Save Selected Layers... with a ``.tif`` name. The file is written to a temporary name
and renamed (never a half-written file under the final name) by
:func:`napari_sam.io.write_labels`: zlib-compressed ImageJ TIFF (OME-TIFF when ids need
32 bits), the scale of the spatial axes stored as resolution / spacing, and the layer's name
and translate in the metadata.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["write_labels_tiff"]

_AXES = {2: "YX", 3: "ZYX", 4: "TZYX"}


def _unit(meta: dict) -> str:
    units = meta.get("units")
    if not units:
        return "pixel"
    names = {str(u) for u in units[-2:]}
    return names.pop() if len(names) == 1 else "pixel"


def write_labels_tiff(path: str, data: Any, meta: dict) -> list[str]:
    """Write one labels layer; returns ``[path]`` (napari's single-layer writer protocol)."""
    from napari_sam.io import write_labels

    arr = np.asarray(data)
    scale = list(meta.get("scale") or [1.0] * arr.ndim)
    translate = list(meta.get("translate") or [0.0] * arr.ndim)
    # drop size-1 axes in front of the image plane (e.g. the channel axis of our layers)
    keep = [i for i in range(arr.ndim) if arr.shape[i] != 1 or i >= arr.ndim - 2]
    if arr.ndim > 2 and len(keep) < arr.ndim:
        arr = arr.reshape([arr.shape[i] for i in keep])
        scale = [scale[i] for i in keep]
        translate = [translate[i] for i in keep]
    if arr.ndim not in _AXES:
        raise ValueError(
            f"cannot write labels of shape {arr.shape} to TIFF: only 2D, 3D (ZYX) and 4D (TZYX) "
            "labels are supported; save a 3D sub-volume instead"
        )
    axes = _AXES[arr.ndim]
    spatial = [float(s) for a, s in zip(axes, scale) if a in "ZYX"]
    unit = _unit(meta)
    pixel_size = None if all(s == 1.0 for s in spatial) and unit == "pixel" else spatial
    write_labels(
        path,
        arr,
        axes=axes,
        pixel_size=pixel_size,
        unit="um" if unit in ("pixel", "micrometer") else unit,
        metadata={"name": meta.get("name"), "translate": [float(t) for t in translate]},
        overwrite=True,
    )
    return [str(path)]
