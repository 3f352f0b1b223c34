"""Label images found among the inputs of ``embed``, ``auto`` and ``segment``: a folder often
holds an image and its label image (``image.tif``, ``labels.tif``); segmenting the label
image took minutes and wrote an output nobody wanted, without a word. A file found in a
folder or by a glob is left out only on strong evidence: its name (or folder) says labels
or masks *and* a sampled slice reads as labels (integers, mostly background 0, flat regions
of one value each). A file named explicitly is always segmented."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

#: Name words (of the file's stem or its folder) of a label image.
LABEL_WORDS = frozenset({"label", "labels", "mask", "masks", "gt", "groundtruth",
                         "ground_truth", "annotation", "annotations", "instances"})

#: A sampled slice reads as labels when at least this fraction of its pixels is 0 ...
MIN_BACKGROUND = 0.3
#: ... and at least this fraction of neighbouring foreground pixel pairs hold one value.
MIN_FLAT = 0.9


def _name_words(path: Path) -> set[str]:
    """The lower-case words of ``path``'s stem and folder name (split at ``_ - . space``,
    and ``ground_truth`` kept whole)."""
    words = set()
    for text in (path.name.split(".")[0], path.parent.name):
        text = text.lower()
        words.add(text)
        words.update(w for w in re.split(r"[_\-. ]+", text) if w)
    return words


def named_as_labels(path: Path) -> bool:
    """Whether ``path``'s name or folder says it holds labels (:data:`LABEL_WORDS`)."""
    return bool(_name_words(Path(path)) & LABEL_WORDS)


def sampled_slice(path: Path) -> np.ndarray | None:
    """The middle 2D plane of a TIFF or ``.npy`` file ``path`` (one page read, or memory
    mapped), shape (Y, X); None for other formats or a file that does not read."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff", ".btf"):
            import tifffile

            from napari_sam import io as nio

            with nio.quiet_tifffile(), tifffile.TiffFile(path) as tif:
                pages = tif.series[0].pages if tif.series else tif.pages
                page = pages[len(pages) // 2]
                return None if page is None else np.asarray(page.asarray())
        if suffix == ".npy":
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            while arr.ndim > 2:
                arr = arr[arr.shape[0] // 2]
            return np.asarray(arr)
    except Exception:  # noqa: BLE001 - unreadable here: the reader says why later
        return None
    return None


def label_evidence(plane: np.ndarray) -> str | None:
    """Why the 2D ``plane`` (Y, X) reads as a label image: integer (or bool) dtype, at least
    :data:`MIN_BACKGROUND` of it 0, and its foreground flat (:data:`MIN_FLAT` of the
    neighbouring foreground pairs equal, as objects of one id each are); None otherwise."""
    if plane.ndim != 2 or plane.dtype.kind not in "biu" or plane.size == 0:
        return None
    dtype, plane = plane.dtype, plane.astype(np.int64, copy=False)
    background = float(np.mean(plane == 0))
    if background < MIN_BACKGROUND or background == 1.0:
        return None
    pairs, same = 0, 0
    for a, b in ((plane[:, 1:], plane[:, :-1]), (plane[1:, :], plane[:-1, :])):
        fg = (a != 0) & (b != 0)
        pairs += int(fg.sum())
        same += int((fg & (a == b)).sum())
    if pairs == 0 or same / pairs < MIN_FLAT:
        return None
    values = len(np.unique(plane)) - 1
    return (f"{dtype}, {background:.0%} background 0, {values} flat "
            f"{'value' if values == 1 else 'values'} on a sampled slice")


def label_image_reason(path: os.PathLike | str) -> str | None:
    """Why the file ``path`` looks like a label image (its name, then a sampled slice: both
    needed), or None. Only files whose name says labels are opened."""
    path = Path(path)
    if not named_as_labels(path):
        return None
    plane = sampled_slice(path)
    evidence = None if plane is None else label_evidence(plane)
    return None if evidence is None else f"named {path.name!r}, {evidence}"


def leave_out_label_images(found, specs) -> tuple[list, list[tuple[Path, str]]]:
    """Split the inputs ``found`` (:func:`~napari_sam.batch.collect_inputs_with_folders`'s
    (path, subfolder) list) into those kept and the label images found in a folder or by a
    glob (:func:`label_image_reason`), each with its reason. Files named in ``specs`` (the
    command's INPUT arguments) are always kept. The kept list keeps ``found``'s type and
    ``duplicates``."""
    named = set()
    for spec in specs:
        p = Path(os.path.expanduser(os.fspath(spec)))
        if p.is_file():
            named.add(os.path.realpath(p))
    kept, left = type(found)(), []
    for path, sub in found:
        reason = None if os.path.realpath(path) in named else label_image_reason(path)
        if reason is None:
            kept.append((path, sub))
        else:
            left.append((path, reason))
    if hasattr(found, "duplicates"):
        kept.duplicates = found.duplicates
    return kept, left
