"""A stack napari reads from several files (File > Open of z000.tif ... z005.tif, "stack")
takes its name and source path from the first file, and so does that file opened alone: the
first file alone was offered the stack's session to resume, and its first commit set the
stack's session aside. The session file's record of the image's shape now tells them apart."""

from __future__ import annotations

import tifffile
from sam_qt_helpers import canvas_click, commit_on, pick_checkpoint

from napari_sam import session as S
from stacks import blob_stack


def _slices_as_files(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    files = []
    for z, plane in enumerate(blob_stack()):
        files.append(folder / f"z{z:03d}.tif")
        tifffile.imwrite(files[-1], plane)
    return files


def test_the_first_file_alone_is_not_offered_the_session_of_its_stack(make_widget, tmp_path,
                                                                      tiny_ckpt):
    files = _slices_as_files(tmp_path)
    viewer, widget = make_widget()
    pick_checkpoint(widget, tiny_ckpt)
    viewer.open([str(f) for f in files], stack=True, plugin="napari")
    assert viewer.layers["z000"].data.shape == (6, 64, 64)
    commit_on(viewer, widget, 3)
    stack_session = S.session_file_for(files[0])  # named after the first file, as napari does
    kept = stack_session.read_bytes()
    assert S.read_session(stack_session).labels.shape == (6, 64, 64)
    viewer.close()  # done: its session is let go, as on closing napari

    viewer, widget = make_widget()  # another day: the first file alone
    pick_checkpoint(widget, tiny_ckpt)
    viewer.open(str(files[0]), plugin="napari")
    assert viewer.layers["z000"].data.shape == (64, 64)
    assert not widget._resume_row.isVisibleTo(widget)  # not this image's session
    c = widget.controller
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 20, 20)
    assert widget._on_commit() is not None, c.status
    c.wait_autosave()
    assert stack_session.read_bytes() == kept  # the stack's session is left as it was
    own = stack_session.with_name("z000.tif.z000.sam-session.json")
    assert S.read_session(own).labels.shape == (1, 64, 64)  # (sessions: ZYX)
    assert sorted(p.name for p in stack_session.parent.glob("*.json")) == [
        stack_session.name, own.name]  # nothing set aside as "kept"
    viewer.close()

    viewer, widget = make_widget()  # the stack again: its own session is offered
    pick_checkpoint(widget, tiny_ckpt)
    viewer.open([str(f) for f in files], stack=True, plugin="napari")
    assert widget._resume_row.isVisibleTo(widget), widget.controller.status
    assert "(1 commit" in widget._resume_label.text()
