"""Fixtures for the GUI tests: a real napari viewer (under Xvfb) with the dock widget, opened
the way napari's Plugins menu opens it (through the manifest, with napari's viewer proxy).

Wiring tests use the tiny random model of tests/conftest.py (fast, no quality); quality tests
use the bundled demo model and skip, saying why, while it is not installed.
"""

from __future__ import annotations

import pytest
from sam_qt_helpers import blob_stack, demo_model_path, open_from_menu, use_predictor

pytest.importorskip("napari")
pytest.importorskip("qtpy")


@pytest.fixture
def demo_available():
    path = demo_model_path()
    if not path.is_file():
        reason = f"the bundled demo model is not installed yet ({path} is missing)"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture
def tiny_predictor(tiny_sam):
    from napari_sam.predictor import Predictor

    return Predictor(tiny_sam, device="cpu")


@pytest.fixture
def make_widget(make_napari_viewer, qtbot):
    """``make_widget(image, sync=True, preload=True, **add_image_kwargs) -> (viewer, widget)``.

    The widget is opened from the plugin menu's entry (:func:`sam_qt_helpers.open_from_menu`);
    ``sync=True`` then makes its jobs run on the main thread (wiring tests), ``sync=False``
    keeps napari's worker threads. ``preload=False`` turns off embedding the visible slice
    when an image and a model are chosen (it starts from the event loop, so at whatever
    moment a test next processes events): for tests about the first job itself.
    """
    made = []

    def make(image=None, *, sync: bool = True, preload: bool = True, **kwargs):
        viewer = make_napari_viewer()
        if image is not None:
            viewer.add_image(image, **kwargs)
        _dock, widget = open_from_menu(viewer)
        widget.controller.sync = sync
        widget.preload = preload  # before the event loop runs the preload scheduled on opening
        made.append(widget)
        return viewer, widget

    yield make
    for w in made:
        w.controller.cancel()
        job = w.controller.job
        if job is not None and job.worker is not None:
            qtbot.waitUntil(lambda job=job: not job.running, timeout=60_000)


@pytest.fixture
def stack_widget(make_widget, tiny_predictor):
    """``(viewer, widget)``: the menu-opened dock on a 6-slice stack of two bright discs, the
    tiny random model chosen, slice 3 shown."""
    viewer, widget = make_widget(blob_stack(), name="blobs")
    use_predictor(widget, tiny_predictor)
    viewer.dims.set_point(0, 3)
    return viewer, widget


@pytest.fixture
def notifications():
    """Notifications dispatched during the test, as (severity, message) pairs."""
    from napari.utils.notifications import notification_manager

    seen = []

    def record(n):
        seen.append((str(n.severity), str(n.message)))

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Decode on one thread: on a shared 2-core machine, torch's thread pool spinning against
    other processes makes each tiny decoder call 10-50x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_ckpt(tmp_path, tiny_sam, tiny_config):
    """The tiny random model as a checkpoint file (what the GUI picks and the CLI loads)."""
    import json

    import torch

    path = tmp_path / "model" / "tiny.pt"
    path.parent.mkdir()
    torch.save(tiny_sam.state_dict(), path)
    path.with_name("tiny.pt.json").write_text(json.dumps({"config": tiny_config.to_dict()}))
    return path


@pytest.fixture
def stack_file(tmp_path):
    """The blob stack saved as ``data/blobs.tif`` (an image opened from a file)."""
    import tifffile

    path = tmp_path / "data" / "blobs.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, blob_stack())
    return path
