"""Training images whose file's metadata names a channel axis (``C``): training takes a grey
image or an RGB(A) one with its channels last, and reads other files as stored, so a
(C, Z, Y, X) or ImageJ (Z, C, Y, X) stack did not fit its labels ("labels shape (Z, Y, X)
does not match image shape (Z, 2, Y, X)"). Here an image of 3 or 4 channels is put in the
order training takes ((Z, Y, X, C), as ``auto`` reads it), and one of 2 or more than 4
channels is refused with how to save the channel that was labelled; ``train`` has no channel
option (``auto`` and ``segment`` take ``--channel N``).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np

__all__ = ["channels_last", "one_channel_words"]


def one_channel_words(path_text: str, axes: str, lb_name: str, *, label_file: bool,
                      what: str = "file") -> str:
    """How to save channel 0 of the file (or zarr store: read with
    :func:`napari_sam.io.read_image`) at ``path_text`` (stored with ``axes``, one of them
    ``C``) as a ``what`` ("file", "movie") of its own, and the train command (or, labels
    given as an array, not ``label_file``, the Python call) to run on it with the same
    labels."""
    from napari_sam import io as nio

    pick = "[" + ":, " * axes.index("C") + "0]"
    kept = axes.replace("C", "")
    then = (f"napari-sam train channel0.tif {shlex.quote(lb_name)} -o FILE.pt" if label_file
            else f"train('channel0.tif', labels) with the array you gave as {lb_name}")
    store = nio.is_zarr_path(Path(path_text))  # (tifffile reads no zarr store)
    imports = "import tifffile; " + ("from napari_sam.io import read_image; " if store else "")
    read = f"read_image({path_text!r}).data" if store else f"tifffile.imread({path_text!r})"
    return (f"Save the channel to train on (the one you labelled) as a {what} of its own, e.g. "
            f"channel 0 in Python: {imports}tifffile.imwrite('channel0.tif', "
            f"{read}{pick}, photometric='minisblack', "
            f"metadata={{'axes': {kept!r}}}); then "
            f"train on it with the same labels: {then}")


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
