"""Two channel layers of one file (napari's File > Open with a channel axis: layers 'two' and
'two [1]', both from two.tif) each have their own autosave: commits on one channel never
keep the other's session aside, and each channel resumes its own session."""

from __future__ import annotations

import numpy as np
import pytest
from sam_qt_helpers import blob_stack, canvas_click, pick_checkpoint

from napari_sam import session as S


@pytest.fixture
def two_channels(tmp_path):
    """``data/two.tif``: (Z, C, Y, X) with two channels of the blob stack."""
    import tifffile

    stack = blob_stack()
    path = tmp_path / "data" / "two.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, np.stack([stack, stack[:, ::-1]], axis=1), imagej=True,
                     metadata={"axes": "ZCYX"})
    return path


def pick(widget, name: str) -> None:
    widget._image.setCurrentIndex(widget._image.findData(name))
    assert widget.controller.image_layer.name == name


def commit_on(viewer, widget, z: int, row: float = 20, col: float = 20):
    c = widget.controller
    viewer.dims.set_point(0, z)
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, row, col)
    res = widget._on_commit()
    assert res is not None, c.status
    return c.target_layer


def test_two_channel_layers_of_one_file_autosave_apart(make_widget, two_channels, tiny_ckpt):
    viewer, widget = make_widget()
    pick_checkpoint(widget, tiny_ckpt)
    viewer.open(str(two_channels), plugin="napari", channel_axis=1)
    assert {"two", "two [1]"} <= {ly.name for ly in viewer.layers}
    c = widget.controller
    pick(widget, "two")
    first = commit_on(viewer, widget, 1)
    pick(widget, "two [1]")
    second = commit_on(viewer, widget, 2)
    assert second.name != first.name
    pick(widget, "two")
    assert commit_on(viewer, widget, 4).name == first.name
    assert c.wait_autosave(60)
    files = sorted(p.name for p in two_channels.parent.glob("*.json"))
    assert not [f for f in files if ".kept-" in f], files  # nothing kept aside
    sessions = {}
    for name in files:
        sess = S.read_session(two_channels.parent / name)
        sessions[sess.image["name"]] = sess
    assert sorted(sessions) == ["two", "two [1]"]
    assert len(sessions["two"].operations) == 2 and len(sessions["two [1]"].operations) == 1
    assert np.array_equal(sessions["two"].labels, np.asarray(first.data))
    assert np.array_equal(sessions["two [1]"].labels, np.asarray(second.data))
    for name, file in (("two [1]", "two.tif.two_1.sam-session.json"),
                       ("two", "two.tif.sam-session.json")):
        pick(widget, name)  # each channel's resume finds its own session
        assert c.saved_session_path() == two_channels.parent / file
