"""Training images with a channel axis: training takes a grey image or an RGB(A) one with
its channels last, and reads other files as stored, so a (C, Z, Y, X) or ImageJ
(Z, C, Y, X) stack did not fit its labels ("labels shape (Z, Y, X) does not match image
shape (Z, 2, Y, X)"). Where the file's metadata names a channel axis (``C``), an image of 3
or 4 channels is put in the order training takes ((Z, Y, X, C), as ``auto`` reads it), and
one of 2 or more than 4 channels is refused with how to save the channel that was labelled;
where it names none (a TIFF written without axes, a ``.npy``), an axis whose removal gives
the labels' shape is named as a likely channel axis, with the same advice
(:func:`channel_axis_words`). ``train`` has no channel option (``auto`` and ``segment``
take ``--channel N``). A plain zarr store (no axes named) of 2 to 7 channels last, (Z, Y, X, 2),
is read as stored too (:func:`store_axes`), not refused with the reader's hint of
``--axes`` and ``--channel``, and gets the same advice.

The advised line writes a file that does not exist yet, beside the image (in the working
directory where its folder cannot be written; :func:`channel_file`): following the advice
never overwrites a file the user has. Its paths are quoted for this system's shell
(:func:`path_word`) and for Python (``repr``).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np

__all__ = ["channel_axis", "channel_axis_words", "channel_file", "channels_last",
           "one_channel_words", "path_word", "save_channel_words", "shell_word", "store_axes"]


def shell_word(text: str, *, windows: bool | None = None) -> str:
    """``text`` quoted as one word for this system's shell: ``shlex.quote`` on POSIX; on
    Windows in double quotes (``cmd.exe`` reads no single quotes) wherever it holds more
    than letters, digits and ``_.:/\\-`` (``subprocess.list2cmdline`` quotes only spaces,
    so ``R&D\\x.tif`` ran ``R`` and then ``D\\x.tif`` in ``cmd.exe``; PowerShell splits at
    ``,`` and ``;``), backslashes before the closing quote doubled as ``list2cmdline``
    does; ``windows`` None: whether this is Windows (``os.name``)."""
    if not (os.name == "nt" if windows is None else windows):
        return shlex.quote(text)
    if text and re.fullmatch(r"[\w.:/\\-]+", text):
        return text
    if '"' in text:  # (no Windows file name holds one)
        return subprocess.list2cmdline([text])
    return '"' + text + "\\" * (len(text) - len(text.rstrip("\\"))) + '"'


def path_word(path: str, *, windows: bool | None = None) -> str:
    """The file ``path`` as one word of a command line (:func:`shell_word`) that no command
    takes for an option: ``./`` before a relative path that begins with ``-`` (a file
    ``-a.tif``, which the command would read as options ``-a``)."""
    if path.startswith("-"):
        path = "./" + path
    return shell_word(path, windows=windows)


def channel_file(image: Path, channel: int = 0) -> Path:
    """A path that does not exist yet for channel ``channel`` of ``image`` saved as a TIFF of
    its own: beside ``image`` (a file, or a zarr store: beside the store, also for an array
    inside one, ``plate.zarr/0``: ``plate_0_channel0.tif``), named from its stem,
    ``<stem>_channel0.tif``, else ``<stem>_channel0-2.tif``, ``-3`` ... (as existence is
    now: a path the advice names never overwrites a file the user has); in the working
    directory where the image's folder cannot be written (a read-only share)."""
    image = Path(image)
    store = next((p for p in reversed(image.parents) if p.suffix.lower() == ".zarr"), None)
    base = image if store is None else store
    stem = base.stem
    if stem.lower().endswith(".ome") and len(stem) > 4:  # (stack.ome.tif, plate.ome.zarr)
        stem = stem[:-4]
    if store is not None:
        stem = "_".join((stem, *image.relative_to(store).parts))
    folder = base.parent
    if not os.access(folder, os.W_OK):  # (the user's working directory is theirs to write)
        folder = Path()
    path = folder / f"{stem}_channel{channel}.tif"
    n = 2
    while os.path.lexists(path):
        path = folder / f"{stem}_channel{channel}-{n}.tif"
        n += 1
    return path


