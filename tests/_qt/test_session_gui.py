"""Sessions in the dock (opened from the menu): save, close, reopen, load; the CLI replays
the file pixel for pixel; autosave survives a killed viewer; bad files change nothing; the
trace in the dock jumps to flagged slices."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sam_qt_helpers import blob_stack, canvas_click, pick_checkpoint

HERE = Path(__file__).resolve().parent








def layer_state(viewer) -> dict:
    c = {ly.name: ly for ly in viewer.layers}
    pts = c["SAM points"]
    return {
        "names": sorted(c),
        "labels": np.asarray(c["segmentation"].data).copy(),
        "points": np.asarray(pts.data).round(6).tolist(),
        "kinds": pts.features["prompt"].astype(str).tolist(),
        "boxes": [np.asarray(b).round(6).tolist() for b in c["SAM boxes"].data],
    }


def annotate(viewer, widget):
    """Clicks, a box with a negative point, a refine, a propagation and an undo, as a user
    does them in the dock; returns the labels committed."""
    c = widget.controller
    # the tiny random model's masks cover most of a slice: each step gets its own slice
    viewer.dims.set_point(0, 1)
    canvas_click(viewer, 20, 20)  # 1: a click, and the next candidate mask
    widget._on_next_candidate()
    assert widget._on_commit().ids == [1]
    viewer.dims.set_point(0, 2)
    c.boxes_layer.add([[[2, 34, 34], [2, 34, 56], [2, 56, 56], [2, 56, 34]]],
                      shape_type="rectangle")  # 2: a box ...
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 52, 52, modifiers=("Shift",))  # ... with a negative point
    assert c.objects()[-1].slices[2].labels.tolist() == [0]
    assert widget._on_commit().ids == [2]
    target = c.target_layer
    viewer.dims.set_point(0, 1)
    target.selected_label = 1  # 3: refine label 1
    widget._refine.setChecked(True)
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 24, 18)
    assert c.previews[0].mask_prompt
    assert widget._on_commit().ids == [1]
    widget._refine.setChecked(False)
    viewer.dims.set_point(0, 4)  # 4: a propagation
    canvas_click(viewer, 44, 20)
    widget._on_propagate()
    assert c.volume is not None and c.trace is not None
    assert widget._on_commit().ids == [3]
    viewer.dims.set_point(0, 5)  # 5: a commit over the others, undone
    widget._overwrite.setChecked(True)
    canvas_click(viewer, 10, 50)
    assert widget._on_commit().ids == [4]
    widget._on_undo()
    widget._overwrite.setChecked(False)
    viewer.dims.set_point(0, 3)
    canvas_click(viewer, 30, 40)  # a pending prompt, not committed
    return np.asarray(target.data).copy()


def test_annotate_save_close_reopen_load_and_cli_replay(make_widget, stack_file, tiny_ckpt,
                                                        tmp_path):
    import tifffile

    from napari_sam.cli import main

    image = tifffile.imread(stack_file)
    viewer, widget = make_widget(image, name="blobs")
    pick_checkpoint(widget, tiny_ckpt)
    labels = annotate(viewer, widget)
    assert len(np.unique(labels)) >= 4  # background and at least three objects
    assert len(widget.controller.log) == 4  # the undone commit is not in the session
    before = layer_state(viewer)
    saved = widget.save_session(str(tmp_path / "work.json"))
    assert saved.is_file()
    viewer.close()

    viewer2, widget2 = make_widget(image, name="blobs")
    pick_checkpoint(widget2, tiny_ckpt)
    sess = widget2.load_session(str(saved))
    assert sess is not None and len(sess.operations) == 4
    after = layer_state(viewer2)
    assert after["names"] == before["names"]
    assert np.array_equal(after["labels"], before["labels"])
    assert after["points"] == before["points"] and after["kinds"] == before["kinds"]
    assert after["boxes"] == before["boxes"]
    assert widget2._trace.plots  # the last propagation's trace is back in the dock
    # work continues: a commit after loading appends to the loaded session
    viewer2.layers.selection.active = widget2.controller.points_layer
    assert widget2._on_commit() is not None
    assert len(widget2.controller.log) == 5

    out = tmp_path / "out"
    code = main(["segment", str(stack_file), "--prompts", str(saved), "-o", str(out),
                 "--model", str(tiny_ckpt), "--device", "cpu", "-q"])
    assert code == 0
    replayed = tifffile.imread(out / "blobs_labels.tif")
    assert replayed.shape == labels.shape
    assert np.array_equal(replayed, labels)  # pixel for pixel
    side = json.loads((out / "blobs_labels.tif.json").read_text())
    assert side["extra"]["replay"]["identical"] is True
    assert side["extra"]["trace"]["objects"]


_CHILD = r"""
import sys, json, time
import numpy as np
sys.path[:0] = [{helpers!r}, {tests!r}]  # sam_qt_helpers, and tests/stacks.py it imports
import napari
from sam_qt_helpers import open_from_menu, pick_checkpoint
viewer = napari.Viewer(show=False)
viewer.open({stack!r}, plugin="napari")
dock, widget = open_from_menu(viewer)
widget.controller.sync = True
widget._model.setCurrentIndex(widget._model.count() - 1)
widget._on_model_changed({ckpt!r})
c = widget.controller
for z, (r, col) in enumerate([(20, 20), (44, 44), (20, 44)]):
    viewer.dims.set_point(0, z + 1)
    c.points_layer.add([[z + 1, r, col]])
    assert widget._on_commit() is not None, c.status
