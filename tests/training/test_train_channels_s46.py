"""The advice `train` gives for an image of several channels (s45) wrote ``channel0.tif``
in the working directory: following it overwrote a ``channel0.tif`` already there (a file
the user had). It now names a new file beside the image (``<stem>_channel0.tif``, else
``-2``, ...), quoted for the shell in the train command. And an image whose file names no
axes (a raw (Z, 2, Y, X) TIFF, a .npy) beside (Z, Y, X) labels got only "labels shape ...
does not match image shape ..."; the axis that looks like a channel axis is now named, with
the same advice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from cli_runner import cli, error_line, tiny_train_argv
from napari_sam.training.data import TrainingDataError, load_pairs

from .channel_cases import advice, hyperstack_pair, stack_and_labels


def test_the_advised_file_is_new_and_beside_the_image(tmp_path, tiny_model, capsys,
                                                      monkeypatch):
    """With ``channel0.tif`` in the working directory and ``stack_channel0.tif`` beside the
    image, the advice names ``stack_channel0-2.tif``: running it touches neither, and the
    advised command (in a folder whose name has a space) trains."""
    d = tmp_path / "my data"
    d.mkdir()
    stack, lb = hyperstack_pair(d)
    image = stack_and_labels()[0]  # (channel 0)
    work = tmp_path / "work"
    work.mkdir()
    theirs = {work / "channel0.tif": b"an earlier image's channel",
              d / "stack_channel0.tif": b"one saved before"}
    for path, data in theirs.items():
        path.write_bytes(data)
    monkeypatch.chdir(work)
    rc, _, err = cli(tiny_train_argv(stack, lb, tmp_path / "m.pt", tiny_model), capsys)
    line = error_line(err)
    assert rc == 2, err
    code, command = advice(line)
    new = d / "stack_channel0-2.tif"
    assert f"tifffile.imwrite({str(new)!r}, " in code, code
    assert command == ["napari-sam", "train", str(new), str(lb), "-o", "FILE.pt"], line
    exec(code, {})  # what the message says to run
    assert {p: p.read_bytes() for p in theirs} == theirs  # (untouched)
    np.testing.assert_array_equal(tifffile.imread(new), image)
    out = tmp_path / "m.pt"
    rc, _, err = cli(tiny_train_argv(*command[2:4], out, tiny_model), capsys)
    assert rc == 0 and out.is_file(), err


def test_the_advised_file_of_a_zarr_store_or_an_ome_tiff_is_beside_it(tmp_path):
    from napari_sam.training.channel_images import channel_file

    store = tmp_path / "two.ome.zarr"
    store.mkdir()
    assert channel_file(store) == tmp_path / "two_channel0.tif"
    (tmp_path / "two_channel0.tif").write_bytes(b"")
    (tmp_path / "two_channel0-2.tif").mkdir()
    assert channel_file(store) == tmp_path / "two_channel0-3.tif"
    assert channel_file(tmp_path / "stack.ome.tif", 1) == tmp_path / "stack_channel1.tif"


@pytest.mark.parametrize("windows, want", [
    (False, "'C:/my data/x_channel0.tif'"),
    (True, '"C:/my data/x_channel0.tif"'),
])
def test_paths_are_quoted_for_this_systems_shell(windows, want):
    """A path with a space is one word for the shell: POSIX single quotes, Windows double
    quotes (cmd.exe reads no single quotes)."""
    from napari_sam.training.channel_images import shell_word

    assert shell_word("C:/my data/x_channel0.tif", windows=windows) == want
    assert shell_word("plain.tif", windows=windows) == "plain.tif"


def test_a_raw_two_channel_tiff_is_told_its_channel_axis(tmp_path, tiny_model, capsys,
                                                         monkeypatch):
    """A (Z, 2, Y, X) TIFF written without axes and its (Z, Y, X) labels: the message names
    axis 1 as 2 channels, with the line that saves channel 0 and the command, which train."""
    image, labels = stack_and_labels()
    d = tmp_path / "my data"
    d.mkdir()
    raw = d / "raw.tif"
    two = np.stack([image, image[:, :, ::-1]], axis=1)
    tifffile.imwrite(raw, two)  # (no axes named)
    lb = d / "raw_labels.tif"
    tifffile.imwrite(lb, labels, photometric="minisblack")
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli(tiny_train_argv(raw, lb, tmp_path / "m.pt", tiny_model), capsys)
    line = error_line(err)
    assert rc == 2, err
    assert ("labels shape (4, 48, 48) does not match image shape (4, 2, 48, 48)") in line, line
    assert "; axis 1 of the image (size 2) looks like a channel axis of 2 channels" in line
    code, command = advice(line)
    new = d / "raw_channel0.tif"
    assert code.endswith(f"tifffile.imwrite({str(new)!r}, tifffile.imread({str(raw)!r})"
                         "[:, 0], photometric='minisblack', metadata={'axes': 'ZYX'})"), code
    assert command == ["napari-sam", "train", str(new), str(lb), "-o", "FILE.pt"], line
    exec(code, {})
    np.testing.assert_array_equal(tifffile.imread(new), image)
    out = tmp_path / "m.pt"
    rc, _, err = cli(tiny_train_argv(*command[2:4], out, tiny_model), capsys)
    assert rc == 0 and out.is_file(), err


def test_a_channel_first_npy_is_told_its_channel_axis(tmp_path, monkeypatch):
    """A (2, Z, Y, X) .npy: axis 0, read back with numpy.load; labels given as an array get
    the Python call."""
    image, labels = stack_and_labels()
    raw = tmp_path / "raw.npy"
    np.save(raw, np.stack([image, image + 1]))
    with pytest.raises(TrainingDataError) as info:
        load_pairs([raw], [labels])
    text = str(info.value)
    assert "axis 0 of the image (size 2) looks like a channel axis of 2 channels" in text, text
    code = text.split("in Python: ", 1)[1].split("; then train", 1)[0]
    assert f"numpy.load({str(raw)!r})[0]" in code, code
    new = tmp_path / "raw_channel0.tif"
    assert text.endswith(f"train({str(new)!r}, labels) with the array you gave as labels[0]")
    monkeypatch.chdir(tmp_path)
    exec(code, {})
    (pair,) = load_pairs(new, labels)
    np.testing.assert_array_equal(pair.image, image)


def test_an_array_with_a_channel_axis_is_told_the_index(tmp_path):
    image, labels = stack_and_labels()
    with pytest.raises(TrainingDataError) as info:
        load_pairs([np.stack([image, image], axis=1)], [labels])
    text = str(info.value)
    assert text.endswith("; axis 1 of the image (size 2) looks like a channel axis of 2 "
                         "channels; training takes one channel (or an RGB image): give the "
                         "channel you labelled as the image, e.g. [:, 0] of the array you "
                         "gave as images[0]"), text


def test_one_array_given_alone_is_not_told_to_index_it_twice():
    """``train(stack, labels)`` with one (Z, 2, Y, X) array: its name is ``images[0]``, and
    the advice ``images[0][:, 0]`` applied to the array given (``stack[0][:, 0]``) took one
    row of one slice. The index is now the array's own, ``[:, 0]``."""
    image, labels = stack_and_labels()
    with pytest.raises(TrainingDataError) as info:
        load_pairs(np.stack([image, image], axis=1), labels)
    text = str(info.value)
    assert "images[0][" not in text, text
    assert text.endswith("e.g. [:, 0] of the array you gave as images[0]"), text


