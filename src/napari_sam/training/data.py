"""Training data: (image, instance labels) pairs -> validated, preprocessed training items.

Images go through the preprocessing of untiled inference (:class:`~napari_sam.predictor.
Predictor` and :func:`~napari_sam.embeddings.embed`): ``to_uint8_rgb`` with the default
percentiles (volume-wide for stacks), then a bilinear resize of the longest side to the
model's input size. Labels are resized with nearest-neighbour sampling to the same frame.
Every check happens here, before any training starts.

Unlike inference this resize also shrinks images larger than the model input: inference
tiles an image larger than about 1.5 model inputs at full resolution
(:mod:`napari_sam.tiling`), so a model trained on such images whole sees its objects smaller
than it will at inference. Crop large images into tiles of about the model input's size to
train at the scale of inference.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_sam.io import is_zarr_path as _zarr_path
from napari_sam.preprocess import (
    DEFAULT_PERCENTILES,
    ResizeSpec,
    intensity_limits,
    resize_longest_side,
    smooth_before_enlarging,
    to_uint8_rgb,
)
from napari_sam.training.channel_images import channel_axis_words, channels_last, store_axes
from napari_sam.words import for_count

__all__ = ["GRAIN_PIXELS", "MIN_OBJECT_PIXELS", "SPECKLE_PIXELS", "SPLIT_PIECES_PER_ID",
           "TrainItem", "ImagePair", "TrainingDataError", "label_order", "label_pieces",
           "load_pairs", "named_after", "make_items", "prepare_item", "split_items", "unpaired_files"]

_ARRAY_SUFFIXES = (".npy",)


class TrainingDataError(ValueError):
    """Training images or labels that cannot be trained on (unreadable, mismatched shapes,
    not instance labels, no object large enough); the message names the file or array and
    what to do. Raised before any training starts."""


@dataclass
class ImagePair:
    """One image (2D, or a 3D stack used slice by slice) with its instance labels;
    ``movie``: for one time point of a movie (:mod:`napari_sam.training.movies`), the
    movie's name, its time point and number of time points ``(name, t, T)``."""

    image: np.ndarray
    labels: np.ndarray
    name: str
    movie: tuple[str, int, int] | None = None


@dataclass
class TrainItem:
    """One 2D training image in the model's input frame, plus its original for evaluation.

    Attributes
    ----------
    rgb : (h, w, 3) uint8
        Preprocessed image resized so that max(h, w) is the model's input size (not padded).
    labels_input : (h, w) int32
        Instance labels at the same size (nearest neighbour).
    ids : (K,) int
        Object ids present in ``labels_input`` with at least ``min_pixels`` pixels.
    image : (Y, X) or (Y, X, C) array
        The original slice (for evaluation through the Predictor).
    labels : (Y, X) int array
        The original labels.
    contrast_limits : (float, float) or None
        Volume-wide limits for slices of a stack (what ``embed`` uses); None for 2D images.
    name : str
        Where it came from, e.g. ``"cells.tif[z=3]"``.
    """

    rgb: np.ndarray
    labels_input: np.ndarray
    ids: np.ndarray
    image: np.ndarray
    labels: np.ndarray
    contrast_limits: tuple[float, float] | None
    name: str
    source: int = 0
    meta: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- reading