np.save({expected!r}, np.asarray(c.target_layer.data))
print("COMMITTED", flush=True)
time.sleep(600)
"""


def test_autosave_survives_a_killed_viewer(make_widget, stack_file, tiny_ckpt, tmp_path):
    import tifffile

    expected = tmp_path / "expected.npy"
    script = _CHILD.format(helpers=str(HERE), tests=str(HERE.parent), stack=str(stack_file), ckpt=str(tiny_ckpt),
                           expected=str(expected))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        t0 = time.time()
        line = ""
        while "COMMITTED" not in line and time.time() - t0 < 240:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert "COMMITTED" in line, proc.stderr.read()[-3000:]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    sidecar = stack_file.with_name("blobs.tif.sam-session.json")
    assert sidecar.is_file()
    committed = np.load(expected)
    assert len(np.unique(committed)) == 4

    image = tifffile.imread(stack_file)
    viewer, widget = make_widget()
    pick_checkpoint(widget, tiny_ckpt)
    viewer.open(str(stack_file), plugin="napari")  # the resume offer appears
    assert widget._resume_row.isVisibleTo(widget) and "3 commits" in widget._resume_label.text()
    sess = widget._on_resume()
    assert len(sess.operations) == 3
    assert np.array_equal(np.asarray(widget.controller.target_layer.data), committed)
    assert image.shape == committed.shape


def _state(viewer) -> list:
    return [(ly.name, np.asarray(ly.data).tolist() if ly.name.startswith("SAM") else
             np.asarray(ly.data).sum()) for ly in viewer.layers]


# a session whose checkpoint is gone is no longer refused: it loads with the model picked
# (tests/annotate/test_retrained_checkpoint.py)
@pytest.mark.parametrize("case", ["version", "json", "shape", "outside"])
def test_bad_session_files_change_nothing_in_the_dock(make_widget, tiny_ckpt, tmp_path, case,
                                                      notifications):
    viewer, widget = make_widget(blob_stack(), name="blobs")
    pick_checkpoint(widget, tiny_ckpt)
    viewer.dims.set_point(0, 1)
    canvas_click(viewer, 20, 20)
    widget._on_commit()
    canvas_click(viewer, 30, 30)  # a pending prompt
    good = widget.save_session(str(tmp_path / "s.json"))
    record = json.loads(good.read_text())
    if case == "version":
        record["version"] = 3  # (2: a movie's TIFF per time point, read since session 44)
    elif case == "shape":
        record["image"]["shape"] = [6, 64, 80]
        record["labels"] = None
    elif case == "outside":
        record["pending"]["points"] = [[1.0, 30.0, 70.0]]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(record)[: -30 if case == "json" else None])
    before = _state(viewer)
    log = list(widget.controller.log)
    assert widget.load_session(str(bad)) is None
    assert _state(viewer) == before and widget.controller.log == log
    words = {"version": "format version 3", "json": "not valid JSON",
             "shape": "open the image it was made for", "outside": "lies outside"}[case]
    assert notifications and words in notifications[-1][1], notifications[-1]


def test_trace_in_the_dock_jumps_to_flags_and_applies_the_fix(make_widget, demo_available):
    """An object that stops early on a synthetic stack: its flag sits on the slice where it
    is back, a click on the flag shows that slice, the fix adds a point there and the next
    propagation carries the object through."""
    from napari_sam.annotate.model_choice import default_choice, model_choices
    from test_session import early_stop_stack

    viewer, widget = make_widget(early_stop_stack(), name="disc")
    c = widget.controller
    assert c.model_choice.is_demo or c.set_model(default_choice(model_choices())) is None
    viewer.dims.set_point(0, 3)
    canvas_click(viewer, 48, 48)
    widget._on_propagate()
    (obj,) = c.trace["objects"]
    assert obj["slices"][-1] <= 8
    (btn, flag), = [(b, f) for b, f in widget._trace.flag_buttons if f["kind"] == "stopped_early"]
    assert flag["slice"] == 10
    btn.click()
    assert c.current_z() == 10
    plot = widget._trace.plots[0]
    assert plot.slice_at(plot.x_of(5)) == 5
    (fix, _), = widget._trace.fix_buttons
    assert fix.text() == "Add a point on slice 10"
    fix.click()
    assert np.allclose(c.points_layer.data[-1], [10, 48, 48], atol=2)
    widget._scope.setCurrentIndex(1)  # all objects with prompts
    widget._on_propagate()
    assert c.volume.slice_range[1] == (0, 15)


def test_file_menu_saves_and_loads_sessions(make_widget, tiny_ckpt, tmp_path):
    from napari._app_model import get_app_model

    from napari_sam._qt.session_menu import load_session, save_session

    viewer, widget = make_widget(blob_stack(), name="blobs")
    menu = get_app_model().menus.get_menu("napari/file/io_utilities")
    titles = {item.command.id: item.command.title for item in menu if hasattr(item, "command")}
    assert titles["napari-sam-stacks.save_session"].startswith("Save SAM session...")
    assert titles["napari-sam-stacks.load_session"].startswith("Load SAM session...")
    pick_checkpoint(widget, tiny_ckpt)
    viewer.dims.set_point(0, 1)
    canvas_click(viewer, 20, 20)
    widget._on_commit()
    path = save_session(viewer, str(tmp_path / "menu.json"))
    assert path.is_file()
    sess = load_session(viewer, str(path))
    assert len(sess.operations) == 1
    # the labels layer holds exactly the session's labels already: commits go on there, no copy
    assert sum(ly.name.startswith("segmentation") for ly in viewer.layers) == 1
