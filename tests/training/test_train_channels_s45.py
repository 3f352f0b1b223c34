"""Training on a stack whose file's metadata names a channel axis: an ImageJ (Z, C, Y, X)
hyperstack or an OME (C, Z, Y, X) stack was read as stored and refused with "labels shape
(4, 32, 32) does not match image shape (4, 2, 32, 32)" (3 channels too: an RGB stack in
channel-first order). Now 3 or 4 channels are trained on as RGB (channels last, as ``auto``
reads them) and 2 are named, with how to save the labelled channel and train on it."""

from __future__ import annotations

import shlex

import numpy as np
import pytest
import tifffile

from cli_runner import cli, error_line, tiny_train_argv
from napari_sam.training.data import TrainingDataError, load_pairs
from stacks import blob_stack

from .channel_cases import hyperstack_pair, stack_and_labels


def test_a_two_channel_hyperstack_says_how_to_train_on_one_channel(tmp_path, tiny_model,
                                                                   capsys, monkeypatch):
    d = tmp_path / "my data"
    d.mkdir()
    stack, lb = hyperstack_pair(d)
    image = stack_and_labels()[0]  # (channel 0)
    rc, _, err = cli(tiny_train_argv(d, d, tmp_path / "m.pt", tiny_model), capsys)
    line = error_line(err)
    assert rc == 2, err
    assert (f"{stack} has 2 channels (axes ZCYX from its metadata, shape (4, 2, 48, 48)); "
            "training takes one channel") in line, line
    assert "does not match" not in line, line
    code = line.split("in Python: ", 1)[1].split("; then train", 1)[0]
    assert code.endswith("[:, 0], photometric='minisblack', metadata={'axes': 'ZYX'})"), code
    command = shlex.split(line.split("with the same labels: ", 1)[1])
    one = d / "stack_channel0.tif"  # (beside the image: s46)
    assert command == ["napari-sam", "train", str(one), str(lb), "-o", "FILE.pt"], line
    monkeypatch.chdir(tmp_path)
    exec(code, {})  # what the message says to run
    np.testing.assert_array_equal(tifffile.imread(one), image)
    out = tmp_path / "m.pt"
    rc, _, err = cli(tiny_train_argv(*command[2:4], out, tiny_model), capsys)
    assert rc == 0 and out.is_file(), err


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_one_three_or_four_channels_first_are_trained_on_channels_last(tmp_path, channels):
    image, labels = stack_and_labels()
    stack = tmp_path / "stack.ome.tif"
    data = np.stack([image + k for k in range(channels)])  # C, Z, Y, X
    tifffile.imwrite(stack, data, metadata={"axes": "CZYX"})
    lb = tmp_path / "stack_labels.tif"
    tifffile.imwrite(lb, labels, photometric="minisblack")
    (pair,) = load_pairs(str(stack), str(lb))
    want = image if channels == 1 else np.moveaxis(data, 0, -1)
    np.testing.assert_array_equal(pair.image, want)
    np.testing.assert_array_equal(pair.labels, labels)


def test_labels_given_as_an_array_get_the_python_call(tmp_path):
    image, labels = stack_and_labels()
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack([image, image], axis=1), imagej=True,
                     metadata={"axes": "ZCYX"})
    with pytest.raises(TrainingDataError) as info:
        load_pairs([stack], [labels])
    message = str(info.value)
    one = str(tmp_path / "stack_channel0.tif")
    assert message.endswith(f"then train on it with the same labels: train({one!r}, "
                            "labels) with the array you gave as labels[0]"), message


def test_a_stack_without_named_channels_is_read_as_stored(tmp_path):
    """A file whose axes are only guessed keeps the old reading (and message)."""
    stack = tmp_path / "plain.tif"
    tifffile.imwrite(stack, blob_stack(), photometric="minisblack")
    lb = tmp_path / "plain_labels.tif"
    tifffile.imwrite(lb, np.ones(blob_stack().shape[1:], np.uint16), photometric="minisblack")
    with pytest.raises(TrainingDataError, match="does not match image shape"):
        load_pairs(str(stack), str(lb))


def test_two_channels_last_are_told_as_two_channels_first(tmp_path):
    """A (Y, X, 2) TIFF (2 samples a pixel, axes YXS) took the shortcut for images whose
    first axes fit the labels, and was refused with the old 'labels shape (48, 48) does not
    match image shape (48, 48, 2)', without how to save one channel."""
    image, labels = stack_and_labels()
    two = tmp_path / "two.tif"
    tifffile.imwrite(two, np.stack([image[0], image[0, :, ::-1]], axis=-1),
                     photometric="minisblack", planarconfig="contig", extrasamples=[0],
                     metadata={"axes": "YXS"})
    with pytest.raises(TrainingDataError) as info:
        load_pairs([two], [labels[0]])
    message = str(info.value)
    assert message.startswith(f"{two} has 2 channels (axes YXC from its metadata, shape "
                              "(48, 48, 2)); training takes one channel"), message
    assert (f"tifffile.imread({str(two)!r})[:, :, 0], photometric='minisblack', "
            "metadata={'axes': 'YX'})") in message, message
