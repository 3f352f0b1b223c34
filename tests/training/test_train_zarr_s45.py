"""``napari-sam train`` with a zarr store as the image (zarr is one of the documented lazy
inputs of ``auto`` and ``segment``, and ``train`` collected it as an image): the reader took
the store's folder for a missing file ("images: file not found: stack.zarr"). Now a zarr
store's full-resolution array is read like a TIFF's, and a plain folder is named a folder."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cli_runner import cli, tiny_train_argv
from napari_sam.training.data import TrainingDataError, load_pairs

zarr = pytest.importorskip("zarr")


def _stack_and_labels() -> tuple[np.ndarray, np.ndarray]:
    """(4, 48, 48) uint16 stack with two bright squares on every slice, and their labels."""
    image = np.full((4, 48, 48), 100, np.uint16)
    labels = np.zeros((4, 48, 48), np.uint16)
    for i, (r, c) in enumerate(((8, 8), (28, 26)), start=1):
        image[:, r : r + 12, c : c + 12] = 900
        labels[:, r : r + 12, c : c + 12] = i
    return image, labels


@pytest.fixture
def zarr_pair(tmp_path):
    image, labels = _stack_and_labels()
    store = tmp_path / "images" / "stack.zarr"
    store.parent.mkdir()
    zarr.save_array(str(store), image)
    lb = tmp_path / "labels" / "stack.tif"
    lb.parent.mkdir()
    tifffile.imwrite(lb, labels, photometric="minisblack")
    return store, lb, image, labels


def test_a_zarr_store_is_read_as_its_array(zarr_pair):
    store, lb, image, labels = zarr_pair
    (pair,) = load_pairs(str(store), str(lb))
    np.testing.assert_array_equal(pair.image, image)
    np.testing.assert_array_equal(pair.labels, labels)


def test_train_takes_a_zarr_store_as_the_image(zarr_pair, tmp_path, tiny_model, capsys):
    store, lb, _, _ = zarr_pair
    out = tmp_path / "m.pt"
    rc, _, err = cli(tiny_train_argv(str(store), str(lb), out, tiny_model), capsys)
    assert rc == 0, err
    assert out.is_file() and out.stat().st_size > 0


def test_a_plain_folder_given_as_an_image_is_named_a_folder(tmp_path):
    image, labels = _stack_and_labels()
    folder = tmp_path / "stacks"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", image, photometric="minisblack")
    lb = tmp_path / "a_labels.tif"
    tifffile.imwrite(lb, labels, photometric="minisblack")
    with pytest.raises(TrainingDataError) as info:
        load_pairs(str(folder), str(lb))
    text = str(info.value)
    assert f"images: {folder} is a folder, not an image file or a zarr store" in text
    assert str(folder / "*.tif") in text


def _ome_levels(path, data: np.ndarray, axes: str):
    """An OME-Zarr group at ``path`` holding ``data`` (named ``axes``) at two resolution
    levels (the second halves Y and X), as ome-zarr writers store an image."""
    g = zarr.open_group(str(path), mode="w")
    for level in range(2):
        g.create_array(str(level), data=data[..., :: 2**level, :: 2**level])
    kinds = {"t": "time", "c": "channel"}
    g.attrs["multiscales"] = [{"version": "0.4", "axes": [
        {"name": a, "type": kinds.get(a, "space")} for a in axes.lower()], "datasets": [
        {"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": [
            1.0] * (len(axes) - 2) + [2.0**level] * 2}]} for level in range(2)]}]
    return path


def test_an_ome_zarr_of_one_time_point_is_trained_on_as_its_stack(zarr_pair, tmp_path):
    """OME-Zarr keeps a size-1 time axis ((1, Z, Y, X), axes tzyx) that a TIFF reader would
    squeeze: the stack was refused, 'labels shape (4, 48, 48) does not match image shape
    (1, 4, 48, 48)'."""
    _, lb, image, labels = zarr_pair
    store = _ome_levels(tmp_path / "one_t.zarr", image[None], "TZYX")
    (pair,) = load_pairs(str(store), str(lb))
    np.testing.assert_array_equal(pair.image, image)  # level 0, full resolution
    np.testing.assert_array_equal(pair.labels, labels)


def test_a_two_channel_zarr_store_is_told_a_line_that_reads_it(zarr_pair, tmp_path,
                                                               monkeypatch):
    """The line that saves the labelled channel read the store with tifffile.imread, which
    reads no zarr store (a NotADirectoryError / 'not a TIFF file' for whoever ran it)."""
    _, lb, image, labels = zarr_pair
    store = _ome_levels(tmp_path / "two.zarr", np.stack([image, image[:, :, ::-1]]), "CZYX")
    with pytest.raises(TrainingDataError) as info:
        load_pairs(str(store), str(lb))
    text = str(info.value)
    assert f"{store} has 2 channels (axes CZYX from its metadata" in text, text
    code = text.split("in Python: ", 1)[1].split("; then train", 1)[0]
    assert f"read_image({str(store)!r}).data[0]" in code, code
    monkeypatch.chdir(tmp_path)
    exec(code, {})  # what the message says to run
    (pair,) = load_pairs(str(tmp_path / "two_channel0.tif"), str(lb))  # (beside the store)
    np.testing.assert_array_equal(pair.image, image)
    np.testing.assert_array_equal(pair.labels, labels)


def test_ome_zarr_labels_of_one_time_point_are_their_stack(zarr_pair, tmp_path):
    """Labels in an OME-Zarr store keep a size-1 time axis ((1, Z, Y, X), axes tzyx): they
    were refused as 'labels must be 2D (Y, X) or a 3D stack (Z, Y, X), got shape (1, 4, 48,
    48); a movie of volumes ...' beside their (Z, Y, X) image."""
    store, _, image, labels = zarr_pair
    lb = _ome_levels(tmp_path / "labels.zarr", labels[None], "TZYX")
    (pair,) = load_pairs(str(store), str(lb))
    np.testing.assert_array_equal(pair.image, image)
    np.testing.assert_array_equal(pair.labels, labels)
