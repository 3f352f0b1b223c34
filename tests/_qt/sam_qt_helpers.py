"""Helpers shared by the GUI tests (imported as a plain module: tests/ has no packages)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from stacks import blob_movie, blob_stack  # noqa: F401  (the GUI tests import them from here)

#: The plugin and widget names of napari.yaml: what napari's Plugins menu opens.
PLUGIN = "napari-sam-stacks"
MANIFEST = Path(__file__).resolve().parents[2] / "napari.yaml"


def widget_display_name() -> str:
    """The display name of the widget contribution in napari.yaml."""
    import yaml

    manifest = yaml.safe_load(MANIFEST.read_text())
    (widget,) = manifest["contributions"]["widgets"]
    return widget["display_name"]


def open_from_menu(viewer):
    """Open the widget the way napari's menu does: through the plugin manifest, so that the
    widget gets napari's proxy of the viewer. Returns (dock, widget)."""
    return viewer.window.add_plugin_dock_widget(PLUGIN, widget_display_name())


def canvas_position(viewer, row: float, col: float) -> tuple[float, float]:
    """Canvas pixel (x, y) showing world (row, col) of the displayed plane."""
    view = viewer.window._qt_viewer.canvas.view
    x, y = (view.transform * view.scene.transform).map([col, row])[:2]
    return float(x), float(y)


def canvas_click(viewer, row: float, col: float, modifiers=()):
    """A real mouse click on the canvas (vispy press and release events at one pixel), as
    napari receives it from Qt; ``modifiers`` e.g. ("Shift",)."""
    from vispy.util import keys

    mods = tuple(getattr(keys, m.upper()) for m in modifiers)
    scene = viewer.window._qt_viewer.canvas._scene_canvas
    pos = canvas_position(viewer, row, col)
    scene.events.mouse_press(pos=pos, modifiers=mods, button=1)
    scene.events.mouse_release(pos=pos, modifiers=mods, button=1)


def canvas_drag(viewer, qtbot, start, end, steps: int = 5, whole: bool = False) -> None:
    """A real mouse drag on the canvas from world (row, col) ``start`` to ``end``: press,
    ``steps`` moves and release, as napari receives them from Qt. napari handles at most one
    move per 5 ms (it throttles them): each move waits 20 ms, or napari drops it (a box
    dragged without the waits stayed at napari's first few pixels). Let Qt run what the dock
    posted first (``qtbot.wait``): its selecting of 'SAM points' after an image is picked,
    run mid-drag, sends the rest of the drag to that layer. ``whole``: at whole canvas
    pixels, as Qt gives them (napari's brush outline refuses fractional positions)."""
    scene = viewer.window._qt_viewer.canvas._scene_canvas
    at = round if whole else float
    p0, p1 = (tuple(at(v) for v in canvas_position(viewer, *p)) for p in (start, end))
    press = scene.events.mouse_press(pos=p0, modifiers=(), button=1, buttons=[1])
    for t in np.linspace(0, 1, steps + 1)[1:]:
        pos = (at(p0[0] + t * (p1[0] - p0[0])), at(p0[1] + t * (p1[1] - p0[1])))
        scene.events.mouse_move(pos=pos, modifiers=(), button=1, press_event=press,
                                buttons=[1])
        qtbot.wait(20)
    scene.events.mouse_release(pos=p1, modifiers=(), button=1, press_event=press)


def press_key(viewer, key: str) -> None:
    """A key press as napari's key map receives it from Qt, e.g. "Shift-C", "Control-Z"."""
    viewer.window._qt_viewer._key_map_handler.press_key(key)


def click_commit(viewer, widget, row: float, col: float) -> str:
    """Click (row, col) on the canvas with the dock's points layer selected, press Shift+C,
    and check the commit happened (waiting for the dock's jobs where they run in threads);
    returns the dock's status line."""
    c = widget.controller
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, row, col)
    widget.wait()
    assert c.previews, widget._status.text()
    press_key(viewer, "Shift-C")
    widget.wait()
    assert widget._status.text().startswith("Committed label"), widget._status.text()
    return widget._status.text()


def commit_at_time(viewer, widget, t: int, z: int, row: float) -> None:
    """A movie's dock: move the time slider to ``t`` and slice ``z``; click (row, 20),
    commit, and wait for the autosave."""
    viewer.dims.set_current_step(0, t)
    widget.wait()
    viewer.dims.set_point(1, z)
    click_commit(viewer, widget, row, 20)
    widget.controller.wait_autosave()


