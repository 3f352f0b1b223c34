"""A checkpoint file picked in 'Model' ("Checkpoint file...") was read on the UI thread:
``torch.load`` of a 375 MB SAM file froze napari for seconds (and imported torch there, where
the dock never imports it). It is now read in a worker thread, a job with the usual status
line; a file that cannot be a model fails that job with its clear words, the model in use
stays, and the dock goes on working."""

from __future__ import annotations

import threading

from sam_qt_helpers import blob_stack, held_encoder, pick_checkpoint, use_predictor


def test_a_checkpoint_is_read_off_the_ui_thread_and_a_bad_one_leaves_the_dock_usable(
        make_widget, tiny_ckpt, tmp_path, qtbot, notifications, monkeypatch):
    import torch

    ui, readers, gate = threading.get_ident(), [], threading.Event()
    real = torch.load

    def load(*args, **kwargs):  # held off the UI thread until the test lets it go on
        readers.append(threading.get_ident())
        if threading.get_ident() != ui:
            assert gate.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    viewer, widget = make_widget(blob_stack(), sync=False, preload=False, name="blobs")
    c = widget.controller
    before = c.model_choice
    widget._model.setCurrentIndex(widget._model.count() - 1)  # "Checkpoint file..."
    widget._on_model_changed(str(tiny_ckpt))  # returns while the file is read
    assert c.status.startswith(f"Reading the checkpoint {tiny_ckpt.name} ..."), c.status
    assert c.model_choice == before and widget._model.currentData() == before
    gate.set()
    qtbot.waitUntil(lambda: c.job is None and c.model_choice.key == str(tiny_ckpt),
                    timeout=60_000)
    assert readers and ui not in readers
    assert widget._model.currentText() == f"file: {tiny_ckpt.name}"

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint" * 100)
    widget._model.setCurrentIndex(widget._model.count() - 1)
    widget._on_model_changed(str(bad))
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    assert c.status.startswith(
        "Failed: Reading the checkpoint bad.pt. bad.pt cannot be read as a PyTorch checkpoint "
        "(UnpicklingError): a truncated download or another file format? Download it again "
        "(Meta's sam2.1_hiera_*.pt, SAM's sam_vit_*.pth) or pick another file."), c.status
    assert any("bad.pt cannot be read as a PyTorch checkpoint" in m for _, m in notifications)
    assert ui not in readers
    assert c.model_choice.key == str(tiny_ckpt)  # the model in use stays, shown in 'Model'
    assert widget._model.currentData() == c.model_choice
    assert widget._model.findText("file: bad.pt") == -1
    widget._on_compute()  # the dock goes on working with it
    qtbot.waitUntil(lambda: c.job is None, timeout=120_000)
    assert c.ready(list(range(6))) and c.status.startswith("Embeddings ready"), c.status


def test_a_checkpoint_picked_while_a_job_runs_is_read_beside_it_and_used(
        make_widget, tiny_ckpt, tiny_predictor, qtbot, monkeypatch):
    """The preload of the model in use runs (held in its encoder): the file is read beside
    it (before: the one job slot would refuse it), then used; the old model's job, stale
    now, is stopped."""
    viewer, widget = make_widget(blob_stack(), sync=False, preload=False, name="blobs")
    c = widget.controller
    use_predictor(widget, tiny_predictor)
    gate, entered, _ = held_encoder(monkeypatch, tiny_predictor)
    running = c.preload()
    assert running is not None and entered.wait(60)
    widget._model.setCurrentIndex(widget._model.findText("Checkpoint file..."))
    widget._on_model_changed(str(tiny_ckpt))
    qtbot.waitUntil(lambda: c.model_choice.key == str(tiny_ckpt), timeout=60_000)
    assert running.cancelled and running.stale  # the old model's embedding: stopped
    gate.set()
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    widget._on_compute()
    qtbot.waitUntil(lambda: c.job is None, timeout=120_000)
    assert c.ready(list(range(6))) and c.status.startswith("Embeddings ready"), c.status


def test_a_checkpoint_picked_again_from_the_list_is_not_read_on_the_ui_thread(
        make_widget, tiny_ckpt, qtbot, monkeypatch):
    """Picking the file's entry of 'Model' again (after another model), or the dock going
    back to it after another model failed to load, read the file on the UI thread for its
    thresholds (``torch.load``: seconds for a large file). The thresholds its read in the
    job found are used."""
    import torch

    from napari_sam.annotate.model_choice import file_choice, recommended_thresholds

    viewer, widget = make_widget(blob_stack(), sync=False, preload=False, name="blobs")
    box, c = widget._model, widget.controller
    pick_checkpoint(widget, tiny_ckpt)
    expected = recommended_thresholds(file_choice(tiny_ckpt))
    ui, readers, real = threading.get_ident(), [], torch.load

    def load(*args, **kwargs):
        readers.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    other = next(i for i in range(box.count())
                 if box.itemData(i) is not None and not box.itemData(i).is_file)
    box.setCurrentIndex(other)
    box.activated.emit(other)
    assert not c.model_choice.is_file
    widget._iou.setValue(0.5)
    mine = box.findText(f"file: {tiny_ckpt.name}")
    box.setCurrentIndex(mine)
    box.activated.emit(mine)  # picked again from the list
    assert c.model_choice.key == str(tiny_ckpt)
    assert ui not in readers  # before: read here
    assert widget._iou.value() == expected["pred_iou_thresh"]
    assert widget._stability.value() == expected["stability_score_thresh"]


