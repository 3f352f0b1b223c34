"""Opening a batch input: read lazily (:func:`napari_sam.io.read_image`), put in the standard
layout and handed out one slice at a time through :class:`napari_sam.io.SliceSource`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from napari_sam import io as nio
from napari_sam.batch.context import Context
from napari_sam.io import SliceSource


@dataclass
class OpenedImage:
    """A batch input opened lazily: its slices, whether it is 2D, and the axes, pixel size and
    unit its labels get."""

    stack: SliceSource  # (S, Y, X[, C])
    is2d: bool
    label_axes: str  # "YX", "ZYX" or "TYX"
    pixel_size: tuple | None
    unit: str | None
    source_axes: str

    @property
    def label_shape(self) -> tuple[int, ...]:
        s = self.stack.shape[:3]
        return s[1:] if self.is2d else s


def open_image(path: Path, ctx: Context) -> OpenedImage:
    """Read ``path`` lazily and put it in the standard layout (see :func:`napari_sam.io.to_standard`)."""
    img = nio.read_image(path, axes=ctx.axes, lazy=True)
    std = img.to_standard(channel=ctx.channel)
    axes = std.axes
    is2d = axes in ("YX", "YXC")
    stack = SliceSource(std.data, expand=is2d, path=path)
    label_axes = axes.replace("C", "")
    return OpenedImage(stack, is2d, label_axes, std.pixel_size, std.unit or "um", img.axes)