def click_button(qtbot, widget, text: str) -> str:
    """A real mouse click on the dock's push button whose text starts with ``text`` (a
    disabled one ignores it); returns the status line."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QPushButton

    button = next(b for b in widget.findChildren(QPushButton) if b.text().startswith(text))
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    return widget._status.text()


def contrast_box(widget):
    """The Setup box 'Model sees the layer's contrast' of the dock ``widget``."""
    from qtpy.QtWidgets import QCheckBox

    from napari_sam._qt.layer_contrast import BOX_TEXT

    (box,) = [b for b in widget.findChildren(QCheckBox) if b.text() == BOX_TEXT]
    return box


def demo_model_path():
    from napari_sam.models.registry import weights_dir

    return weights_dir() / "demo.pt"


def use_predictor(widget, predictor, name: str = "tiny", is_demo: bool = False):
    """Make the widget use an already built predictor (no loading, no download)."""
    from napari_sam.annotate.model_choice import ModelChoice

    choice = ModelChoice(name, name, is_demo=is_demo)
    widget.controller.models.put(choice, "auto", predictor)
    widget._model.addItem(choice.label, choice)
    widget._model.setCurrentIndex(widget._model.count() - 1)
    widget.controller.set_model(choice)
    return choice


def pick_checkpoint(widget, ckpt):
    """The user's way: "Checkpoint file..." in 'Model', then the file (read in a worker
    thread where the dock's jobs are threaded: waited for)."""
    import time

    from qtpy.QtWidgets import QApplication

    widget._model.setCurrentIndex(widget._model.findText("Checkpoint file..."))
    widget._on_model_changed(str(ckpt))
    end = time.monotonic() + 60
    while getattr(widget.controller.model_choice, "key", None) != str(ckpt) and (
            time.monotonic() < end):
        QApplication.processEvents()
        time.sleep(0.01)
    assert widget.controller.model_choice.key == str(ckpt), widget.controller.status


def large_image_embedding_tiles(make_widget, qtbot):
    """The dock on a 1400 x 1400 image (tiled), its background embedding of tiles under way
    (real worker threads): ``(widget, controller, the preload job)``."""
    rng = np.random.default_rng(0)
    image = (30 + rng.normal(0, 10, (1400, 1400))).clip(0, 255).astype(np.uint8)
    _viewer, w = make_widget(image, sync=False, preload=True, name="large")
    c = w.controller
    # the demo model loads and the first tiles embed first: 60 s was passed once while other
    # tests ran beside it (a loaded 2-core machine, as CI's)
    qtbot.waitUntil(lambda: c.job is not None and c.job.phase == "embedding tiles",
                    timeout=180_000)
    return w, c, c.job


def grid_of_two_images(make_widget, predictor, qtbot):
    """``(viewer, widget, grid)``: the dock on 'img' (the blob stack, slice 3 shown) beside
    another image 'other', ``predictor`` chosen, in a shown window with napari's grid mode
    on (Ctrl+G: one tile per layer)."""
    viewer, widget = make_widget(blob_stack(), name="img")
    viewer.add_image(blob_stack(seed=1), name="other")
    viewer.layers.selection.active = viewer.layers["img"]
    use_predictor(widget, predictor)
    viewer.dims.set_point(0, 3)
    viewer.window._qt_window.resize(1100, 800)
    viewer.window._qt_window.show()  # napari lays the grid's tiles out in a shown canvas
    qtbot.waitUntil(widget.isVisible, timeout=5000)
    grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid
    grid.enabled = True
    qtbot.wait(100)  # the canvas lays its tiles out
    return viewer, widget, grid


def dock_on(make_widget, image_file, ckpt):
    """``(viewer, widget)``: a new viewer's dock with the checkpoint ``ckpt`` picked, then
    ``image_file`` opened as a user does (napari's reader, File > Open)."""
    viewer, widget = make_widget()
    pick_checkpoint(widget, ckpt)
    viewer.open(str(image_file), plugin="napari")
    return viewer, widget


def dock_on_a_full_disk(make_widget, image_file, ckpt, tmp_path, monkeypatch):
    """``(viewer, widget, write)``: :func:`dock_on`, with every session write (autosave,
    beside the image and under the cache folder in ``tmp_path``) failing with "No space left
    on device" and its warnings unshown; ``write`` is the real ``session.write_session``
    (set it back to free the space)."""
    import errno

    from napari_sam import session as S

    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "cache"))
    viewer, widget = dock_on(make_widget, image_file, ckpt)
    monkeypatch.setattr(widget.controller, "notify_warning", lambda text: None)
    write = S.write_session

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(S, "write_session", full)
    return viewer, widget, write


def commit_on(viewer, widget, z: int, row: float = 20):
    """Click (row, 20) on slice ``z`` and commit with the dock's button; waits for the
    autosave it starts and lets Qt deliver what it posted."""
    from qtpy.QtWidgets import QApplication

    c = widget.controller
    viewer.dims.set_point(0, z)
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, row, 20)
    res = widget._on_commit()
    assert res is not None, c.status
    c.wait_autosave()
    QApplication.processEvents()