def test_two_axes_of_the_size_of_the_stack_are_both_named():
    """A (2, 2, Y, X) image beside (2, Y, X) labels: either first axis may hold the channels
    (OME stores them first, ImageJ second); the message names both, not axis 0 alone."""
    image, labels = stack_and_labels()
    with pytest.raises(TrainingDataError) as info:
        load_pairs(np.stack([image[:2], image[:2]]), labels[:2])
    text = str(info.value)
    assert ("axis 0 of the image (size 2) looks like a channel axis of 2 channels, or axis 1 "
            "(also size 2): OME stores (C, Z, Y, X), ImageJ (Z, C, Y, X)") in text, text


@pytest.mark.parametrize("path, want", [
    ("R&D\\stack_channel0.tif", '"R&D\\stack_channel0.tif"'),
    ("a,b_channel0.tif", '"a,b_channel0.tif"'),
    ("C:\\data\\(old)\\x_channel0.tif", '"C:\\data\\(old)\\x_channel0.tif"'),
    ("C:\\data\\x_channel0.tif", "C:\\data\\x_channel0.tif"),
])
def test_windows_paths_with_shell_characters_are_quoted(path, want):
    """``subprocess.list2cmdline`` quotes only spaces: ``R&D\\x.tif`` was left bare, and
    ``cmd.exe`` ran ``napari-sam train R`` then ``D\\x.tif``; PowerShell splits at ``,``."""
    from napari_sam.training.channel_images import shell_word

    assert shell_word(path, windows=True) == want