def store_axes(path: Path) -> str | None:
    """The axes to give :func:`napari_sam.io.read_image` to read the zarr store ``path`` as
    stored where it refuses the axes it guesses: a plain array (no axes named) whose short
    last axis, read as X, makes slices too narrow, e.g. (Z, Y, X, 2): ``"ZYXC"``
    (:func:`napari_sam.io.axes.channel_last_axes`). The reader's hint then names ``--axes``
    and ``--channel``, options of ``auto`` and ``segment`` that ``train`` does not have;
    training reads the array as stored and names its channel axis itself
    (:func:`channel_axis_words`). None for any other path: a store it reads, a group, one
    that cannot be opened."""
    from napari_sam import io as nio

    if not nio.is_zarr_path(path):
        return None
    try:
        nio.read_image(path, lazy=True)
        return None
    except (OSError, ValueError):  # (ImageReadError is a ValueError)
        pass
    import zarr

    from napari_sam.io.axes import channel_last_axes

    try:
        node = zarr.open(str(path), mode="r")
    except Exception:  # noqa: BLE001 (not a store: the reader's own message says why)
        return None
    return channel_last_axes(node.shape) if isinstance(node, zarr.Array) else None


def _reader(path: Path) -> tuple[str, str]:
    """The imports and the Python expression that read ``path`` as training reads it
    (as stored): ``tifffile.imread``, ``numpy.load`` for a ``.npy``, ``read_image`` for a
    zarr store (tifffile reads no zarr store; with ``axes=`` where it needs them to read it:
    :func:`store_axes`)."""
    from napari_sam import io as nio

    if nio.is_zarr_path(path):
        axes = store_axes(path)
        return ("import tifffile; from napari_sam.io import read_image; ",
                f"read_image({str(path)!r}{'' if axes is None else f', axes={axes!r}'}).data")
    if path.suffix.lower() == ".npy":
        return "import numpy, tifffile; ", f"numpy.load({str(path)!r})"
    return "import tifffile; ", f"tifffile.imread({str(path)!r})"


def save_channel_words(path: Path, pick: str, kept: str, lb_name: str, *, label_file: bool,
                       what: str = "file") -> str:
    """How to save channel 0 of the image at ``path`` (indexed with ``pick``, e.g.
    ``"[:, 0]"``; ``kept`` the axes left) as a ``what`` of its own at a new path beside it
    (:func:`channel_file`; its folder read-only: in the working directory), and the train
    command (or, labels given as an array, not ``label_file``, the Python call) to run on it
    with the same labels."""
    out = channel_file(path)
    then = (f"napari-sam train {path_word(str(out))} {path_word(lb_name)} -o FILE.pt"
            if label_file else
            f"train({str(out)!r}, labels) with the array you gave as {lb_name}")
    imports, read = _reader(path)
    return (f"Save the channel to train on (the one you labelled) as a {what} of its own, e.g. "
            f"channel 0 in Python: {imports}tifffile.imwrite({str(out)!r}, "
            f"{read}{pick}, photometric='minisblack', "
            f"metadata={{'axes': {kept!r}}}); then "
            f"train on it with the same labels: {then}")


def one_channel_words(path_text: str, axes: str, lb_name: str, *, label_file: bool,
                      what: str = "file") -> str:
    """How to save channel 0 of the file (or zarr store: read with
    :func:`napari_sam.io.read_image`) at ``path_text`` (stored with ``axes``, one of them
    ``C``) as a ``what`` ("file", "movie") of its own, and the train command (or, labels
    given as an array, not ``label_file``, the Python call) to run on it with the same
    labels (:func:`save_channel_words`)."""
    pick = "[" + ":, " * axes.index("C") + "0]"
    return save_channel_words(Path(path_text), pick, axes.replace("C", ""), lb_name,
                              label_file=label_file, what=what)


def channel_axis(image_shape: tuple[int, ...], labels_shape: tuple[int, ...]) -> int | None:
    """The axis of an image of ``image_shape`` that looks like a channel axis beside labels
    of ``labels_shape``: the extra axis whose removal gives the labels' shape (the first of
    two that do: axis 0 of (2, 2, Y, X) beside (2, Y, X)), not a last one of 3 or 4 (read as
    RGB(A)) nor a first one of more than 4 beside (Y, X) labels (more likely a stack of
    slices); None where there is none."""
    image_shape, labels_shape = tuple(image_shape), tuple(labels_shape)
    if len(image_shape) != len(labels_shape) + 1 or len(labels_shape) not in (2, 3):
        return None
    for axis in range(len(image_shape)):
        if image_shape[:axis] + image_shape[axis + 1:] != labels_shape:
            continue
        if axis == len(labels_shape) and image_shape[axis] in (1, 3, 4):
            return None  # (channels last, as trained on: not this mismatch)
        if len(labels_shape) == 2 and axis == 0 and image_shape[0] > 4:
            return None  # (a (Z, Y, X) stack given one slice's labels, more likely)
        return axis
    return None