def _held_reads_off_the_ui_thread(monkeypatch) -> threading.Event:
    """An event that every ``torch.load`` off this (the UI) thread waits for."""
    import torch

    ui, gate, real = threading.get_ident(), threading.Event(), torch.load

    def load(*args, **kwargs):
        if threading.get_ident() != ui:
            assert gate.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    return gate


def test_the_file_dialog_cancelled_while_a_checkpoint_is_read_keeps_that_pick(
        make_widget, tiny_ckpt, qtbot, monkeypatch):
    """'Checkpoint file...' opened again while the file picked is read, and its dialog
    cancelled: the read file was dropped when it came (the model in use stayed, and the
    status kept saying 'Reading the checkpoint tiny.pt ...'). Only a pick drops it."""
    from qtpy.QtWidgets import QFileDialog

    gate = _held_reads_off_the_ui_thread(monkeypatch)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: ("", ""))
    viewer, widget = make_widget(blob_stack(), sync=False, preload=False, name="blobs")
    box, c = widget._model, widget.controller
    box.setCurrentIndex(box.findText("Checkpoint file..."))
    widget._on_model_changed(str(tiny_ckpt))
    assert c.status.startswith(f"Reading the checkpoint {tiny_ckpt.name} ..."), c.status
    again = box.findText("Checkpoint file...")
    box.setCurrentIndex(again)
    box.activated.emit(again)  # the dialog opens again, and is cancelled
    gate.set()
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    assert c.model_choice.key == str(tiny_ckpt)  # before: the model in use stayed
    assert box.currentText() == f"file: {tiny_ckpt.name}"