def _read_array(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() in _ARRAY_SUFFIXES:
            return np.load(path, allow_pickle=False)
        if path.is_dir():  # a zarr store (`_expand` let no other folder by): full resolution
            from napari_sam import io as nio

            try:
                return np.asarray(nio.read_image(path).data)
            except nio.ImageReadError:  # (channels last, (Z, Y, X, 2): the pair's check says)
                if (axes := store_axes(path)) is None:
                    raise
                return np.asarray(nio.read_image(path, axes=axes).data)
        import tifffile

        return tifffile.imread(path)
    except Exception as err:  # noqa: BLE001 (any reader error becomes one clear message)
        raise TrainingDataError(
            f"cannot read {path}: {type(err).__name__}: {err} "
            "(give TIFF files, .npy files, zarr stores or numpy arrays)"
        ) from err


def _store_labels(path: Path, labels: np.ndarray) -> np.ndarray:
    """The labels read from the zarr store ``path`` without the size-1 axes its metadata
    names (an OME-Zarr keeps a ``tzyx`` stack's time axis of 1: (1, Z, Y, X), which the TIFF
    reader squeezes); ``labels`` as read otherwise (a file, axes not named, or not one
    stack axis)."""
    if not path.is_dir() or labels.ndim <= 3:
        return labels
    from napari_sam import io as nio

    axes = nio.file_axes(path)
    if axes is None or len(axes) != labels.ndim:
        return labels
    try:
        return np.asarray(nio.to_standard(labels, axes)[0])
    except ValueError:  # (a (T, Z, Y, X) movie's: the pair's check says what to give)
        return labels


def _is_glob(spec) -> bool:
    """Whether ``spec`` is one glob pattern (files we sort, not an order the user gave)."""
    return isinstance(spec, (str, os.PathLike)) and glob.has_magic(os.fspath(spec))


def _expand(spec, what: str) -> list[tuple[np.ndarray | Path, str]]:
    """Paths, globs, arrays or sequences of them -> [(array or path, name)]."""
    if isinstance(spec, np.ndarray):
        return [(spec, f"{what}[0]")]
    if isinstance(spec, (str, os.PathLike)):
        specs: Iterable = [spec]
    elif isinstance(spec, Sequence):
        specs = spec
    else:
        raise TrainingDataError(
            f"{what} must be a path, a glob pattern, a numpy array or a list of them, "
            f"got {type(spec).__name__}"
        )
    out: list[tuple[np.ndarray | Path, str]] = []
    for i, s in enumerate(specs):
        if isinstance(s, np.ndarray):
            out.append((s, f"{what}[{i}]"))
        elif isinstance(s, (str, os.PathLike)):
            text = os.fspath(s)
            if glob.has_magic(text):
                matches = sorted(glob.glob(os.path.expanduser(text)))
                if not matches:
                    from napari_sam.batch.glob_case import case_only_matches, case_words

                    full = os.path.expanduser(text)
                    words = case_words(text, case_only_matches(full), None)
                    raise TrainingDataError(f"{what}: the pattern {text!r} matches no file"
                                            + (f"; {words}" if words else ""))
                out.extend((Path(m), m) for m in matches)
            else:
                p = Path(text).expanduser()
                if p.is_dir() and not _zarr_path(p):
                    raise TrainingDataError(
                        f"{what}: {p} is a folder, not an image file or a zarr store: give "
                        f"the files in it (a quoted glob such as \"{p / '*.tif'}\")")
                if not (p.is_file() or p.is_dir()):
                    raise TrainingDataError(f"{what}: file not found: {p}")
                out.append((p, str(p)))
        else:
            try:
                out.append((np.asarray(s), f"{what}[{i}]"))
            except Exception as err:  # noqa: BLE001
                raise TrainingDataError(f"{what}[{i}] is neither a path nor an array") from err
    if not out:
        raise TrainingDataError(f"no {what} given")
    return out


def _check_pair(image: np.ndarray, labels: np.ndarray, name: str, labels_name: str, *,
                source: Path | str | None = None, label_file: bool = False) -> None:
    """Refuse a pair training cannot take, naming ``name`` (``labels_name``: the labels).
    ``source`` is the image's file (read as stored) or, given as an array, its name: a shape
    mismatch from a channel axis then says how to train on one channel
    (:func:`channel_axis_words`; ``label_file``: the labels are a file); None: no advice."""
    if labels.dtype.kind == "f" and not _whole_numbers(labels):
        raise TrainingDataError(
            f"{name}: the label image {labels_name} holds values that are not whole numbers "
            f"(dtype {labels.dtype}): an intensity image, not instance labels; " + _INTENSITY_FIX)
    if labels.dtype.kind not in "iub":
        raise TrainingDataError(
            f"{name}: labels must be an integer array of instance ids (0 = background), "
            f"got dtype {labels.dtype}; convert with labels.astype(np.int32) if the values "
            "are whole numbers"
        )
    if image.dtype.kind not in "biuf":
        raise TrainingDataError(f"{name}: image dtype {image.dtype} is not numeric")
    if labels.ndim not in (2, 3):
        raise TrainingDataError(
            f"{name}: labels must be 2D (Y, X) or a 3D stack (Z, Y, X), got shape {labels.shape}"
            + ("" if labels.ndim != 4 else "; a movie of volumes (T, Z, Y, X) is trained on "
               "time point by time point when its image file's metadata names its axes (an "
               "ImageJ or OME TIFF, or tifffile.imwrite(path, movie, metadata={'axes': "
               "'TZYX'}))"))
    ok = image.shape == labels.shape or (
        image.ndim == labels.ndim + 1 and image.shape[:-1] == labels.shape and image.shape[-1] in (1, 3, 4)
    )
    if not ok:
        raise TrainingDataError(
            f"{name}: labels shape {labels.shape} does not match image shape {image.shape} "
            "(expected the same (Y, X) / (Z, Y, X), with an optional trailing channel axis "
            "of 1, 3 or 4 on the image)"
            + ("" if source is None else channel_axis_words(
                image.shape, labels.shape, source, labels_name, label_file=label_file))
        )
    if labels.size == 0:
        raise TrainingDataError(f"{name}: the label image is empty (shape {labels.shape})")
    if labels.dtype.kind == "i" and labels.min() < 0:
        raise TrainingDataError(f"{name}: labels contain negative values; ids must be >= 0")
    if not labels.any():
        raise TrainingDataError(
            f"{name}: the label image has no objects (all zeros); give instance labels with "
            "ids > 0 for the objects to learn"
        )
    _check_not_binary(labels, name)
    _check_not_intensity(labels, name, labels_name)


_BINARY_FIX = ("give instance labels (one id per object); a binary mask whose objects do not "
               "touch converts with skimage.measure.label(mask)")


def _check_not_binary(labels: np.ndarray, name: str) -> None:
    """Refuse a binary mask given as instance labels: a bool array, or labels holding a
    single id > 0 that is made of several separate parts (8-connected in 2D, 26-connected
    in a stack; a 0/1 or 0/255 mask of several objects). Real instance labels give each
    object its own id, so one id in several parts is only refused when it is the only id.
    """
    if labels.dtype == bool:
        raise TrainingDataError(f"{name}: the labels are a bool mask, not instance labels; "
                         + _BINARY_FIX)
    first = labels.max()  # an id: labels are >= 0 and not all zeros here
    if np.any((labels != 0) & (labels != first)):
        return
    from scipy import ndimage

    _, n_parts = ndimage.label(labels != 0, structure=np.ones((3,) * labels.ndim, bool))
    if n_parts > 1:
        raise TrainingDataError(
            f"{name}: the labels hold one id ({first}) made of {n_parts} separate parts: a "
            f"binary mask, not instance labels (every object would be learnt as one); "
            + _BINARY_FIX)


_INTENSITY_FIX = ("pass the label image as LABELS (an integer image with one id per object, "
                  "0 = background: e.g. the ground truth, the *_labels.tif `auto` wrote, or a "
                  "session's *.labels-<hash>.tif), and check that IMAGES and LABELS are not "
                  "swapped")

#: Labels whose ids come, on average, in at least this many separate pieces per slice are not
#: instance labels (an intensity image; a class map of many objects per id).
SPLIT_PIECES_PER_ID = 4.0
#: ... nor are labels whose ids come in at least 2 pieces per slice that average fewer than
#: this many pixels (the speckle of a noisy intensity image: 1-3 pixels per piece) ...
SPECKLE_PIXELS = 8.0
#: ... nor labels whose pieces average fewer pixels than this (an image of many grey values,
#: most pixels a value of their own: 1-2 pixels per piece; 2 x 2 pixel objects are 4).
GRAIN_PIXELS = 3.0
_MIN_PIECES = 32  # fewer pieces in the slices looked at: too little to judge
_MAX_PLANES = 8  # slices of a stack looked at
_MAX_SIDE = 1024  # window of a slice looked at


def _whole_numbers(values: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))


