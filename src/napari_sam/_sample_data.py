"""Sample data for napari (File > Open Sample > Segment Anything Stacks).

Seeded scenes from :mod:`napari_sam.synthetic`, so every user sees the same images. Only the
image is opened (the ground truth stays hidden: these are for trying the annotation tools).
"""

from __future__ import annotations

__all__ = ["em_stack", "nuclei_3d", "underwater_rgb", "xray_volume"]

_SEED = 7


def _image(sample, name: str, colormap: str | None = "gray", **kwargs) -> list[tuple]:
    meta = {"name": name, **kwargs}
    anis = sample.meta.get("anisotropy")
    if sample.image.ndim == 3 and sample.labels.ndim == 3 and anis:
        meta["scale"] = (float(anis), 1.0, 1.0)
    if colormap is not None:
        meta["colormap"] = colormap
    return [(sample.image, meta, "image")]


def nuclei_3d() -> list[tuple]:
    """3D fluorescent nuclei, (32, 192, 192) uint16, anisotropic z."""
    from napari_sam import synthetic

    sample = synthetic.nuclei_3d((32, 192, 192), seed=_SEED)
    return _image(sample, "nuclei 3D (synthetic)", colormap="green", blending="additive")


def em_stack() -> list[tuple]:
    """EM-like stack of mitochondria and vesicles, (32, 192, 192) uint8."""
    from napari_sam import synthetic

    return _image(synthetic.em_3d((32, 192, 192), seed=_SEED), "EM stack (synthetic)")


def xray_volume() -> list[tuple]:
    """X-ray CT-like volume of dense objects, (32, 160, 160) uint16."""
    from napari_sam import synthetic

    return _image(synthetic.xray_3d((32, 160, 160), seed=_SEED), "X-ray volume (synthetic)")


def underwater_rgb() -> list[tuple]:
    """Underwater-like RGB photograph, (320, 320, 3) uint8."""
    from napari_sam import synthetic

    sample = synthetic.underwater_rgb((320, 320), seed=_SEED)
    return _image(sample, "underwater (synthetic)", colormap=None, rgb=True)
