"""``napari-sam train`` given a plain zarr store (no axes named) of channels last, (Z, Y, X, 2),
with (Z, Y, X) labels was refused with "cannot read ...": the reader guessed the axes TZYX,
refused slices of 48 x 2 pixels and advised ``--axes ZYXC --channel N``, options ``train``
does not have (only ``auto`` and ``segment`` take them). Training now reads such a store as
stored, as it reads a TIFF of that shape, and names the store, its shape and the axis that
looks like channels, with the advice it gives other images of several channels: the Python
line that saves channel 0 beside the store (reading it with ``axes=``), then the train
command. A store of 3 channels last trains as RGB, as such a TIFF does; ``auto`` still gets
the reader's hint."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cli_runner import cli, error_line, tiny_train_argv
from napari_sam.training.data import TrainingDataError, load_pairs

from .channel_cases import Z, advice, stack_and_labels

zarr = pytest.importorskip("zarr")




def _store_pair(tmp_path, data: np.ndarray, labels: np.ndarray, name: str = "two.zarr"):
    """``data`` saved as a plain zarr array store (no axes named) in ``tmp_path / "my data"``
    and ``labels`` as a TIFF beside it: (store, labels file)."""
    d = tmp_path / "my data"
    d.mkdir(exist_ok=True)
    store = d / name
    zarr.save_array(str(store), data)
    lb = d / "two_labels.tif"
    tifffile.imwrite(lb, labels, photometric="minisblack")
    return store, lb


def _refused_then_trained(tmp_path, tiny_model, capsys, store, lb, channel0: np.ndarray):
    """Run train on ``store`` and ``lb``: refused (exit code 2) with the advice; run the
    advised line (its file holds ``channel0``) and command, which trains. The error line."""
    rc, _, err = cli(tiny_train_argv(store, lb, tmp_path / "m.pt", tiny_model), capsys)
    line = error_line(err)
    assert rc == 2, err
    assert "cannot read" not in line.lower() and "--axes" not in line, line
    assert "--channel" not in line, line
    code, command = advice(line)
    new = store.parent / f"{store.stem}_channel0.tif"
    assert command == ["napari-sam", "train", str(new), str(lb), "-o", "FILE.pt"], line
    exec(code, {})
    np.testing.assert_array_equal(tifffile.imread(new), channel0)
    out = tmp_path / "m.pt"
    rc, _, err = cli(tiny_train_argv(*command[2:4], out, tiny_model), capsys)
    assert rc == 0 and out.is_file(), err
    return line


def test_a_plain_store_of_two_channels_last_is_told_its_channel_axis(tmp_path, tiny_model,
                                                                     capsys, monkeypatch):
    """(Z, Y, X, 2) store, (Z, Y, X) labels: the message names the store, its shape and
    axis 3 as 2 channels, and train's advice, not the reader's --axes/--channel; the advised
    line (read_image with axes='ZYXC') saves channel 0, and the advised command trains."""
    image, labels = stack_and_labels()
    store, lb = _store_pair(tmp_path, np.stack([image, image[:, :, ::-1]], axis=-1), labels)
    monkeypatch.chdir(tmp_path)
    line = _refused_then_trained(tmp_path, tiny_model, capsys, store, lb, image)
    assert line.startswith(f"napari-sam: error: {store} / {lb}: "), line
    assert "does not match image shape (4, 48, 48, 2)" in line, line
    assert "; axis 3 of the image (size 2) looks like a channel axis of 2 channels" in line
    assert "`train` has no channel option" in line, line
    assert f"read_image({str(store)!r}, axes='ZYXC').data[:, :, :, 0]" in line, line


def test_a_plain_2d_store_of_two_channels_last(tmp_path, tiny_model, capsys):
    """(Y, X, 2) store, (Y, X) labels: axis 2, read with axes='YXC', saved as YX."""
    image, labels = stack_and_labels()
    store, lb = _store_pair(tmp_path, np.stack([image[0], image[0].T], axis=-1), labels[0])
    line = _refused_then_trained(tmp_path, tiny_model, capsys, store, lb, image[0])
    assert "axis 2 of the image (size 2) looks like a channel axis of 2 channels" in line
    assert "axes='YXC').data[:, :, 0]" in line and "metadata={'axes': 'YX'}" in line, line


def test_five_channels_last_get_the_same_advice_as_a_tiff(tmp_path):
    """(Z, Y, X, 5): the store's message is the TIFF's of that shape, its reading aside."""
    image, labels = stack_and_labels()
    five = np.stack([image + k for k in range(5)], axis=-1)
    store, lb = _store_pair(tmp_path, five, labels)
    tif = store.parent / "two.tif"
    tifffile.imwrite(tif, five)
    texts = []
    for path in (store, tif):
        with pytest.raises(TrainingDataError) as info:
            load_pairs(str(path), str(lb))
        texts.append(str(info.value))
    assert "axis 3 of the image (size 5) looks like a channel axis of 5 channels" in texts[0]
    read_tif = f"tifffile.imread({str(tif)!r})"
    read_store = f"read_image({str(store)!r}, axes='ZYXC').data"
    as_tiff = texts[0].replace(read_store, read_tif).replace(
        "from napari_sam.io import read_image; ", "").replace(str(store), str(tif))
    assert as_tiff == texts[1], texts


def test_python_train_is_told_the_call_for_labels_given_as_an_array(tmp_path, monkeypatch):
    """``napari_sam.train(store, labels_array)``: the same refusal, ending with the call to
    make; the advised line runs, and the file it writes pairs with the labels."""
    import napari_sam as ns

    image, labels = stack_and_labels()
    store, _ = _store_pair(tmp_path, np.stack([image, image + 1], axis=-1), labels)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TrainingDataError) as info:
        ns.train(str(store), [labels], model="demo", out=None, epochs=1, progress=False)
    text = str(info.value)
    new = store.parent / "two_channel0.tif"
    assert text.endswith(f"train({str(new)!r}, labels) with the array you gave as labels[0]")
    assert "axis 3 of the image (size 2) looks like a channel axis" in text, text
    exec(text.split("in Python: ", 1)[1].split("; then train", 1)[0], {})
    (pair,) = load_pairs(new, [labels])
    np.testing.assert_array_equal(pair.image, image)


@pytest.mark.parametrize("axis, pick", [(0, "[0]"), (1, "[:, 0]")])
def test_plain_stores_of_two_channels_first_or_second_keep_theiradvice(
        tmp_path, axis, pick):
    """(2, Z, Y, X) and (Z, 2, Y, X) stores (read before the fix too; a guard): named the
    axis, advised the line without axes=, which saves channel 0."""
    image, labels = stack_and_labels()
    store, lb = _store_pair(tmp_path, np.stack([image, image[:, ::-1]], axis=axis), labels)
    with pytest.raises(TrainingDataError) as info:
        load_pairs(str(store), str(lb))
    text = str(info.value)
    assert f"axis {axis} of the image (size 2) looks like a channel axis of 2" in text, text
    code, _ = advice(text)
    assert f"read_image({str(store)!r}).data{pick}" in code, code
    exec(code, {})
    np.testing.assert_array_equal(tifffile.imread(store.parent / "two_channel0.tif"), image)


def test_an_ome_zarr_of_two_channels_keeps_itsadvice(tmp_path):
    """An OME-Zarr whose axes name ``c`` of 2 (a guard): "has 2 channels (axes CZYX ...)"
    with the line that saves channel 0, which runs."""
    image, labels = stack_and_labels()
    store = tmp_path / "two.ome.zarr"
    g = zarr.open_group(str(store), mode="w")
    g.create_array("0", data=np.stack([image, image[:, ::-1]]))
    g.attrs["multiscales"] = [{"version": "0.4", "axes": [
        {"name": "c", "type": "channel"}, *({"name": a, "type": "space"} for a in "zyx")],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.0] * 4}]}]}]
    with pytest.raises(TrainingDataError) as info:
        load_pairs(str(store), labels)
    text = str(info.value)
    assert "has 2 channels (axes CZYX from its metadata, shape (2, 4, 48, 48))" in text, text
    exec(text.split("in Python: ", 1)[1].split("; then train", 1)[0], {})
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "two_channel0.tif"), image)


def test_a_plain_store_of_three_channels_last_trains_as_rgb(tmp_path, tiny_model, capsys):
    """(Z, Y, X, 3) (a guard): trained on as RGB, as a TIFF of that shape is."""
    image, labels = stack_and_labels()
    store, lb = _store_pair(tmp_path, np.stack([image] * 3, axis=-1), labels)
    (pair,) = load_pairs(str(store), str(lb))
    assert pair.image.shape == (Z, 48, 48, 3)
    out = tmp_path / "m.pt"
    rc, _, err = cli(tiny_train_argv(store, lb, out, tiny_model), capsys)
    assert rc == 0 and out.is_file(), err


def test_auto_keeps_the_readers_hint(tmp_path, tiny_model, capsys):
    """``auto`` takes --axes and --channel: its refusal of the store is as it was (a guard)."""
    image, labels = stack_and_labels()
    store, _ = _store_pair(tmp_path, np.stack([image, image], axis=-1), labels)
    rc, _, err = cli(["auto", store, "-o", tmp_path / "out", "--model", tiny_model,
                      "--device", "cpu", "-q"], capsys)
    assert rc != 0, err
    assert "--axes ZYXC --channel N" in err, err