def _window(plane: np.ndarray) -> np.ndarray:
    """At most ``_MAX_SIDE`` x ``_MAX_SIDE`` of ``plane``, centred on its objects."""
    if max(plane.shape) <= _MAX_SIDE:
        return plane
    rows, cols = np.nonzero(plane)
    r0, c0 = (max(0, min(int(np.median(v)) - _MAX_SIDE // 2, n - _MAX_SIDE))
              for v, n in ((rows, plane.shape[0]), (cols, plane.shape[1])))
    return plane[r0:r0 + _MAX_SIDE, c0:c0 + _MAX_SIDE]


def label_pieces(labels: np.ndarray) -> tuple[int, int, int, int]:
    """How the ids of a label image are split into pieces, on up to 8 slices.

    Parameters
    ----------
    labels : (Y, X) or (Z, Y, X) int array
        A stack is judged slice by slice (training uses its slices one by one, so an id
        may be reused on other slices), on up to 8 evenly spaced slices with objects and a
        window of at most 1024 x 1024 pixels of each.

    Returns
    -------
    ids : int
        The ids found, summed over the slices looked at.
    pieces : int
        Their 8-connected pieces of one id each, summed over the same slices.
    pixels : int
        The pixels with ids > 0 in the windows looked at.
    planes : int
        How many slices were looked at.
    """
    from skimage.measure import label as connected

    stack = labels if labels.ndim == 3 else labels[None]
    with_objects = np.flatnonzero(stack.reshape(len(stack), -1).any(axis=1))
    picked = with_objects[np.unique(np.linspace(0, len(with_objects) - 1, _MAX_PLANES)
                                    .round().astype(int))] if len(with_objects) else []
    ids = pieces = pixels = 0
    for z in picked:
        plane = _window(np.asarray(stack[z]))
        fg = plane[plane != 0]
        ids += len(np.unique(fg))
        pieces += int(connected(plane, background=0, connectivity=2, return_num=True)[1])
        pixels += fg.size
    return ids, pieces, pixels, len(picked)


def _check_not_intensity(labels: np.ndarray, name: str, labels_name: str) -> None:
    """Refuse an intensity image given as labels (a raw image, or IMAGES and LABELS swapped).

    In instance labels every object has its own id, mostly in one piece per slice; in an
    intensity image every grey value is scattered over the image in many small pieces (a
    noisy image: 1-3 pixels each). Labels are refused when their ids come in at least
    :data:`SPLIT_PIECES_PER_ID` pieces per id and slice on average, or in at least 2 that
    average fewer than :data:`SPECKLE_PIXELS` pixels, or in pieces of fewer than
    :data:`GRAIN_PIXELS` pixels on average (:func:`label_pieces`; judged on at least 32
    pieces).
    """
    ids, pieces, pixels, planes = label_pieces(labels)
    if pieces < _MIN_PIECES or not ids:
        return
    per_id, size = pieces / ids, pixels / pieces
    if per_id < SPLIT_PIECES_PER_ID and size >= GRAIN_PIXELS and (
            per_id < 2 or size >= SPECKLE_PIXELS):
        return
    where = ("" if labels.ndim == 2 else
             f" (counted slice by slice on {planes} of its {labels.shape[0]} slices)")
    class_map = ("" if size < SPECKLE_PIXELS else "; a class map (one id for many objects) "
                 "whose objects do not touch converts with skimage.measure.label(labels)")
    raise TrainingDataError(
        f"{name}: the label image {labels_name} looks like an intensity image, not instance "
        f"labels: {ids} distinct values{where} come in {pieces} separate pieces ({per_id:.1f} "
        f"per value, {size:.1f} pixels each on average), while instance labels give each "
        f"object its own id, mostly in one piece; " + _INTENSITY_FIX + class_map)


_IMAGE_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".btf", ".npy", ".zarr")


def _stem(path: str) -> str:
    base = os.path.basename(os.fspath(path).rstrip("/\\"))
    for suffix in _IMAGE_SUFFIXES:
        if base.lower().endswith(suffix) and len(base) > len(suffix):
            return base[: -len(suffix)]
    return base


def _some(names: Sequence[str], most: int = 4) -> str:
    shown = ", ".join(str(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _owner(label: str, stems: set[str]) -> str | None:
    """The longest image stem that the label file ``label`` is named after, or None."""
    own = _stem(label)
    return max((st for st in stems if own == st or (
        own.startswith(st) and own[len(st)] in "._- ")), key=len, default=None)


def named_after(label: str, images: Sequence[str]) -> str | None:
    """The name of the image that the file ``label`` is named after, as
    :func:`unpaired_files` pairs them.

    Parameters
    ----------
    label : str
        A file name (an image's own name gives that image's).
    images : sequence of str
        The image file names.

    Returns
    -------
    str or None
        The longest image name without its suffix that ``label``'s name (without suffix) is,
        or begins with followed by ``.``, ``_``, ``-`` or a space; None when there is none.
    """
    return _owner(label, {_stem(im) for im in images})


def label_order(images: Sequence[str], labels: Sequence[str]) -> list[int] | None:
    """For each image, the index of the label file named after it (as :func:`unpaired_files`).

    Sorted order alone mispairs names such as ``a.tif``, ``a_1.tif`` with ``a_labels.tif``,
    ``a_1_labels.tif`` (``a_1_labels`` sorts first), so files are paired by name wherever
    the names tell. Images of one name in several folders (``p/a.tif``, ``q/a.tif``) take the
    label files named after that name in sorted order.

    Parameters
    ----------
    images, labels : sequence of str
        File names, as many labels as images.

    Returns
    -------
    list of int or None
        ``order[i]`` is the index in ``labels`` of image ``i``'s label file; None when no
        label file is named after any image (the names tell nothing): then they are paired
        in the given (sorted) order.

    Raises
    ------
    TrainingDataError
        Some label files are named after images and others are not, or a name has more
        label files than images: the files concerned are named.
    """
    stems = [_stem(im) for im in images]
    owners = [_owner(lab, set(stems)) for lab in labels]
    if all(o is None for o in owners):
        return None
    mine = {st: sorted((j for j, o in enumerate(owners) if o == st), key=lambda j: labels[j])
            for st in set(stems)}
    named = {st: sorted((i for i, s in enumerate(stems) if s == st), key=lambda i: images[i])
             for st in set(stems)}
    if None not in owners and all(len(mine[st]) == len(named[st]) for st in named):
        order = [0] * len(images)
        for st in named:
            for i, j in zip(named[st], mine[st]):
                order[i] = j
        return order
    raise TrainingDataError(
        f"the label files are named after the images only in part ({unpaired_files(images, labels)}"
        "); image and label files are paired by name (img.tif with img_labels.tif or "
        "ground_truth/img.tif): name each label file after its image, or give them so that "
        "no label file is named after any image to pair them in sorted order")


def unpaired_files(images: Sequence[str], labels: Sequence[str]) -> str:
    """Which files of unequal lists of images and labels have no partner, in words.

    A label file is taken to be an image's when its name without the image suffix is the
    image's (``ground_truth/img.tif``), or begins with it and then ``.``, ``_``, ``-`` or a
    space (``img_labels.tif`` written by ``auto``, the session label TIFF
    ``img.tif.sam-session.labels-<hash>.tif``); the longest such image name is its image.

    Parameters
    ----------
    images, labels : sequence of str
        The image and label file names, as given.

    Returns
    -------
    str
        E.g. "2 label files are named after a.tif: a_labels.tif, gt/a.tif", "no label file
        is named after engine/c.tif", "the label file x.tif is named after no image", joined
        by "; ", or, when no label file is named after any image (the names tell nothing),
        both lists: "IMAGES: a.tif, b.tif; LABELS: x.tif".
    """
    stems = {_stem(im) for im in images}
    owners = [_owner(lab, stems) for lab in labels]
    if labels and all(o is None for o in owners):
        return f"IMAGES: {_some(images)}; LABELS: {_some(labels)}"
    lonely = [im for im in images if _stem(im) not in owners]
    stray = [lab for lab, o in zip(labels, owners) if o is None]
    parts = [f"{len(mine)} label files are named after {_some(named)}: {_some(mine)}"
             for st in sorted(stems)
             if len(mine := [lab for lab, o in zip(labels, owners) if o == st])
             > len(named := [im for im in images if _stem(im) == st])]
    if lonely:
        parts.append(f"no label file is named after {_some(lonely)}")
    if stray:
        parts.append(f"the {for_count(len(stray), 'label file')} {_some(stray)} "
                     f"{for_count(len(stray), 'is', 'are')} "
                     "named after no image")
    return "; ".join(parts) or f"IMAGES: {_some(images)}; LABELS: {_some(labels)}"


def load_pairs(images, labels) -> list[ImagePair]:
    """Read and validate (image, labels) pairs.

    Parameters
    ----------
    images, labels : path (TIFF, ``.npy`` or a zarr store), glob pattern, numpy array, or a
        list of them
        Two glob patterns are paired by name where the names tell (:func:`label_order`:
        ``img.tif`` with ``img_labels.tif`` or ``ground_truth/img.tif``), otherwise in
        sorted order; lists (of paths or arrays) in their order. Images are (Y, X), (Y, X, 3|4), (Z, Y, X) or
        (Z, Y, X, 3|4); labels (Y, X) or (Z, Y, X) integer instance ids, 0 background.
        A movie of volumes (a file whose metadata names axes with T and Z) gives one pair
        per time point with labels (:mod:`napari_sam.training.movies`), named
        ``movie.tif[t=3]``, with (T, Z, Y, X) labels or its annotation session's.

    Raises
    ------
    TrainingDataError
        (a ValueError) Different numbers of images and labels (files without a partner
        named, :func:`unpaired_files`), unreadable files, labels whose shape differs from the
        image's, non-integer or negative labels, label images without objects, a binary mask,
        an intensity image given as labels (fractional values, or ids in many pieces:
        :func:`label_pieces`). The message names the file or array.
    """
    imgs = _expand(images, "images")
    labs = _expand(labels, "labels")
    if len(imgs) != len(labs):
        files = all(isinstance(x, Path) for x, _ in imgs + labs)
        raise TrainingDataError(
            f"got {len(imgs)} images but {len(labs)} label images"
            + (f" ({unpaired_files([n for _, n in imgs], [n for _, n in labs])})" if files
               else "") + "; they are paired one to one (glob patterns by name, lists in "
            "their order)"
        )
    if _is_glob(images) and _is_glob(labels):  # sorted by us: paired by name
        order = label_order([n for _, n in imgs], [n for _, n in labs])
        labs = labs if order is None else [labs[i] for i in order]
    pairs = []
    for (im, im_name), (lb, lb_name) in zip(imgs, labs):
        if isinstance(im, Path) and (movie := _movie_pairs(im, lb, im_name, lb_name)):
            pairs.extend(movie)
            continue
        image = _read_array(im) if isinstance(im, Path) else np.asarray(im)
        lab = _store_labels(lb, _read_array(lb)) if isinstance(lb, Path) else np.asarray(lb)
        name = im_name if im_name == lb_name else f"{im_name} / {lb_name}"
        source = im if isinstance(im, Path) else im_name  # (for a channel axis's advice)
        if isinstance(im, Path):  # channels where its file's axes name them
            try:
                stored = image
                image = channels_last(im, image, lab.shape, im_name, lb_name,
                                      label_file=isinstance(lb, Path))
                source = im if image is stored else None  # (reordered: not the file's)
            except ValueError as exc:
                raise TrainingDataError(str(exc)) from None
        _check_pair(image, lab, name, lb_name, source=source, label_file=isinstance(lb, Path))
        pairs.append(ImagePair(image, lab, name))
    return pairs


def _movie_pairs(path: Path, labels, name: str, lb_name: str) -> list[ImagePair]:
    """The time points of the movie of volumes at ``path`` with their labels, checked, one
    pair each (:mod:`napari_sam.training.movies`); [] when ``path`` is no movie."""
    from napari_sam.training.movies import MovieDataError, movie_time_points, read_movie

    movie = read_movie(path, labels)
    if movie is None:
        return []
    n = int(movie.data.shape[movie.axes.index("T")])
    try:
        points = movie_time_points(movie, labels, name, lb_name)
    except MovieDataError as exc:
        raise TrainingDataError(str(exc)) from None
    pairs = []
    for point in points:
        here = f"{name}[t={point.t}]"
        _check_pair(point.image, point.labels, here, f"{lb_name} (time point {point.t})")
        pairs.append(ImagePair(point.image, point.labels, here, (name, point.t, n)))
    return pairs


# ----------------------------------------------------------------------------- items


def _resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a (Y, X) label image to ``size`` (pixel centres)."""
    h, w = size
    if labels.shape == (h, w):
        return labels.astype(np.int32, copy=False)
    rows = np.minimum(((np.arange(h) + 0.5) * labels.shape[0] / h).astype(np.int64), labels.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * labels.shape[1] / w).astype(np.int64), labels.shape[1] - 1)
    return labels[rows[:, None], cols[None, :]].astype(np.int32)


#: Objects smaller than this many pixels at the model input are not trained on.
MIN_OBJECT_PIXELS = 6


def prepare_item(
    image: np.ndarray,
    labels: np.ndarray,
    img_size: int,
    *,
    contrast_limits: tuple[float, float] | None = None,
    min_pixels: int = MIN_OBJECT_PIXELS,
    name: str = "",
    source: int = 0,
    meta: dict | None = None,
    smoothing: float = 0.0,
) -> TrainItem:
    """Preprocess one 2D image and its labels like inference does.

    ``contrast_limits`` None means the image's own default percentiles (what
    ``Predictor.set_image`` does); ``smoothing``: the model's input smoothing
    (:func:`napari_sam.preprocess.smooth_before_enlarging`, what ``Predictor`` applies).
    """
    rgb = to_uint8_rgb(image, contrast_limits, DEFAULT_PERCENTILES)
    spec = ResizeSpec.for_image(rgb.shape[:2], img_size)
    (rgb,) = smooth_before_enlarging([rgb], spec, smoothing)
    rgb = resize_longest_side(rgb, spec)
    lab = _resize_labels(np.asarray(labels), spec.input_size)
    ids, counts = np.unique(lab[lab > 0], return_counts=True)
    ids = ids[counts >= min_pixels]
    return TrainItem(
        rgb=rgb,
        labels_input=lab,
        ids=ids.astype(np.int64),
        image=image,
        labels=np.asarray(labels),
        contrast_limits=contrast_limits,
        name=name,
        source=source,
        meta=dict(meta or {}),
    )


def make_items(pairs: Sequence[ImagePair], img_size: int, *, min_pixels: int = MIN_OBJECT_PIXELS,
               smoothing: float = 0.0) -> list[TrainItem]:
    """Turn pairs into 2D items; stacks give one item per slice with objects (contrast limits
    computed volume-wide, as ``embed`` does). Raises ValueError when no object is large
    enough to train on."""
    items: list[TrainItem] = []
    for src, pair in enumerate(pairs):
        if pair.labels.ndim == 2:
            item = prepare_item(pair.image, pair.labels, img_size, min_pixels=min_pixels,
                                name=pair.name, source=src, smoothing=smoothing)
            if len(item.ids):
                items.append(item)
            continue
        limits = intensity_limits(pair.image, DEFAULT_PERCENTILES)
        for z in range(pair.labels.shape[0]):
            if not pair.labels[z].any():
                continue
            item = prepare_item(pair.image[z], pair.labels[z], img_size, contrast_limits=limits,
                                min_pixels=min_pixels, name=f"{pair.name}[z={z}]", source=src,
                                smoothing=smoothing)
            if len(item.ids):
                items.append(item)
    if not items:
        raise TrainingDataError(
            f"no object has at least {min_pixels} pixels after resizing to the model input "
            f"({img_size} px); the objects are too small for this model"
        )
    return items


def split_items(
    items: Sequence[TrainItem], val_fraction: float, seed: int
) -> tuple[list[TrainItem], list[TrainItem]]:
    """Random train/validation split. With several source files/arrays whole sources are
    held out (neighbouring slices of a stack are nearly identical); with one source, slices
    or the single image itself. With only one item, it is used for both (and said so in
    the returned validation items' ``meta["shared"]``)."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    items = list(items)
    if val_fraction == 0:
        return items, []
    rng = np.random.default_rng(seed)
    sources = sorted({it.source for it in items})
    if len(sources) >= 2:
        n_val = min(len(sources) - 1, max(1, round(val_fraction * len(sources))))
        val_src = set(rng.permutation(sources)[:n_val].tolist())
        train = [it for it in items if it.source not in val_src]
        val = [it for it in items if it.source in val_src]
        return train, val
    if len(items) >= 2:
        order = rng.permutation(len(items))
        n_val = min(len(items) - 1, max(1, round(val_fraction * len(items))))
        val = [items[i] for i in sorted(order[:n_val])]
        train = [items[i] for i in sorted(order[n_val:])]
        return train, val
    return items, [TrainItem(**{**items[0].__dict__, "meta": {**items[0].meta, "shared": True}})]
