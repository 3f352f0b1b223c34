"""The dock's *Model* box: the models listed (registry, bundled demo, checkpoint files
picked), what follows a choice (segment-everything thresholds, 'Propagate with', the demo
notice), and the model in use shown again after a cancelled, refused or failed pick (a
mixin of :class:`~napari_sam._qt.widget.SamWidget`)."""

from __future__ import annotations

import os
from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog

from napari_sam.annotate.jobs import Cancelled
from napari_sam.annotate.model_choice import (
    default_choice,
    file_choice_job,
    model_choices,
    recommended_thresholds,
)

from .notify import guarded, job_error_text, report, status_text
from .settled_pick import SettledPick
from .workers import run_job

__all__ = ["FILE_ITEM", "ModelBox"]

#: The last item of 'Model': pick a checkpoint file
FILE_ITEM = "Checkpoint file..."


class ModelBox:
    """The *Model* box's handlers (``self._model``, the threshold boxes ``self._iou`` and
    ``self._stability``, ``self._demo`` and ``self._method`` are the widget's)."""

    _thresholds_set: tuple | None = None  # the threshold boxes as the model last set them
    _picks = 0  # the models picked so far (a file's read started before the last: not used)

    def _refresh_models(self):
        try:
            choices = model_choices()
        except Exception:  # noqa: BLE001 - the registry is optional at import time
            choices = []
        self._model.clear()
        for ch in choices:
            self._model.addItem(ch.label, ch)
        self._model.addItem(FILE_ITEM, None)
        default = default_choice(choices)
        if default is not None:
            self._model.setCurrentIndex(choices.index(default))
            self.controller.set_model(default)
            self._set_thresholds(default)
        self._update_demo_notice()
        self._sync_methods()

    def _sync_methods(self):
        """"Propagate with" offers what the chosen model can do (the others greyed out) and
        picks the model's default: SAM 2 memory for SAM 2 models."""
        c = self.controller
        box = self._method
        box.blockSignals(True)
        for i in range(box.count()):
            item = box.model().item(i)
            item.setEnabled(c.propagation_problem(box.itemData(i)) is None)
        box.setCurrentIndex(max(box.findData(c.default_propagation()), 0))
        box.blockSignals(False)
        c.propagation_method = box.currentData()

    def _on_model_loaded(self):
        """A model was loaded (maybe downloaded): refresh the cached state in the list and
        what 'Propagate with' offers (the loaded model knows its family for sure) and the
        thresholds (:meth:`_follow_loaded_thresholds`)."""
        self._update_demo_notice()
        self._sync_methods()
        self._follow_loaded_thresholds()
        try:
            fresh = {ch.key: ch for ch in model_choices()}
        except Exception:  # noqa: BLE001 - the list is cosmetic
            return
        for i in range(self._model.count()):
            ch = self._model.itemData(i)
            if ch is not None and not ch.is_file and ch.key in fresh:
                self._model.setItemText(i, fresh[ch.key].label)

    def _update_demo_notice(self):
        self._demo.setVisible(self.controller.using_demo)

    def _connect_model_box(self):
        """Picks in 'Model' call :meth:`_on_model_picked`; keys stepping through it pick
        the entry they rest on (``self._model_pick``)."""
        self._model_pick = SettledPick(self._model, self._on_model_picked)

    def _on_model_picked(self, how: str):
        """The user picked an entry of 'Model' (:class:`~.settled_pick.SettledPick`: stepping
        with the keys picks the entry they rest on). 'Checkpoint file...' reached with the
        keys opens the file dialog on Enter only; leaving the box there shows the model in
        use again. Nothing once the dock is closed (napari keeps the closed dock's widgets:
        keys that rested, or a focus lost, as it closed)."""
        if getattr(self, "_closed", False):
            return True
        if self._model.currentData() is None and how in ("rest", "leave"):
            if how == "leave":
                self._show_model_in_use()
            return False
        self._on_model_changed()
        return True

    @guarded
    def _on_model_changed(self, path: str | None = None):
        choice = self._model.currentData()
        if choice is None:  # "Checkpoint file..."
            if path is None:
                path, _ = QFileDialog.getOpenFileName(
                    self, "SAM checkpoint", "", "Checkpoints (*.pt *.pth *.ckpt);;All files (*)"
                )
            # the model in use shows until the file is read (a file that cannot be a
            self._show_model_in_use()  # model, or Cancel: it stays)
            if path:  # (else the dialog was cancelled: a file being read is still used)
                self._picks += 1
                self._read_checkpoint(path)
            return
        self._picks += 1
        self._use_model(choice)

    def _read_checkpoint(self, path: str) -> None:
        """Read the checkpoint file ``path`` in a job (a worker thread: a large file froze
        napari, and torch is imported there), then use it; its failure is the job's status
        line (the model in use stays). Unless another model was picked meanwhile: then
        neither is used nor said (a line 'Reading ...' still shown gives way to the next
        step). While another job runs (the
        preload of the model in use, another file's read), the read runs beside it, without
        the job bar: the new model makes that job stale (cancelled) once it is read."""
        c, pick = self.controller, self._picks
        description = f"Reading the checkpoint {Path(path).name}"
        in_slot = c.job is None or not c.job.running

        def read(result):
            if in_slot and c.job is not None:  # (this job, run here where jobs are not
                c.job.key = None  # threaded: the model it sets does not make it stale)
            if getattr(self, "_closed", False):
                return
            if pick != self._picks:  # another pick made it stale: its result, or failure,
                if c.status.startswith(description):  # is no news; its line not left for
                    c.say(c.next_step())  # good (nothing said since: the model in use again)
                return
            if isinstance(result, _ReadFailed):
                raise result.error  # (the job's status line)
            choice, thresholds = result
            self._read_thresholds()[os.path.realpath(choice.key)] = thresholds
            self._model.setCurrentIndex(self._file_item(choice))
            self._use_model(choice, thresholds)

        def failed(err):
            c.say(job_error_text(description, "", err, status_text(err, report(err))))

        gen = _failure_returned(file_choice_job(path))
        if in_slot:  # a read needs no image: another image picked meanwhile, or a setting
            c.start_job(gen, description, read).key = None  # changed, does not make it
            return  # stale and stop it (cancel_stale_job)
        run_job(gen, description=description, on_returned=read, on_error=failed,
                on_message=c.say, sync=c.sync, progress_bar=False)

    def _use_model(self, choice, thresholds: dict | None = None) -> None:
        """``choice`` is the model from now on, with the segment-everything ``thresholds``
        (None: what its metadata recommends)."""
        self.controller.set_model(choice)
        self._set_thresholds(choice, thresholds)
        self._update_demo_notice()
        self._sync_methods()
        self._schedule_preload()

    def _file_item(self, choice) -> int:
        """The index in 'Model' of the checkpoint file ``choice``: the item of that file when
        it was picked before (a retrained file picked again adds no second item), else a
        new one, named with its folder when another file of that name is listed."""
        real = os.path.realpath(choice.key)
        files = [(i, self._model.itemData(i)) for i in range(self._model.count())]
        files = [(i, ch) for i, ch in files if ch is not None and ch.is_file]
        for i, ch in files:
            if os.path.realpath(ch.key) == real:
                self._model.setItemData(i, choice, Qt.ItemDataRole.UserRole)
                return i
        parts = Path(real).parts
        same = [Path(os.path.realpath(ch.key)).parts for _, ch in files
                if Path(ch.key).name == parts[-1]]
        depth = 1  # the folders that tell it from the files of its name listed already
        while any(p[-depth:] == parts[-depth:] for p in same) and depth < len(parts):
            depth += 1
        label = choice.label if depth == 1 else choice.label.replace(  # ("(the demo ...)")
            parts[-1], "/".join(parts[-depth:]), 1)
        self._model.insertItem(self._model.count() - 1, label, choice)
        return self._model.count() - 2

    def _show_model_in_use(self):
        """Select the model in use in 'Model' (not 'Checkpoint file...', after a cancelled or
        refused pick of a file)."""
        for i in range(self._model.count()):
            if self._model.itemData(i) == self.controller.model_choice:
                self._model.setCurrentIndex(i)
                return

    def _set_thresholds(self, choice, thresholds: dict | None = None):
        """Segment-everything thresholds follow the model (the demo model's scores are
        calibrated lower than SAM's; its checkpoint metadata says which thresholds to use):
        ``thresholds``, or what ``choice``'s metadata recommends without loading it: for a
        checkpoint file, what its read in a job found (picked again from the list, or the
        model in use again after another failed to load: reading it here froze napari)."""
        if not thresholds and choice is not None and choice.is_file:
            thresholds = self._read_thresholds().get(os.path.realpath(choice.key))
        thresholds = thresholds or recommended_thresholds(choice)
        self._iou.setValue(thresholds["pred_iou_thresh"])
        self._stability.setValue(thresholds["stability_score_thresh"])
        self._thresholds_set = (self._iou.value(), self._stability.value())

    def _read_thresholds(self) -> dict:
        """The thresholds each checkpoint file's read found (its real path: thresholds)."""
        if getattr(self, "_file_thresholds", None) is None:
            self._file_thresholds = {}
        return self._file_thresholds

    def _follow_loaded_thresholds(self):
        """The loaded model's own thresholds, where they differ from what was set before it
        loaded and the user has not changed the boxes since: a checkpoint copied without its
        metadata file inherits the demo model's settings when loaded (its note says so),
        but before loading the boxes showed SAM's (and found 15 objects of 20, not 20)."""
        model = getattr(self.controller.predictor, "model", None)
        own = getattr(model, "automatic_defaults", None)
        if own is None or self._thresholds_set != (self._iou.value(), self._stability.value()):
            return
        from napari_sam.automatic import recommended_thresholds as for_model

        self._set_thresholds(None, for_model(own))



class _ReadFailed:
    """What a read returns instead of raising (a job returning an exception has superqt
    raise it in the worker: :mod:`.workers`)."""

    def __init__(self, error: Exception):
        self.error = error


def _failure_returned(job):
    """The job ``job``, returning the exception it fails with (a :class:`_ReadFailed`)
    instead of raising it: whether that failure is news is told on the UI thread, where the
    picks are (a read that another pick made stale failed with 'Failed: Reading the
    checkpoint bad.pt ...' over the line of the model then in use)."""
    try:
        return (yield from job)
    except Cancelled:
        raise
    except Exception as err:  # noqa: BLE001 - any failure of the read: raised by ``read``
        return _ReadFailed(err)
