"""Sample data for napari (File > Open Sample > Segment Anything Stacks).

Seeded scenes from :mod:`napari_sam.synthetic`, so every user sees the same images. Only the
image is opened (the ground truth stays hidden: these are for trying the annotation tools);
:func:`synthetic_sample` returns image and ground truth for scripts and tests.
"""

from __future__ import annotations

__all__ = ["em_stack", "nuclei_3d", "synthetic_sample", "underwater_rgb", "xray_volume"]

_SEED = 7

# key -> (generator in napari_sam.synthetic, shape, layer name, extra image-layer kwargs)
_SAMPLES = {
    "nuclei_3d": (
        "nuclei_3d", (32, 192, 192), "nuclei 3D (synthetic)",
        {"colormap": "green", "blending": "additive"},
    ),
    "em_stack": ("em_3d", (32, 192, 192), "EM stack (synthetic)", {"colormap": "gray"}),
    "xray_volume": ("xray_3d", (32, 160, 160), "X-ray volume (synthetic)", {"colormap": "gray"}),
    "underwater_rgb": ("underwater_rgb", (320, 320), "underwater (synthetic)", {"rgb": True}),
}


def synthetic_sample(key: str):
    """The :class:`~napari_sam.synthetic.SyntheticSample` behind sample ``key``."""
    from napari_sam import synthetic

    generator, shape, _, _ = _SAMPLES[key]
    return getattr(synthetic, generator)(shape, seed=_SEED)


def _layer_data(key: str) -> list[tuple]:
    sample = synthetic_sample(key)
    _, _, name, kwargs = _SAMPLES[key]
    meta = {"name": name, **kwargs}
    anis = sample.meta.get("anisotropy")
    if sample.labels.ndim == 3 and anis:
        meta["scale"] = (float(anis), 1.0, 1.0)
    return [(sample.image, meta, "image")]


def nuclei_3d() -> list[tuple]:
    """3D fluorescent nuclei, (32, 192, 192) uint16, anisotropic z."""
    return _layer_data("nuclei_3d")


def em_stack() -> list[tuple]:
    """EM-like stack of mitochondria and vesicles, (32, 192, 192) uint8."""
    return _layer_data("em_stack")


def xray_volume() -> list[tuple]:
    """X-ray CT-like volume of dense objects, (32, 160, 160) uint16."""
    return _layer_data("xray_volume")


def underwater_rgb() -> list[tuple]:
    """Underwater-like RGB photograph, (320, 320, 3) uint8."""
    return _layer_data("underwater_rgb")