#: what :func:`held_encoder` raises when told to fail
HELD_FAILURE = "out of memory (the test's)"


def held_encoder(monkeypatch, predictor) -> tuple[threading.Event, threading.Event, list]:
    """``(gate, entered, fail)``: the predictor's encoder waits for ``gate`` once
    ``entered``, then raises a RuntimeError where ``fail`` holds something."""
    gate, entered, fail = threading.Event(), threading.Event(), []
    real = predictor.encode_rgb

    def held(rgbs):
        entered.set()
        assert gate.wait(60), "the test never let the encoder go on"
        if fail:
            raise RuntimeError(HELD_FAILURE)
        return real(rgbs)

    monkeypatch.setattr(predictor, "encode_rgb", held)
    return gate, entered, fail


def hold_propagation(monkeypatch) -> threading.Event:
    """Make SAM 1 propagations (``napari_sam.volume.segment_volume``) wait until the test
    sets the event returned."""
    import napari_sam.volume as V

    go, real = threading.Event(), V.segment_volume

    def held(*args, **kwargs):  # the propagation runs until the test lets it go
        assert go.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(V, "segment_volume", held)
    return go


def propagating_held(make_widget, tiny_predictor, qtbot, monkeypatch):
    """A threaded dock on an 8-slice stack, a nucleus clicked on slice 2 and Shift+D
    pressed: the propagation runs (its phase "propagating") until the test sets ``go``.
    Returns ``(viewer, widget, go)``."""
    viewer, widget = make_widget(blob_stack(z=8), sync=False, name="stack")
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    viewer.dims.set_point(0, 2)
    qtbot.waitUntil(lambda: c.job is None and c.ready([2]), timeout=60_000)
    go = hold_propagation(monkeypatch)
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 20, 20)
    qtbot.waitUntil(lambda: c.job is None and bool(c.previews), timeout=60_000)
    press_key(viewer, "Shift-D")
    qtbot.waitUntil(lambda: c.job is not None and c.job.phase == "propagating", timeout=60_000)
    return viewer, widget, go


def store_fills_from_slice(monkeypatch, first: int):
    """The disk under an embedding store fills: writing the features of slice ``first`` or
    later raises ENOSPC (zarr's ``Array.__setitem__``). Returns the real ``__setitem__``, for
    ``monkeypatch.setattr(zarr.Array, "__setitem__", it)`` once space is freed."""
    import errno

    import zarr

    write = zarr.Array.__setitem__

    def full_from(self, key, value):
        if np.ndim(value) == 3 and key >= first:
            raise OSError(errno.ENOSPC, "No space left on device")
        write(self, key, value)

    monkeypatch.setattr(zarr.Array, "__setitem__", full_from)
    return write


def held_model_load(monkeypatch, controller, predictor):
    """``(gate, entered)``: the controller's next model load waits for ``gate`` once
    ``entered``, then gives ``predictor``; the model "held" is picked (not yet loaded)."""
    from napari_sam.annotate.model_choice import ModelChoice

    gate, entered = threading.Event(), threading.Event()

    def held_load(choice, device, precision="auto"):
        entered.set()
        assert gate.wait(60), "the test never let the load go on"
        return predictor

    monkeypatch.setattr(controller.models, "load", held_load)
    controller.set_model(ModelChoice("held", "held"))
    return gate, entered


#: The start of a script that runs napari in a process of its own (to be signalled or killed):
#: napari with the stack from its file, the dock from the menu, the checkpoint picked, one
#: commit on slice 1 (``.format(stack=..., ckpt=...)``; the script imports napari,
#: ``open_from_menu``, ``pick_checkpoint`` and ``commit_on`` first).
ONE_COMMIT_SCRIPT = r"""viewer = napari.Viewer(show=False)
viewer.open({stack!r}, plugin="napari")
dock, widget = open_from_menu(viewer)
widget.controller.sync = True
pick_checkpoint(widget, {ckpt!r})
commit_on(viewer, widget, 1)
"""


def napari_until(script: str, marker: str, timeout: float = 240.0):
    """Run ``script`` (napari in a Python process of its own: :data:`ONE_COMMIT_SCRIPT`'s
    kind) and wait until it prints ``marker``; returns the running process, for the caller to
    signal or kill (killed here, with its stderr in the error, when the marker never came)."""
    import os
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    t0, line = time.time(), ""
    while marker not in line and time.time() - t0 < timeout:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
    if marker not in line:
        proc.kill()
        proc.wait(30)
        raise AssertionError(proc.stderr.read()[-3000:])
    return proc