def test_a_checkpoint_that_cannot_be_read_says_so_not_that_it_is_truncated(
        make_widget, tiny_ckpt, qtbot, monkeypatch):
    """A file this user may not read (or a drive failing): the job said it was 'a truncated
    download or another file format? Download it again', the wrong thing to do."""
    import errno
    import os

    import torch

    def load(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(torch, "load", load)
    viewer, widget = make_widget(blob_stack(), sync=False, preload=False, name="blobs")
    c = widget.controller
    widget._model.setCurrentIndex(widget._model.findText("Checkpoint file..."))
    widget._on_model_changed(str(tiny_ckpt))
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    assert c.status.startswith(
        f"Failed: Reading the checkpoint tiny.pt. Could not read tiny.pt (Permission denied): "
        f"check that you may read {tiny_ckpt} (its permissions, the drive it is on), or pick "
        "another file."), c.status
    assert c.model_choice.key != str(tiny_ckpt)


def _held_bad_checkpoint(tmp_path, monkeypatch):
    """``(bad, slow)``: a file ``bad.pt`` that is no checkpoint, whose ``torch.load`` waits
    for the event ``slow`` (then fails as such a file does)."""
    import torch

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint" * 100)
    slow, real = threading.Event(), torch.load

    def load(path, *args, **kwargs):
        if str(path) == str(bad):
            assert slow.wait(60)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    return bad, slow


def test_a_read_beside_a_job_failing_after_another_file_was_used_says_nothing(
        make_widget, tiny_ckpt, tiny_predictor, tmp_path, qtbot, monkeypatch):
    """Two files picked while the preload runs, both read beside it: the first (not a
    checkpoint, slow to read) failed after the second was in use, and its status line
    'Failed: Reading the checkpoint bad.pt ...' replaced what the dock said of the model in
    use. A read another pick made stale fails silently."""
    from qtpy.QtCore import QThreadPool

    from napari_sam._qt import model_box

    reads, run_job = [], model_box.run_job

    def recorded(*args, **kwargs):  # (the reads beside the preload: waited for)
        reads.append(run_job(*args, **kwargs))
        return reads[-1]

    monkeypatch.setattr(model_box, "run_job", recorded)
    bad, slow = _held_bad_checkpoint(tmp_path, monkeypatch)
    pool = QThreadPool.globalInstance()  # (three jobs at once: also on a 2-core machine)
    threads = pool.maxThreadCount()
    pool.setMaxThreadCount(max(4, threads))
    try:
        _two_files_read_beside_the_preload(make_widget, tiny_ckpt, tiny_predictor, bad,
                                           slow, qtbot, monkeypatch, reads)
    finally:
        pool.setMaxThreadCount(threads)


def _two_files_read_beside_the_preload(make_widget, tiny_ckpt, tiny_predictor, bad, slow,
                                       qtbot, monkeypatch, reads):
    viewer, widget = make_widget(blob_stack(), sync=False, preload=False, name="blobs")
    c = widget.controller
    use_predictor(widget, tiny_predictor)
    gate, entered, _ = held_encoder(monkeypatch, tiny_predictor)
    assert c.preload() is not None and entered.wait(60)
    for path in (bad, tiny_ckpt):
        widget._model.setCurrentIndex(widget._model.findText("Checkpoint file..."))
        widget._on_model_changed(str(path))
    qtbot.waitUntil(lambda: c.model_choice.key == str(tiny_ckpt), timeout=60_000)
    c.say("the dock's words of the model in use")
    slow.set()
    assert len(reads) == 2  # (the failure of bad.pt's was handled once it ended)
    qtbot.waitUntil(lambda: not any(job.running for job in reads), timeout=60_000)
    assert c.status.startswith("the dock's words of the model in use"), c.status
    gate.set()
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    assert c.model_choice.key == str(tiny_ckpt)


def test_a_checkpoint_read_goes_on_when_another_image_is_picked_meanwhile(
        make_widget, tiny_ckpt, tiny_predictor, qtbot, monkeypatch):
    """The read of a picked file ran as a job for the image shown (its key): picking another
    image while it ran cancelled it as stale ('Cancelled: Reading the checkpoint tiny.pt'),
    and the file picked was not used. Reading a file needs no image: it goes on."""
    import numpy as np

    gate = _held_reads_off_the_ui_thread(monkeypatch)
    viewer, widget = make_widget(blob_stack(), sync=False, preload=False, name="blobs")
    c = widget.controller
    use_predictor(widget, tiny_predictor)  # (loaded: a job for it is not let finish)
    widget._model.setCurrentIndex(widget._model.findText("Checkpoint file..."))
    widget._on_model_changed(str(tiny_ckpt))
    viewer.add_image(np.zeros((64, 64), np.uint8), name="small")
    widget._image.setCurrentIndex(widget._image.findData("small"))
    assert c.image_name() == "small"
    gate.set()
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    assert c.model_choice.key == str(tiny_ckpt), c.status
    assert widget._model.currentText() == f"file: {tiny_ckpt.name}"
    assert not c.status.startswith("Cancelled"), c.status


def test_a_read_in_the_job_slot_failing_after_another_file_was_used_says_nothing(
        make_widget, tiny_ckpt, tmp_path, qtbot, monkeypatch):
    """A file picked with no job running is read as the dock's job; a second file picked
    while it is read, beside it, is used first; the first (not a checkpoint, slow to read)
    then failed with 'Failed: Reading the checkpoint bad.pt ...' over what the dock said of
    the model in use (a read beside a job, dc3e9bf, already said nothing). Silent too."""

    bad, slow = _held_bad_checkpoint(tmp_path, monkeypatch)
    viewer, widget = make_widget(blob_stack(), sync=False, preload=False, name="blobs")
    c = widget.controller
    for path in (bad, tiny_ckpt):  # bad.pt: the dock's job; tiny.pt: beside it
        widget._model.setCurrentIndex(widget._model.findText("Checkpoint file..."))
        widget._on_model_changed(str(path))
    reading = c.job
    assert reading is not None and reading.description == "Reading the checkpoint bad.pt"
    qtbot.waitUntil(lambda: c.model_choice.key == str(tiny_ckpt), timeout=60_000)
    c.say("the dock's words of the model in use")
    slow.set()
    qtbot.waitUntil(lambda: not reading.running, timeout=60_000)  # (its failure was handled)
    assert c.status.startswith("the dock's words of the model in use"), c.status
    assert c.model_choice.key == str(tiny_ckpt)
    assert widget._model.currentText() == f"file: {tiny_ckpt.name}"


def test_the_model_in_use_picked_again_while_a_file_is_read_says_so(
        make_widget, tiny_ckpt, tiny_predictor, qtbot, monkeypatch):
    """A file picked, then the model in use picked again in 'Model' while the file is read
    (the user changed their mind): the file is dropped when read, and the status line said
    'Reading the checkpoint tiny.pt ...' for good (the slice shown was embedded: the preload
    that follows says nothing). It says what to do next."""

    gate = _held_reads_off_the_ui_thread(monkeypatch)
    viewer, widget = make_widget(blob_stack(), sync=False, preload=False, name="blobs")
    box, c = widget._model, widget.controller
    mine = use_predictor(widget, tiny_predictor)
    widget._on_compute()
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    assert c.status.startswith("Embeddings ready"), c.status
    widget.preload = True
    box.setCurrentIndex(box.findText("Checkpoint file..."))
    widget._on_model_changed(str(tiny_ckpt))
    reading = c.job
    assert reading.description == f"Reading the checkpoint {tiny_ckpt.name}"
    again = box.findData(mine)
    box.setCurrentIndex(again)
    box.activated.emit(again)  # the model in use, picked again
    gate.set()
    qtbot.waitUntil(lambda: not reading.running and c.job is None, timeout=60_000)
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)  # (a preload that followed)
    assert c.model_choice == mine and box.currentData() == mine
    assert c.status.startswith("Click on an object in 'blobs' to segment it"), c.status
