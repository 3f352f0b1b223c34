"""An image without a file (a script's ``viewer.add_image(array)``, another plugin's layer)
was never autosaved: napari killed after commits on it lost them all. Its session is now
autosaved under the cache folder by its pixels: the same array added in a new napari after a
``kill -9`` is offered its session (saying napari ended unexpectedly), and *Resume* brings
the labels back exactly; another array is offered nothing."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
from sam_qt_helpers import blob_stack, napari_until, pick_checkpoint

HERE = Path(__file__).resolve().parent

_KILLED_AFTER_COMMITS_ON_AN_ARRAY = r"""
import sys, time
import numpy as np
sys.path[:0] = [{helpers!r}, {tests!r}]
import napari
from sam_qt_helpers import blob_stack, commit_on, open_from_menu, pick_checkpoint

viewer = napari.Viewer(show=False)
viewer.add_image(blob_stack(), name="cells")  # no file
dock, widget = open_from_menu(viewer)
widget.controller.sync = True
pick_checkpoint(widget, {ckpt!r})
commit_on(viewer, widget, 1)
commit_on(viewer, widget, 3, row=44)
np.save({expected!r}, np.asarray(widget.controller.target_layer.data))
print("COMMITTED", flush=True)
time.sleep(600)
"""


def _killed_after_commits(tmp_path, ckpt) -> np.ndarray:
    """napari with the dock on ``blob_stack()`` added as an array: two commits, then
    ``kill -9``; returns the labels it held."""
    expected = tmp_path / "expected.npy"
    proc = napari_until(_KILLED_AFTER_COMMITS_ON_AN_ARRAY.format(
        helpers=str(HERE), tests=str(HERE.parent), ckpt=str(ckpt), expected=str(expected)),
        "COMMITTED")
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    return np.load(expected)


def test_an_array_killed_after_commits_is_offered_and_resumed_exactly(make_widget, tmp_path,
                                                                      tiny_ckpt):
    from sam_qt_helpers import commit_on

    from napari_sam.annotate.memory_sessions import memory_sessions_folder
    from napari_sam.session import read_session

    committed = _killed_after_commits(tmp_path, tiny_ckpt)
    assert sorted(np.unique(committed).tolist()) == [0, 1, 2]
    [autosave] = memory_sessions_folder().glob("*/image.sam-session.json")

    viewer, widget = make_widget()
    pick_checkpoint(widget, tiny_ckpt)
    viewer.add_image(blob_stack(), name="cells")  # the same array, in a new napari
    assert widget._resume_row.isVisibleTo(widget)
    text = widget._resume_label.text()
    assert text.startswith("napari ended unexpectedly (killed or crashed; its last autosave "
                           "was at ")
    assert ": 2 commits since the last save (none was saved with 'Save session') can be " \
           "recovered. A saved session exists for this image (2 commits, labels 1-2" in text
    sess = widget._on_resume()
    assert len(sess.operations) == 2
    resumed = np.asarray(widget.controller.target_layer.data)
    assert resumed.dtype == committed.dtype and np.array_equal(resumed, committed)
    assert widget.controller.session_path == autosave
    commit_on(viewer, widget, 5)  # its log goes on in that file, nothing kept aside
    assert "kept as" not in widget.controller.status
    assert len(read_session(autosave, load_labels=False).operations) == 3


def test_another_array_is_offered_nothing(make_widget, tmp_path, tiny_ckpt):
    _killed_after_commits(tmp_path, tiny_ckpt)
    viewer, widget = make_widget()
    pick_checkpoint(widget, tiny_ckpt)
    viewer.add_image(blob_stack(seed=1), name="cells")  # other pixels, the same name
    assert not widget._resume_row.isVisibleTo(widget)
    assert widget.controller.saved_session_path() is None


def test_the_status_line_says_where_an_array_is_autosaved(stack_widget):
    from sam_qt_helpers import commit_on

    from napari_sam.annotate.memory_sessions import memory_sessions_folder

    viewer, widget = stack_widget  # 'blobs', added as an array
    commit_on(viewer, widget, 3)
    [autosave] = memory_sessions_folder().glob("*/image.sam-session.json")
    assert widget.controller.status.endswith(
        f" 'blobs' has no file: the session is autosaved in {autosave} (adding the same image "
        "again, also in a new napari, offers to resume it).")
    commit_on(viewer, widget, 4, row=44)  # said once
    assert "has no file" not in widget.controller.status
