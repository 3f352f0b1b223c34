"""Every kind of job fails in a real worker thread, and the widget stays usable.

superqt's worker drops a RuntimeError raised in a job (it warns "RuntimeError in aborted
thread" and emits neither ``errored`` nor ``finished``); ``ModelDownloadError`` and CUDA's
out-of-memory error are RuntimeErrors. Each test here makes one kind of job fail with each
error type in turn, in napari's worker threads (``sync=False``), checks that the job ended,
that the status line and a notification say what happened, and then runs the same job
successfully in the same widget.
"""

from __future__ import annotations

import numpy as np
import pytest
from sam_qt_helpers import blob_stack, use_predictor

JOB_TIMEOUT_MS = 60_000
#: What torch's CPU allocator raises when the computer (or ``ulimit -v``) has no room left.
TORCH_CPU_OOM = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                 "allocate memory: you tried to allocate 25749900 bytes. Error code 12")


def _errors():
    import torch

    return [
        RuntimeError("boom: runtime"),
        ValueError("boom: value"),
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError(TORCH_CPU_OOM),  # torch's CPU allocator, e.g. under ulimit -v
        MemoryError("Unable to allocate 1.50 GiB for an array with shape (6, 8192, 8192)"),
    ]


def _wait(qtbot, controller):
    qtbot.waitUntil(lambda: controller.job is None, timeout=JOB_TIMEOUT_MS)


def _assert_failed_and_usable(widget, notifications, err, seen_before: int):
    c = widget.controller
    assert c.job is None
    assert not widget._cancel.isEnabled()
    assert widget._progress.maximum() > 0  # not left "busy"
    text = str(err)
    assert c.status.startswith("Failed: ") and text in c.status, c.status
    assert widget._status.text() == c.status
    new = notifications[seen_before:]
    assert any(text in m and "error" in s.lower() for s, m in new), new
    if "CUDA out of memory" in text:
        assert "'cpu' in 'Device'" in c.status  # says what to do
    elif isinstance(err, MemoryError) or "can't allocate memory" in text:
        assert f". Out of memory ({type(err).__name__}: " in c.status, c.status
        assert ("too little free memory for it: close other programs and images, pick a "
                "smaller model, or crop the image") in c.status  # not "Please report it"
    # nothing says that a job is still running
    assert "is running" not in c.status


@pytest.fixture
def threaded(make_widget, tiny_predictor):
    # no preload: each test's first job is the one that fails
    viewer, widget = make_widget(blob_stack(z=6), sync=False, preload=False, name="blobs")
    use_predictor(widget, tiny_predictor)
    viewer.dims.set_point(0, 3)
    return viewer, widget


def _fail_each(qtbot, widget, notifications, monkeypatch, target, name, start):
    """Make ``target.name`` raise each error in turn and run ``start()`` each time."""
    for err in _errors():

        def boom(*args, err=err, **kwargs):
            raise err

        monkeypatch.setattr(target, name, boom)
        before = len(notifications)
        start()
        _wait(qtbot, widget.controller)
        _assert_failed_and_usable(widget, notifications, err, before)
    monkeypatch.undo()


