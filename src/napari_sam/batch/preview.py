"""PNG previews of label outputs: the middle slice and (for stacks) a max projection with
coloured label outlines, made one slice at a time."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from napari_sam import io as nio
from napari_sam.batch.context import Context, Job
from napari_sam.batch.inputs import stem_of
from napari_sam.batch.reading import OpenedImage, open_image
from napari_sam.io import SliceSource


def _colour(ids: np.ndarray) -> np.ndarray:
    """A bright, well-separated RGB colour per id (golden-ratio hues)."""
    h = (ids.astype(np.float64) * 0.6180339887498949) % 1.0
    s = np.where(ids % 3 == 0, 0.75, 0.95)
    v = np.ones_like(h)
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return (np.stack([r, g, b], -1) * 255).astype(np.uint8)


def _outlines(labels: np.ndarray) -> np.ndarray:
    """Boolean inner boundary of every object (4-connectivity)."""
    lab = labels
    edge = np.zeros(lab.shape, bool)
    edge[:-1] |= lab[:-1] != lab[1:]
    edge[1:] |= lab[1:] != lab[:-1]
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    return edge & (lab > 0)


def _panel(image: np.ndarray, labels: np.ndarray, max_side: int, min_side: int = 0) -> np.ndarray:
    from PIL import Image

    from napari_sam.preprocess import to_uint8_rgb

    rgb = to_uint8_rgb(image)
    h, w = labels.shape
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
        labels = np.asarray(Image.fromarray(labels.astype(np.int32)).resize(size, Image.NEAREST))
    elif max(h, w) < min_side:
        k = min(-(-min_side // max(h, w)), max(1, max_side // max(h, w)))
        rgb = np.repeat(np.repeat(rgb, k, 0), k, 1)
        labels = np.repeat(np.repeat(labels, k, 0), k, 1)
    out = rgb.copy()
    edge = _outlines(labels)
    if edge.any():
        out[edge] = _colour(labels[edge])
    return out


def write_preview(
    path: os.PathLike | str,
    mid_image: np.ndarray,
    mid_labels: np.ndarray,
    max_image: np.ndarray | None = None,
    max_labels: np.ndarray | None = None,
    *,
    title: str = "",
    max_side: int = 768,
    min_side: int = 256,
) -> Path:
    """Write a PNG: the middle slice and (for stacks) a max projection, label outlines in colour.

    ``mid_image`` (Y, X) or (Y, X, 3|4) with ``mid_labels`` (Y, X); ``max_image`` /
    ``max_labels`` the max projections (omit for 2D images). Each panel is scaled down to at
    most ``max_side`` pixels, or up by a whole factor (each pixel a block) to at least
    ``min_side``, so small images stay readable. The title, if any, gets a line of its own
    above the captions. Written to a temporary name and renamed.
    """
    from PIL import Image, ImageDraw

    panels = [_panel(np.asarray(mid_image), np.asarray(mid_labels), max_side, min_side)]
    captions = ["middle slice" if max_image is not None else "image"]
    if max_image is not None and max_labels is not None:
        panels.append(_panel(np.asarray(max_image), np.asarray(max_labels), max_side, min_side))
        captions.append("max projection")
    gap, line = 6, 14
    top = 18 + (line if title else 0)
    height = max(p.shape[0] for p in panels) + top
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    canvas = np.full((height, width, 3), 24, np.uint8)
    x = 0
    offsets = []
    for p in panels:
        canvas[top : top + p.shape[0], x : x + p.shape[1]] = p
        offsets.append(x)
        x += p.shape[1] + gap
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    for x0, cap in zip(offsets, captions):
        draw.text((x0 + 3, top - 15), cap, fill=(230, 230, 230))
    if title:
        draw.text((3, 3), title, fill=(170, 170, 170))
    nio.save_picture(img, Path(path))
    return path


def preview_path(output: Path) -> Path:
    """The PNG preview of an output: ``<stem>.png`` beside it."""
    return output.with_name(stem_of(output) + ".png")


def preview_from_arrays(job: Job, opened: OpenedImage, labels_slice: Callable[[int], np.ndarray],
                         n_objects: int) -> None:
    """Preview of a finished output, reading one slice at a time (bounded memory)."""
    stack = opened.stack
    title = f"{job.input.name}: {n_objects} objects"
    if opened.is2d:
        write_preview(preview_path(job.output), stack[0], labels_slice(0), title=title)
        return
    n = len(stack)
    mid = n // 2
    max_img = None
    max_lab = None
    for z in range(n):
        img = stack[z]
        lab = labels_slice(z)
        max_img = img if max_img is None else np.maximum(max_img, img)
        max_lab = lab.copy() if max_lab is None else np.maximum(max_lab, lab)
    write_preview(preview_path(job.output), stack[mid], labels_slice(mid), max_img, max_lab,
                  title=title)


def write_preview_for(job: Job, ctx: Context, opened: OpenedImage | None = None) -> None:
    """(Re)make the preview of a complete label output from the files on disk."""
    out = nio.read_image(job.output, lazy=True)
    data = out.data
    if out.axes == "TZYX":  # a movie's labels: the preview of its first time point
        data = np.asarray(data[0])
        ctx = dataclasses.replace(ctx, time_point=0)
    if opened is None:
        opened = open_image(job.input, ctx)
    meta = nio.read_output_metadata(job.output) or {}
    n = len(meta.get("objects") or [])
    if opened.is2d:
        preview_from_arrays(job, opened, lambda z: np.asarray(data[...]), n)
    else:
        src = SliceSource(data)
        preview_from_arrays(job, opened, lambda z: src[z], n)
        src.release()
