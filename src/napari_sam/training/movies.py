"""Movies of volumes in training: a (T, Z, Y, X) image whose file's metadata names its axes
(:func:`napari_sam.io.read_image`, as ``auto`` and ``segment`` read a movie:
:func:`napari_sam.batch.reading.movie_time_points`) is trained on time point by time point:
each time point's (Z, Y, X) volume is a training stack with that time point's labels, from
a (T, Z, Y, X) label file or from the movie's annotation session (one labels TIFF per time
point, :mod:`napari_sam.session_label_files`). Time points without labels are left out.

A movie of 2D frames (``TYX``) is one stack of frames, as any (Z, Y, X) stack; a 4D image
whose axes are only guessed from its shape is not taken for a movie (its labels are then
refused as 4D, with how to name the axes).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["MovieDataError", "MovieTimePoint", "movie_session_entry", "movie_time_points",
           "read_movie", "trained_on_words"]

#: ``<session>.labels-<hash>.tif``: a session's labels TIFF (one time point's, of a movie's).
_LABELS_TIFF = re.compile(r"(?P<session>.+)\.labels-[0-9a-f]{12}\.tif")


class MovieDataError(ValueError):
    """A movie whose labels cannot be trained on; the message names the files and what to
    give (the training reader raises it as a
    :class:`~napari_sam.training.data.MovieDataError`)."""


@dataclass
class MovieTimePoint:
    """One time point of a movie to train on.

    Attributes
    ----------
    image : (Z, Y, X) or (Z, Y, X, C) array
        The time point's volume.
    labels : (Z, Y, X) int array
        Its labels.
    t : int
        The time point (0-based).
    """

    image: np.ndarray
    labels: np.ndarray
    t: int


def read_movie(path: os.PathLike | str, labels=None):
    """The movie of volumes at ``path`` (:class:`napari_sam.io.ImageData`, read lazily), or
    None for any other image: its file's metadata names axes holding both ``T`` and ``Z``
    longer than 1 (axes guessed from the shape are not trusted: a short axis may hold
    channels), or it is 4D and ``labels`` is a labels TIFF of a movie's annotation session
    (:func:`movie_session_entry`: the dock took it for a movie) of its shape, then read as
    ``TZYX``; None too for a file that cannot be read (the reader of the training data then
    says why)."""
    from napari_sam import io as nio

    try:
        img = nio.read_image(path, lazy=True)
    except Exception:  # noqa: BLE001 (the training reader's own message names the problem)
        return None
    if nio.axes_inferred(img.metadata):
        found = movie_session_entry(labels) if isinstance(labels, Path) else None
        shape = list(found[1].get("shape") or ()) if found else None
        if shape is None or [int(n) for n in img.data.shape] != shape:
            return None
        img = nio.read_image(path, axes="TZYX", lazy=True)
    size = dict(zip(img.axes, (int(n) for n in img.data.shape)))
    return img if size.get("T", 1) > 1 and size.get("Z", 1) > 1 else None


def trained_on_words(images, labels) -> str:
    """What ``images`` are, in the user's words: "3 image files", "1 movie of 12 time points",
    "2 image files and 2 movies of 20 time points in all" (movies as :func:`read_movie`
    finds them beside their label files).

    Parameters
    ----------
    images, labels : sequence of path
        The image files and the label file paired with each, in the same order.

    Returns
    -------
    str
    """
    from napari_sam.words import counted

    times = []
    for image, label in zip(images, labels):
        movie = read_movie(image, Path(label))
        if movie is not None:
            times.append(int(movie.data.shape[movie.axes.index("T")]))
    others = len(images) - len(times)
    parts = [counted(others, "image file")] if others or not times else []
    if times:
        parts.append(f"{counted(len(times), 'movie')} of "
                     f"{counted(sum(times), 'time point')}" + (" in all" if len(times) > 1
                                                              else ""))
    return " and ".join(parts)


def movie_session_entry(label: os.PathLike | str) -> tuple[Path, dict] | None:
    """(session file, its ``labels`` entry) when ``label`` is one of the time point labels
    TIFFs of a movie's annotation session (its ``labels`` names one TIFF per time point under
    ``time_points``: :mod:`napari_sam.session_label_files`); None for any other file."""
    from napari_sam.batch.inputs import is_session_labels

    label = Path(label)
    m = _LABELS_TIFF.fullmatch(label.name)
    if m is None or not is_session_labels(label):
        return None
    json_path = label.with_name(m["session"] + ".json")
    try:
        entry = json.loads(json_path.read_text("utf-8-sig")).get("labels")
    except (OSError, ValueError, AttributeError):
        return None
    parts = entry.get("time_points") if isinstance(entry, dict) else None
    if not isinstance(parts, list) or label.name not in {
            p.get("path") for p in parts if isinstance(p, dict)}:
        return None
    return json_path, entry


def _session_movie_labels(path: Path) -> np.ndarray | None:
    """The (T, Z, Y, X) labels of the movie session whose time point labels TIFF ``path``
    is (:func:`movie_session_entry`), or None."""
    from napari_sam import session as S
    from napari_sam.session_label_files import read_labels_file

    found = movie_session_entry(path)
    if found is None:
        return None
    json_path, ref = found
    try:
        return read_labels_file(json_path, ref, tuple(ref.get("shape") or ()), "labels",
                                S.labels_hash)
    except ValueError as exc:
        raise MovieDataError(f"{path}: {exc}") from None


def _label_volumes(labels, lb_name: str, n: int, movie_shape: tuple, what: str
                   ) -> np.ndarray:
    """``labels`` (a path or an array) as (T, Z, Y, X) of the movie's ``movie_shape``."""
    from napari_sam import io as nio

    arr = None
    if isinstance(labels, Path):
        arr = _session_movie_labels(labels)
        if arr is None:
            try:
                lab = nio.read_image(labels)
            except Exception as err:  # noqa: BLE001 (any reader error: one clear message)
                raise MovieDataError(f"cannot read {labels}: {type(err).__name__}: {err}"
                                        ) from err
            arr = (np.stack([np.asarray(lab.to_standard(select={"T": t}).data)
                             for t in range(n)])
                   if "T" in lab.axes and lab.data.shape[lab.axes.index("T")] == n
                   else np.asarray(lab.data))
    else:
        arr = np.asarray(labels)
    if arr.shape == movie_shape:
        return arr
    if arr.ndim == len(movie_shape) - 1:
        raise MovieDataError(
            f"{what}, but the label file {lb_name} is one volume of shape {arr.shape}: give "
            f"(T, Z, Y, X) labels of shape {movie_shape}, a volume of labels per time point "
            "(those `auto` or `segment` wrote for the movie, or the movie's annotation "
            "session), or save the time point you labelled as a (Z, Y, X) image of its own "
            "and train on that")
    raise MovieDataError(
        f"{what}, but the labels {lb_name} have shape {arr.shape}; give (T, Z, Y, X) labels "
        f"of shape {movie_shape}, a volume of labels per time point")