def test_loading_fails_download_runtime_value_then_loads(make_widget, notifications, qtbot,
                                                         monkeypatch, tmp_path, tiny_sam):
    """Offline download (the registry's real error), then a RuntimeError and a ValueError
    while loading; then a checkpoint file loads in the same widget."""
    import torch

    from napari_sam.annotate.model_choice import ModelCache, ModelChoice
    from napari_sam.models import registry

    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "cache"))
    url = (tmp_path / "offline" / "sam.pth").as_uri()
    spec = registry.ModelSpec(
        name="offline_test", architecture="vit_b", url=url, sha256="0" * 64, size=10,
        filename="offline_test.pth", description="test", source="test",
    )
    monkeypatch.setitem(registry.REGISTRY, "offline_test", spec)
    viewer, widget = make_widget(blob_stack(z=2), sync=False, name="img")
    c = widget.controller
    c.set_model(ModelChoice("offline_test", "offline_test", cached=False))

    before = len(notifications)
    widget._on_compute()
    assert c.job is not None and c.job.worker is not None  # a real worker thread
    _wait(qtbot, c)
    assert c.job is None and not widget._cancel.isEnabled()
    shown = [m for s, m in notifications[before:] if "error" in s.lower()]
    assert shown and "could not be downloaded" in shown[-1]
    assert url in shown[-1] and str(tmp_path / "cache") in shown[-1]  # the URL; where to put it
    # the status names what failed (loading the model, not computing embeddings) in a short
    # line, the details in the notification; the model before it is in use again (every
    # click tried the download again, the dock stuck on it: session 33's walk-through)
    assert c.status.startswith("Failed: Computing SAM embeddings (loading the model "
                               "'offline_test'). The model could not be downloaded ("), c.status
    assert url not in c.status and len(c.status) < 400, c.status
    assert c.status.endswith("the notification says how to install its file by hand. The "
                             "model in use is 'demo' again: pick 'offline_test' in 'Model' "
                             "once its file is in place."), c.status
    assert c.model_choice.key == "demo" and widget._model.currentData().key == "demo"
    # a click now is not refused as "a job is running": it decodes with the model in use
    before = len(notifications)
    c.points_layer.add([c.current_z(), 20, 20])
    _wait(qtbot, c)
    assert "is running" not in " ".join(m for _, m in notifications[before:])
    assert c.previews and c.status.startswith("point object"), c.status
    c.clear_prompts()  # else the model picked previews them at once, in a job that could
    # reach the download before the load below is made to fail (a race on a busy machine)
    c.set_model(ModelChoice("offline_test", "offline_test", cached=False))
    assert c.job is None

    _fail_each(qtbot, widget, notifications, monkeypatch, ModelCache, "load", widget._on_compute)

    path = tmp_path / "tiny.pt"
    torch.save(tiny_sam.state_dict(), path)
    widget._model.setCurrentIndex(widget._model.findText("Checkpoint file..."))
    widget._on_model_changed(path=str(path))
    _wait(qtbot, c)  # (the file is read in a job of its own)
    widget._on_compute()
    _wait(qtbot, c)
    assert c.ready([0, 1]) and c.status.startswith("Embeddings ready")


def test_embedding_fails_then_embeds(threaded, notifications, qtbot, monkeypatch):
    from napari_sam.embeddings import StackEmbeddings

    viewer, widget = threaded
    c = widget.controller
    _fail_each(qtbot, widget, notifications, monkeypatch, StackEmbeddings, "compute",
               widget._on_compute)
    # the failed jobs embedded nothing, and count nothing (what a failed job embedded is
    # kept since session 41: its empty embeddings are)
    assert c.embedding_summary() == "0 of 6 slices embedded"
    widget._on_compute()
    _wait(qtbot, c)
    assert c.ready(range(6))


def test_preview_job_fails_then_previews(threaded, notifications, qtbot, monkeypatch):
    """A click starts embedding its slice in a worker; that fails, the click stays, and the
    next click previews."""
    from napari_sam.embeddings import StackEmbeddings

    viewer, widget = threaded
    c = widget.controller
    clicks = iter([(20, 20), (21, 20), (20, 21), (22, 20), (20, 22)])  # one per error

    def click():
        c.points_layer.add([3, *next(clicks)])

    _fail_each(qtbot, widget, notifications, monkeypatch, StackEmbeddings, "compute", click)
    assert not c.previews
    widget._on_segment()
    _wait(qtbot, c)
    assert c.previews and c.previews[0].z == 3 and c.previews[0].mask.any()
    assert "score" in c.status


def test_segment_on_the_main_thread_fails_then_segments(threaded, notifications, qtbot,
                                                        monkeypatch):
    """Decoding a preview (main thread, embeddings ready) fails: a notification, no job."""
    from napari_sam.annotate import slice_preview as controller_module

    viewer, widget = threaded
    c = widget.controller
    widget._on_compute()
    _wait(qtbot, c)
    for err in _errors():
        def boom(*args, err=err, **kwargs):
            raise err

        monkeypatch.setattr(controller_module, "decode_slice", boom)
        before = len(notifications)
        c.points_layer.add([3, 20, 20])
        assert c.job is None
        assert any(str(err) in m for _, m in notifications[before:])
        c.clear()
    monkeypatch.undo()
    c.points_layer.add([3, 20, 20])
    assert c.previews and c.previews[0].mask.any()


def test_propagation_fails_then_propagates(threaded, notifications, qtbot, monkeypatch):
    import napari_sam.volume as volume

    viewer, widget = threaded
    c = widget.controller
    c.live = False  # the points are prompts for propagation only
    c.points_layer.add([3, 20, 20])
    _fail_each(qtbot, widget, notifications, monkeypatch, volume, "segment_volume",
               widget._on_propagate)
    assert c.volume is None
    widget._on_propagate()
    _wait(qtbot, c)
    assert c.volume is not None and c.status.startswith("Propagated 1 object")
    preview = c.source.zyx_view(c.preview_layer.data)
    assert np.array_equal(preview, c.volume.labels)