def test_a_file_named_with_a_leading_dash_is_not_read_as_options(tmp_path, tiny_model,
                                                                 capsys, monkeypatch):
    """``train ./-raw.tif ./-raw_labels.tif`` (the path keeps no ``./``): the advised command
    named ``-raw_channel0.tif -raw_labels.tif``, which ``train`` read as options; it now
    says ``./-raw_channel0.tif ./-raw_labels.tif``, and trains."""
    image, labels = stack_and_labels()
    monkeypatch.chdir(tmp_path)
    tifffile.imwrite("-raw.tif", np.stack([image, image], axis=1))
    tifffile.imwrite("-raw_labels.tif", labels, photometric="minisblack")
    rc, _, err = cli(tiny_train_argv("./-raw.tif", "./-raw_labels.tif", "m.pt", tiny_model),
                     capsys)
    assert rc == 2, err
    code, command = advice(error_line(err))
    assert command[2:4] == ["./-raw_channel0.tif", "./-raw_labels.tif"], command
    exec(code, {})
    rc, _, err = cli(tiny_train_argv(*command[2:4], "m.pt", tiny_model), capsys)
    assert rc == 0 and (tmp_path / "m.pt").is_file(), err


def test_a_read_only_image_folder_gets_a_file_in_the_working_directory(tmp_path,
                                                                       monkeypatch):
    """Images on a read-only share: the advised line wrote beside the image and failed
    (PermissionError, "Read-only file system"); it now writes in the working directory."""
    import os

    image, labels = stack_and_labels()
    share = tmp_path / "share"
    share.mkdir()
    raw = share / "raw.tif"
    tifffile.imwrite(raw, np.stack([image, image], axis=1))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        access(path, mode, **kw) and not (mode & os.W_OK and Path(path) == share)))
    with pytest.raises(TrainingDataError) as info:
        load_pairs(raw, labels)
    code = str(info.value).split("in Python: ", 1)[1].split("; then train", 1)[0]
    assert "tifffile.imwrite('raw_channel0.tif', " in code, code
    exec(code, {})
    np.testing.assert_array_equal(tifffile.imread(work / "raw_channel0.tif"), image)


def test_an_array_inside_a_zarr_store_is_saved_beside_the_store(tmp_path):
    """``plate.ome.zarr/0`` (the full-resolution array of an OME-Zarr): the advice wrote
    ``plate.ome.zarr/0_channel0.tif``, a file inside the user's store; now beside it."""
    from napari_sam.training.channel_images import channel_file

    (tmp_path / "plate.ome.zarr" / "0").mkdir(parents=True)
    assert channel_file(tmp_path / "plate.ome.zarr" / "0") == tmp_path / "plate_0_channel0.tif"


def test_which_axes_look_like_channels():
    from napari_sam.training.channel_images import channel_axis

    assert channel_axis((4, 2, 48, 48), (4, 48, 48)) == 1
    assert channel_axis((48, 48, 2), (48, 48)) == 2
    assert channel_axis((48, 48, 3), (48, 48)) is None  # (RGB: trained on)
    assert channel_axis((2, 48, 48), (48, 48)) == 0
    assert channel_axis((6, 48, 48), (48, 48)) is None  # (a stack of slices, more likely)
    assert channel_axis((4, 48, 48), (4, 48, 48)) is None
    assert channel_axis((4, 2, 48, 40), (4, 48, 48)) is None
    assert channel_axis((2, 4, 2, 48, 48), (4, 48, 48)) is None