def channel_axis_words(image_shape: tuple[int, ...], labels_shape: tuple[int, ...],
                       source: Path | str, lb_name: str, *, label_file: bool) -> str:
    """What to add to "labels shape ... does not match image shape ..." where the image has
    a channel axis its file does not name (:func:`channel_axis`): the axis and its number
    of channels, and how to train on one of them: for a file (``source`` a Path, read as
    stored) the line that saves channel 0 beside it and the train command; for an array
    (``source`` its name, e.g. ``images[0]``, also for one array given alone) the index to
    give it. "" where there is none."""
    axis = channel_axis(image_shape, labels_shape)
    if axis is None:
        return ""
    n = int(image_shape[axis])
    pick = "[" + ":, " * axis + "0]"
    words = f"; axis {axis} of the image (size {n}) looks like a channel axis of {n} channels"
    if len(labels_shape) == 2 and axis == 0:
        words += (f" (if it is a stack of {n} slices instead, give labels for the whole "
                  "stack, (Z, Y, X))")
    if len(labels_shape) == 3 and axis == 0 and image_shape[1] == n:  # ((2, 2, Y, X): which?)
        words += (f", or axis 1 (also size {n}): OME stores (C, Z, Y, X), ImageJ (Z, C, Y, X);"
                  " the example takes axis 0, index the one that holds the channels")
    if not isinstance(source, Path):
        return (f"{words}; training takes one channel (or an RGB image): give the channel "
                f"you labelled as the image, e.g. {pick} of the array you gave as {source}")
    words += ("; training takes one channel (or an RGB image) and `train` has no channel "
              "option")
    kept = "ZYX"[-len(labels_shape):]
    return (f"{words}. "
            + save_channel_words(source, pick, kept, lb_name, label_file=label_file))


def channels_last(path: Path, image: np.ndarray, labels_shape: tuple[int, ...], name: str,
                  lb_name: str, *, label_file: bool) -> np.ndarray:
    """``image`` (read from ``path`` as stored) in the order training takes, where it does
    not fit labels of ``labels_shape`` because its file's metadata names a channel axis (or
    axes of size 1 that its reader kept).

    Parameters
    ----------
    path : Path
        The image file.
    image : ndarray
        Its array as stored (e.g. (Z, C, Y, X) for an ImageJ hyperstack).
    labels_shape : tuple of int
        (Y, X) or (Z, Y, X): the shape of its labels.
    name, lb_name : str
        The image's and the labels' names, for the message.
    label_file : bool
        Whether the labels are a file (the message gives a command) or an array (a call).

    Returns
    -------
    ndarray
        ``image`` itself where it fits its labels (channels last, 1, 3 or 4 of them) or its
        file names no axes (2 channels last are refused as 2 first are); else in the
        standard layout (:func:`napari_sam.io.to_standard`): (Y, X, C) or (Z, Y, X, C) for
        3 or 4 channels; (Y, X) or (Z, Y, X) for one, size-1 axes dropped (a zarr store
        keeps them: an OME-Zarr (1, Z, Y, X) ``TZYX`` stack, which tifffile would squeeze).

    Raises
    ------
    ValueError
        2 or more than 4 channels: names them and says how to save the labelled one.
    """
    labels_shape = tuple(labels_shape)
    if image.shape == labels_shape or (image.shape[:-1] == labels_shape
                                       and image.shape[-1] in (1, 3, 4)):  # (as trained on)
        return image
    from napari_sam import io as nio

    axes = nio.file_axes(path)
    if axes is None or len(axes) != image.ndim:
        return image
    channels = int(image.shape[axes.index("C")]) if "C" in axes else 1
    if channels in (1, 3, 4):  # (also a zarr store's size-1 axes: OME-Zarr's (1, Z, Y, X))
        try:
            return np.asarray(nio.to_standard(image, axes)[0])
        except ValueError:  # (not one stack axis: the pair's check says what does not fit)
            return image
    raise ValueError(
        f"{name} has {channels} channels (axes {axes} from its metadata, shape "
        f"{tuple(image.shape)}); training takes one channel (or an RGB image) and `train` has "
        "no channel option (`auto` and `segment` take --channel N). "
        + one_channel_words(str(path), axes, lb_name, label_file=label_file))