def test_segment_everything_fails_then_segments(threaded, notifications, qtbot, monkeypatch):
    automatic = pytest.importorskip("napari_sam.automatic")
    viewer, widget = threaded
    c = widget.controller
    widget._pps.setValue(4)
    widget._iou.setValue(0.0)
    widget._stability.setValue(0.0)
    _fail_each(qtbot, widget, notifications, monkeypatch, automatic, "segment_everything",
               widget._on_automatic)
    assert not [ly for ly in viewer.layers if ly.name.startswith("automatic")]
    widget._on_automatic()
    _wait(qtbot, c)
    new = [ly for ly in viewer.layers if ly.name.startswith("automatic segmentation")]
    assert len(new) == 1 and new[0].data.shape == (6, 64, 64), c.status


def test_applying_a_result_fails_then_works(threaded, notifications, qtbot, monkeypatch):
    """An error in the main-thread part of a job (applying its result) ends it as well."""
    viewer, widget = threaded
    c = widget.controller
    real = c._adopt
    for err in _errors():
        def boom(*args, err=err, **kwargs):
            raise err

        monkeypatch.setattr(c, "_adopt", boom)
        before = len(notifications)
        widget._on_compute()
        _wait(qtbot, c)
        _assert_failed_and_usable(widget, notifications, err, before)
    monkeypatch.setattr(c, "_adopt", real)
    widget._on_compute()
    _wait(qtbot, c)
    assert c.ready(range(6))


def _held(monkeypatch, target, name):
    """Make ``target.name`` wait (in its worker thread) until the returned event is set."""
    import threading

    release = threading.Event()
    real = getattr(target, name)

    def held(*args, **kwargs):
        assert release.wait(JOB_TIMEOUT_MS / 1000)
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, held)
    return release


def _switch_image(widget, name: str) -> None:
    widget._image.setCurrentIndex(widget._image.findText(name))
    widget._on_image_changed()


@pytest.mark.parametrize("job", ["propagate", "segment everything"])
def test_a_result_is_not_applied_to_an_image_picked_while_it_ran(threaded, qtbot, monkeypatch,
                                                                 job):
    """Picking another image (same shape) while a job runs: the job's result belongs to the
    first image, so it is neither previewed nor committed nor added as a layer on the second;
    the status says so and what to do."""
    import napari_sam.automatic as automatic
    import napari_sam.volume as volume

    viewer, widget = threaded
    c = widget.controller
    c.live = False
    c.points_layer.add([3, 20, 20])
    viewer.add_image(blob_stack(z=6) * 0.5, name="other")
    _switch_image(widget, "blobs")
    layers_before = sorted(ly.name for ly in viewer.layers)
    if job == "propagate":
        release = _held(monkeypatch, volume, "segment_volume")
        widget._on_propagate()
    else:
        release = _held(monkeypatch, automatic, "segment_everything")
        widget._on_automatic()
    qtbot.waitUntil(lambda: c.job is not None and c.job.running, timeout=JOB_TIMEOUT_MS)
    running = c.job
    _switch_image(widget, "other")
    assert running.cancelled and running.stale  # at once: it ran on for minutes (session 29)
    release.set()
    _wait(qtbot, c)
    assert c.volume is None
    assert (f"Stopped: {running.description}, because the image, the model or a setting "
            "changed while it ran (its result could not have been applied; the slices it had "
            "embedded are kept). Click on an object in 'other'") in c.status, c.status
    assert not c.preview_layer.data.any()
    assert sorted(ly.name for ly in viewer.layers) == layers_before  # no result layer
    _switch_image(widget, "blobs")  # the embeddings it made (and the slices in them) are kept
    # (a propagation embeds the slices as the object reaches them: the held one reached none)
    assert c.emb is not None and (job == "propagate" or c.ready([3]))


def test_a_click_on_the_image_picked_while_a_job_ran_is_previewed_when_it_stops(
        threaded, qtbot, monkeypatch):
    """Segment everything on one image, another picked and clicked meanwhile: the job ran on
    to its end, said its result was not applied, then the click's embedding overwrote that
    line, and no word said the segmentation was gone (helper walk-through, session 29). Now
    the job stops at once, and the click's preview says why it stopped."""
    import napari_sam.automatic as automatic

    viewer, widget = threaded
    c = widget.controller
    viewer.add_image(blob_stack(z=6) * 0.5, name="other")
    _switch_image(widget, "blobs")
    release = _held(monkeypatch, automatic, "segment_everything")
    widget._on_automatic()
    qtbot.waitUntil(lambda: c.job is not None and c.job.running, timeout=JOB_TIMEOUT_MS)
    job = c.job
    _switch_image(widget, "other")
    c.points_layer.add([3, 20, 20])  # a click on the new image while the job ends
    assert c.status.startswith("Waiting for the running job"), c.status
    release.set()
    _wait(qtbot, c)
    assert job.cancelled and not job.succeeded
    assert c.status.startswith(f"Stopped: {job.description}, because the image"), c.status
    assert "score" in c.status and c.previews  # the click's preview, on 'other'
    assert not [ly for ly in viewer.layers if ly.name.startswith("automatic")]