def _check_channels(movie, name: str, lb_name: str, n: int, *, label_file: bool) -> None:
    """Refuse a movie whose channel axis (``C``, named by its file's metadata) holds several
    channels that are not RGB(A) (2, or more than 4): training takes a grey or RGB image, and
    ``train`` has no channel choice (``auto`` and ``segment`` have ``--channel``). The
    message says how to save the channel to train on as a movie of its own, and the train
    command to run on it (``lb_name`` quoted for the shell), or with labels given as an array
    (not ``label_file``) the Python call."""
    from napari_sam.training.channel_images import one_channel_words

    if "C" not in movie.axes:
        return
    channels = int(movie.data.shape[movie.axes.index("C")])
    if channels in (1, 3, 4):  # one channel, or RGB(A): trained on as the others
        return
    raise MovieDataError(
        f"{name} is a multichannel movie: {n} time points of (Z, Y, X) volumes with "
        f"{channels} channels (axes {movie.axes} from its metadata); training takes one "
        "channel (or an RGB image) and `train` has no channel option (`auto` and `segment` "
        "take --channel N). "
        + one_channel_words(name, movie.axes, lb_name, label_file=label_file, what="movie"))


def movie_time_points(movie, labels, name: str, lb_name: str) -> list[MovieTimePoint]:
    """The time points of ``movie`` that have labels, each its volume and its labels.

    Parameters
    ----------
    movie : napari_sam.io.ImageData
        As :func:`read_movie` read it (axes with ``T`` and ``Z``).
    labels : Path or array
        A (T, Z, Y, X) label file (its ``T`` axis from its metadata, or the movie's shape),
        a labels TIFF of the movie's annotation session (all its time points are read), or
        a (T, Z, Y, X) array.
    name, lb_name : str
        The movie's and the labels' names, for messages.

    Returns
    -------
    list of MovieTimePoint
        In time order; time points whose labels are all 0 are left out.

    Raises
    ------
    MovieDataError
        A movie of several channels that are not RGB(A) (:func:`_check_channels`: how to
        save one channel), labels that are not one volume per time point of the movie's
        shape (one volume given: what to give instead), or no time point with labels.
    """
    n = int(movie.data.shape[movie.axes.index("T")])
    _check_channels(movie, name, lb_name, n, label_file=isinstance(labels, Path))
    first = movie.to_standard(select={"T": 0}).data
    shape = (n, *(int(s) for s in first.shape[:3]))
    what = (f"{name} is a movie of {n} time points of (Z, Y, X) volumes (axes {movie.axes} "
            "from its metadata)")
    volumes = _label_volumes(labels, lb_name, n, shape, what)
    out = [MovieTimePoint(np.asarray(movie.to_standard(select={"T": t}).data), volumes[t], t)
           for t in range(n) if volumes[t].any()]
    if not out:
        raise MovieDataError(f"{what}, and its labels {lb_name} have no objects at any time "
                                "point; give instance labels with ids > 0 for the objects "
                                "to learn")
    return out