def test_the_image_picked_while_a_stale_job_ran_is_preloaded_after_it_stops(
        threaded, qtbot, monkeypatch):
    """The preload of the newly picked image waits for the running job; when that job
    stopped because it went stale nothing embedded the new image, so the first click there
    waited for the whole embedding (session 29's note). Now the preload follows the stop,
    and the line saying why the job stopped is kept."""
    import napari_sam.automatic as automatic

    viewer, widget = threaded
    c = widget.controller
    viewer.add_image(blob_stack(z=6) * 0.5, name="other")
    _switch_image(widget, "blobs")
    widget.preload = True
    release = _held(monkeypatch, automatic, "segment_everything")
    widget._on_automatic()
    qtbot.waitUntil(lambda: c.job is not None and c.job.running, timeout=JOB_TIMEOUT_MS)
    job = c.job
    _switch_image(widget, "other")
    assert not c.ready([c.current_z()])
    release.set()
    qtbot.waitUntil(lambda: c.ready([c.current_z()]) and c.job is None, timeout=JOB_TIMEOUT_MS)
    assert c.image_layer.name == "other"
    assert c.status.startswith(f"Stopped: {job.description}, because the image"), c.status
    assert "Click on an object in 'other'" in c.status, c.status


def test_removing_the_image_while_a_job_runs(threaded, qtbot, monkeypatch, notifications):
    """The image layer removed while a propagation runs: the finished job applies nothing,
    keeps nothing of that image, and says so (it used to fail with an "unexpected
    AttributeError" from the removed layer)."""
    import napari_sam.volume as volume

    viewer, widget = threaded
    c = widget.controller
    c.live = False
    c.points_layer.add([3, 20, 20])
    release = _held(monkeypatch, volume, "segment_volume")
    widget._on_propagate()
    qtbot.waitUntil(lambda: c.job is not None and c.job.running, timeout=JOB_TIMEOUT_MS)
    before = len(notifications)
    job = c.job
    viewer.layers.remove("blobs")
    assert job.cancelled and job.stale
    release.set()
    _wait(qtbot, c)
    assert (f"Stopped: {job.description}, because its image layer was removed while it ran"
            in c.status), c.status
    assert "unexpected" not in c.status.lower()
    assert not any("error" in s.lower() for s, _ in notifications[before:]), notifications
    assert c.volume is None and c.emb is None
    assert len(c.embeddings) == 0  # nothing of the removed image is kept
    assert not [ly for ly in viewer.layers if ly.name.startswith("automatic")]


def test_closing_the_viewer_while_a_job_runs(make_widget, tiny_predictor, qtbot, monkeypatch):
    """napari's window closed while segment everything runs (Qt deletes the dock without a
    closeEvent): the job is cancelled and its late progress reports reach no deleted Qt
    object (they used to abort the process)."""
    import napari_sam.automatic as automatic

    viewer, widget = make_widget(blob_stack(z=6), sync=False, preload=False, name="blobs")
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    release = _held(monkeypatch, automatic, "segment_everything")
    widget._auto_scope.setCurrentIndex(1)
    widget._on_automatic()
    qtbot.waitUntil(lambda: c.job is not None and c.job.running, timeout=JOB_TIMEOUT_MS)
    job = c.job
    viewer.close()  # File > Close Window: Qt deletes the dock without a closeEvent
    qtbot.waitUntil(lambda: not widget._links, timeout=JOB_TIMEOUT_MS)
    release.set()
    qtbot.waitUntil(lambda: not job.running, timeout=JOB_TIMEOUT_MS)
    assert job.cancelled
    c.job_progress.emit(1, 2)  # a late report: no slot of the deleted widget runs


def test_a_long_url_in_the_status_does_not_widen_the_dock(make_widget, qtbot):
    """A download failure's URL in the status line (no place to break it) widened the dock
    for good, the canvas narrower after the status was short again (session 33)."""
    viewer, widget = make_widget(blob_stack(z=2), sync=True, preload=False, name="img")
    narrow = widget.minimumSizeHint().width()
    widget.controller.say("Failed: https://dl.fbaipublicfiles.com/" + "x" * 300 + ".pth")
    assert widget.minimumSizeHint().width() <= narrow
    assert widget._status.text().startswith("Failed: https://")
