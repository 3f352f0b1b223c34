"""The "Segment Anything" dock widget: layout and ``_on_*`` handlers.

The state and the actions live in :class:`~napari_sam._qt.controller.AnnotationController`;
this module only lays out the panels (built by
:class:`~napari_sam._qt.dock_panels.DockPanels`), keeps them in sync with the viewer and
turns every problem into a notification (:func:`~napari_sam._qt.notify.guarded`).

napari hands the widget a proxy of the viewer (``PublicOnlyProxy``) when it is opened from
the menu; every layer read through it is a new proxy object. So the combo boxes hold layer
*names* (unique in a napari layer list), never layer objects.
"""

from __future__ import annotations

import functools

from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtWidgets import (
    QFileDialog,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from napari_sam.annotate.id_room import NEW_LAYER_ENTRY
from napari_sam.words import in_frames

from . import keys, layer_contrast, pyramid
from . import layers as L
from .autosave_thread import write_autosaves_in_background
from .channel_boxes import file_channel_axis
from .controller import AnnotationController
from .controls import label
from .device_box import DeviceBox
from .dock_panels import DockPanels
from .embedding_line import EmbeddingLine
from .file_scale import apply_file_scale, file_time_interval
from .history_buttons import HistoryButtons
from .input_guard import guard_inputs
from .job_bar import JobBar
from .model_box import ModelBox
from .movie_axis import StackAxes, first_axis, stack_axis_for, stack_axis_named
from .narrow import fit_narrow
from .notify import describe, guarded, job_end_words, not_again
from .time_point import movie_note
from .tips import add_tips, tell_stack_axis

__all__ = ["SamWidget"]

_THREADS_CONFIGURED = False


def _configure_threads_once() -> None:
    """The CPU thread policy of the CLI (free cores, passive OpenMP waits) for the napari
    process, once: a busy machine must not make the dock's jobs several times slower."""
    global _THREADS_CONFIGURED
    if not _THREADS_CONFIGURED:
        from napari_sam.device import configure_threads

        configure_threads()
        _THREADS_CONFIGURED = True


class SamWidget(DockPanels, ModelBox, DeviceBox, QWidget):
    """Interactive Segment Anything for 2D images and 3D stacks.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    sync : bool
        Run long jobs on the main thread (for tests); by default they run in a worker.
    """

    def __init__(self, napari_viewer, *, sync: bool = False):
        super().__init__()
        _configure_threads_once()
        self.viewer = napari_viewer
        self.controller = c = AnnotationController(napari_viewer, sync=sync)
        self._closed = False
        self._stack_axes = StackAxes()  # each image's own 'Stack axis is' (before the box)
        # the panels scroll when the dock is short, instead of being squeezed and clipped
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self._scroll = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        inner = QWidget()
        scroll.setWidget(inner)
        outer.addWidget(scroll)
        layout = QVBoxLayout(inner)
        layout.addWidget(self._build_setup())
        layout.addWidget(self._build_prompting())
        layout.addWidget(self._build_commit())
        layout.addWidget(self._build_volume())
        layout.addWidget(self._build_trace())
        layout.addWidget(self._build_automatic())
        layout.addWidget(self._build_session())
        layout.addStretch(1)
        # the job row (progress, Cancel) and the status stay below the scrolled panels, so
        # they are seen whatever the dock's height
        self._job_bar = JobBar(self._on_cancel)
        self._stack_named = None  # what napari's axis labels name the stack axis of the image
        self._failed_since_wait: str | None = None  # what wait() raises: the last failure
        self._progress, self._cancel = self._job_bar.progress, self._job_bar.cancel
        outer.addWidget(self._job_bar)
        self._status = label()  # a long path or URL in it must not widen the dock for good
        self._status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        outer.addWidget(self._status)

        ev = napari_viewer.layers.events
        # every connection from the controller and the viewer to this widget's slots, undone
        # on teardown (also when napari deletes the widget with its window: controller.detach)
        self._links = [
            (c.status_changed, lambda text: self._on_status(text)),
            (c.job_changed, self._on_job_changed),
            (c.job_phase, self._job_bar.on_phase),
            (c.job_progress, self._job_bar.on_progress),
            (c.model_changed, lambda *_: self._on_model_loaded()),
            (c.target_changed, lambda *_: (self._refresh_targets(), self._mark_stack_axis())),
            (c.trace_changed, self._on_trace_changed),
            (c.resume_available, self._on_resume_available),
            (c.session_loaded, self._on_session_loaded),
            (c.time_point_shown, lambda line: self._schedule_preload(lead=line)),
            (c.image_data_replaced, self._on_image_data_replaced),
            *((e, self._on_layers_changed) for e in (ev.inserted, ev.removed, ev.moved,
                                                      getattr(ev, "renamed", None)) if e),
            (ev.inserted, self._on_layer_inserted),
            (napari_viewer.dims.events.axis_labels, self._on_axis_labels),
        ]
        for signal, slot in self._links:
            signal.connect(slot)
        write_autosaves_in_background(c, self._links, self._autosave)  # large ones threaded
        layer_contrast.LayerContrast(c, self._links, self._tile, self._schedule_preload)
        # beside 'Compute embeddings'
        self._emb_line = EmbeddingLine(c, self._emb_state, self._links)
        HistoryButtons(c, *self._history, self._links)  # Undo, Redo enabled when they can act
        self._keys = keys.KeyBindings(
            napari_viewer, {k.action: getattr(self, f"_on_{k.action}") for k in keys.KEYS}
        )
        self.destroyed.connect(functools.partial(c.detach, self._links, self._keys.unbind))
        # napari closed deletes the dock without a closeEvent: what waits for the torch
        # import (or any later callback) must then find it closed, not touch its boxes
        self.destroyed.connect(functools.partial(setattr, self, "_closed", True))
        self._start_torch_import()  # before the models: their keys wait for torch
        self._refresh_models()
        self._update_device_info()
        self._on_layers_changed()
        self._on_status(c.status or c.next_step())
        guard_inputs(self)  # the wheel scrolls the panels; the dock's keys pass the boxes
        fit_narrow(self)  # form labels wrap: the dock fits a 1024 px screen beside the canvas
        add_tips(self, c.axis_kind)  # (an image's file may have said t already)

    # ------------------------------------------------------------------ size, status
    def minimumSizeHint(self):
        """As wide as the panels need at the least (napari's dock takes it, so nothing is
        clipped at the right; labels wrap, combo boxes elide), as short as a few rows (the panels scroll); computed when asked, after
        napari's style sheet has set the fonts."""
        hint = super().minimumSizeHint()
        scroll = self._scroll
        width = (scroll.widget().minimumSizeHint().width() + 2 * scroll.frameWidth()
                 + scroll.verticalScrollBar().sizeHint().width())
        hint.setWidth(max(hint.width(), width))
        return hint

    def _on_status(self, text: str):
        self._status.setText(text)

    # ------------------------------------------------------------------ sync with viewer
    def _layer(self, name: str | None):
        """The viewer's layer called ``name``, or None."""
        if name is None:
            return None
        return next((ly for ly in self.viewer.layers if ly.name == name), None)

    def _on_layers_changed(self, *_):
        from napari.layers import Image

        c = self.controller
        images = [ly.name for ly in self.viewer.layers if isinstance(ly, Image)]
        current = self._image.currentData()
        if current not in images and any(L.same(ly, c.image_layer) for ly in self.viewer.layers):
            current = c.image_layer.name  # the picked image was renamed: keep it
        self._image.blockSignals(True)
        self._image.clear()
        for name in images:
            self._image.addItem(name, name)
        keep = current if current in images else (images[-1] if images else None)
        if keep is not None:
            self._image.setCurrentIndex(images.index(keep))
        self._image.blockSignals(False)
        self._channels.refresh(self._layer(self._image.currentData()))
        self._refresh_targets()
        layer = self._layer(keep)
        # the image refused closed, the box back on the one taken: picked again, so that
        # its question and refusal go (renamed axes took the closed one as still refused)
        back = self._refused_image is not None and not L.same(layer, self._refused_image)
        if keep is not None and (not L.same(layer, c.image_layer) or c.source is None or back) \
                and not L.same(layer, self._refused_image):  # said once, not on every change
            self._on_image_changed()

    def _on_layer_inserted(self, event) -> None:
        """Another image added while the dock works on one: napari puts it on top (over the
        SAM layers) and selects it, so clicks prompt nothing; the status says what to do."""
        from napari.layers import Image

        layer, c = L.unwrap(event.value), self.controller
        self._mark_stack_axis()  # e.g. a segment everything result
        if (isinstance(layer, Image) and c.image_layer is not None
                and not L.same(layer, c.image_layer)):
            c.say(f"Image '{layer.name}' was added on top of the SAM layers: pick it in 'Image' "
                  f"to segment it. The dock still works on '{c.image_layer.name}': select that "
                  "image's 'SAM points' layer (or pick it again) to go on clicking there.")

    def _refresh_targets(self):
        """The "Labels layer" box: a new layer, or any labels layer but the preview; the
        current entry is the layer commits go into."""
        from napari.layers import Labels

        c = self.controller
        names = [ly.name for ly in self.viewer.layers
                 if isinstance(ly, Labels) and not L.same(ly, c.preview_layer)]
        self._target.blockSignals(True)
        self._target.clear()
        self._target.addItem(NEW_LAYER_ENTRY, None)
        for name in names:
            self._target.addItem(name, name)
        target = c.target_layer
        current = target.name if target is not None and target.name in names else None
        self._target.setCurrentIndex(max(self._target.findData(current), 0) if current else 0)
        self._target.blockSignals(False)

    # ------------------------------------------------------------------ handlers
    @guarded
    def _on_image_changed(self):
        layer = self._layer(self._image.currentData())
        if layer is None:
            return
        self._refused_image = layer  # until it is taken
        before, c = self.controller.image_layer, self.controller
        self._channels.refresh(layer)  # its axes (the choice stays where it still fits)
        lead = ""
        if not L.same(layer, before):  # what napari's reader dropped from the image's file
            lead = " ".join(t for t in (pyramid.level_note(layer), apply_file_scale(
                L.unwrap(layer), self.viewer.layers, self.viewer),
                self._channels_from_file(layer)) if t)
        try:
            c.set_image(layer, *self._channels.choice())
        except Exception as err:  # what its notification says (not said again for the same
            self._refusal_said = describe(err)[1]  # image and reason: _on_axis_labels)
            raise
        finally:  # time or channels? asked where nothing says (movie_axis)
            self._movie_axis.ask(first_axis(layer, None) if c.movie_refusal(
                layer, self._channels.choice()[0]) else None)
        self._refused_image = None
        if not L.same(layer, before):  # a movie: which time point SAM segments
            lead = " ".join(t for t in (lead, movie_note(c.source, layer.name,
                                                          c.movie_reason(layer))) if t)
        if lead:
            c.say(f"{lead} {c.status}")
        note = self._follow_file_axes() if not L.same(layer, before) else ""
        self._stack_named = stack_axis_named(c.image_layer, self._channels.choice()[0],
                                             self.viewer)  # (:meth:`_on_axis_labels`)
        note = " ".join(t for t in (lead, note) if t)
        # napari makes a newly added layer the active one after telling us about it: select
        # the points layer once that is done, or the first clicks would go to the image
        QTimer.singleShot(0, self._select_points)
        self._schedule_preload(lead=note)

    @guarded
    def _on_image_data_replaced(self, layer) -> None:
        """The data of the image SAM segments (or whose new pixels it refused) was set:
        picked again, as 'Image' shows it, or as the dock has it where 'Image' shows an image
        refused since."""
        c = self.controller
        if L.same(self._layer(self._image.currentData()), layer):
            self._on_image_changed()
        elif L.same(layer, c.image_layer):
            c.set_image(layer, c.channel_axis, c.channel)

    @guarded
    def _on_movie_axis(self, time: bool) -> None:
        """*Time points* or *Channels* pressed: the picked image's first axis is time (a
        movie) or its channel axis (the channel shown segmented alone)."""
        layer = self._layer(self._image.currentData())
        if layer is None:
            return
        if time:
            self.controller.choose_time(L.unwrap(layer))
        else:
            axis = first_axis(layer, None)
            self._channels.set_choice(axis, None)
            self._channels.set_choice(axis, self._channels.shown_channel())
        self._on_image_changed()

    @guarded
    def _on_axis_labels(self, *_event) -> None:
        """The user named the viewer's axes (``viewer.dims.axis_labels``, or napari's slider
        names): an image refused or asked about is picked again with them (a first axis
        named 't' is a movie), and a stack's *Stack axis is* follows them (a (T, Y, X) stack
        named ("t", "y", "x") is a time series). An image refused again for the same reason
        is not notified again (each renamed axis did): the status line says it."""
        c = self.controller
        if self._refused_image is not None:
            with not_again(self._refusal_said):
                self._on_image_changed()
            return
        named = (None if c.image_layer is None else
                 stack_axis_named(c.image_layer, self._channels.choice()[0], self.viewer))
        if named != self._stack_named:  # (not when another axis was renamed: a 'Stack axis
            self._stack_named = named  # is' the user picked stays)
            self._follow_file_axes(renamed=True)

    def _on_axis_kind_changed(self) -> None:
        c = self.controller
        c.axis_kind = self._box_kind()
        self._stack_axes.remember(self._stack_image(), c.axis_kind)
        self._mark_stack_axis()
        # a time series is told in frames (its boxes said 'objects on this slice')
        unit = in_frames("slice", c.axis_kind)
        self._scope.setItemText(0, f"objects on this {unit}")
        self._auto_scope.setItemText(0, f"current {unit}")
        tell_stack_axis(self, c.axis_kind)  # its tooltips and keys' help too
        if hasattr(self, "_emb_line"):  # (the box is set before the line is made)
            self._emb_line.refresh()
            self._trace.set_axis_kind(c.axis_kind)  # the trace shown, too

    def _box_kind(self) -> str:
        """What *Stack axis is* says: "z" (a volume) or "t" (a time series)."""
        return "t" if self._axis_kind.currentIndex() == 1 else "z"

    def _stack_image(self):
        """The image picked where it is a stack (its *Stack axis is* is its own), else None:
        a 2D image took the 'Stack axis is t' picked before any image, and the time series
        picked after it was set back to z."""
        src = self.controller.source
        return None if src is None or not src.is_3d else self.controller.image_layer

    def _mark_stack_axis(self) -> None:
        """Tell the labels layers of this image's shape (not those of another open image of
        its shape: :meth:`~.movie_axis.StackAxes.labels_of`) what their stack axis is
        (``metadata["stack_axis"]``: "z" or "t"), so that saving one as a TIFF writes a time
        series as TYX, as the command line does (it was written ZYX: Fiji read frames as
        slices); a movie's also the time between frames its file names
        (``metadata["time_interval"]``, :func:`.file_scale.file_time_interval`)."""
        from napari.layers import Labels

        c = self.controller
        if c.image_layer is None:
            return
        shape = tuple(c.source.layer_shape)
        labels = self._stack_axes.labels_of(c.image_layer, [  # (not another image's)
            layer for layer in map(L.unwrap, self.viewer.layers)
            if isinstance(layer, Labels) and tuple(layer.data.shape) == shape], self.viewer.layers)
        # the file's header is read only where labels of this shape are there to tell
        time = file_time_interval(L.unwrap(c.image_layer)) if labels else None
        for layer in labels:
            layer.metadata["stack_axis"] = c.axis_kind
            if time is not None:  # (one a file gave the layer, our reader's, is kept)
                layer.metadata.setdefault("time_interval", time)

    def _channels_from_file(self, layer) -> str:
        """Pick the channel axis its file names for a newly picked image layer without one
        (napari opens a (Z, C, Y, X) hyperstack as a 4D layer: refused, or its channels
        mixed): the channel shown is segmented alone. Returns the line saying so, or ""."""
        found = file_channel_axis(layer) if self._channels.choice()[0] is None else None
        if found is None:
            return ""
        axis, axes = found
        self._channels.set_choice(axis, None)
        self._channels.set_choice(axis, self._channels.shown_channel())
        return (f"Channel axis {axis}: the file of '{layer.name}' names its axes {axes}; SAM "
                f"segments channel {self._channels.choice()[1]} alone (pick another, or "
                f"'all', in 'Channel').")

    def _follow_file_axes(self, renamed: bool = False) -> str:
        """Pick *Stack axis is* for the image: its own where it was picked before (the user's
        pick by hand too), else from its file, as the command line does (napari's reader
        drops a TIFF's axes, so a (T, Y, X) movie was propagated as a volume: the fade rules
        cut cells that bleach over time), else from napari's axis labels or units
        (:func:`~.movie_axis.stack_axis_for`); z for a movie of volumes, and for an image
        nothing names (what was picked while no stack was, where it was:
        :attr:`~.movie_axis.StackAxes.unplaced`). A 2D image has none: the box stays as it
        is. ``renamed``: the viewer's axes were renamed: what they name wins, and nothing
        changes where they name nothing. Returns the line saying so ("" when nothing
        changed), also shown now."""
        from napari_sam.io import file_stack_axis

        c = self.controller
        if c.source is None or not c.source.is_3d:  # a 2D image: no stack axis of its own
            return ""  # (a pick made before it goes to the first stack picked)
        found = file_stack_axis(c.image_path())  # else napari's axis labels ("t", "y", "x")
        found = (stack_axis_named(c.image_layer, self._channels.choice()[0], self.viewer)
                 if found is None
                 else (found[0], f"the file of '{c.image_name()}' names its axes {found[1]}"))
        found = stack_axis_for(  # (the t of a time series picked before was kept)
            c.image_name(), found, movie=c.source.time_axis is not None,
            remembered=None if renamed else self._stack_axes.recall(c.image_layer),
            default=None if renamed else self._stack_axes.unplaced or "z")
        if found is None or found[0] == c.axis_kind:
            self._stack_axes.remember(c.image_layer, c.axis_kind)
            return ""
        kind, why = found
        self._axis_kind.setCurrentIndex(int(kind == "t"))  # sets controller.axis_kind
        what = ("a time series: objects are followed through its frames" if kind == "t"
                else "a volume: objects are followed through its slices")
        note = f"Stack axis is {kind}: {why}, {what} (change it in 'Stack axis is')."
        c.say(f"{note} {c.status}")
        return note

    def _schedule_preload(self, after=None, lead: str = ""):
        """Embed the visible slice soon (see :meth:`_on_preload`); ``after``: the job that
        stopped because it went stale (its line is said again when the preload is done);
        ``lead``: a line to keep in front of the preload's."""
        if self.preload:
            QTimer.singleShot(0, lambda: self._on_preload(
                " ".join(t for t in (lead, "" if after is None else after.note) if t)))

    def _on_job_changed(self, job):
        """A job started (or ended: None); the image picked while a stale job ran is
        preloaded once that job has stopped (a preload waits for a running job)."""
        ended = self._job_bar.job
        if job is None and ended is not None and ended.error is not None:
            # what wait() raises: the status line now says why it failed (no Job is kept:
            # its error's traceback holds the job's frames and arrays)
            self._failed_since_wait = (f"'{ended.description}' {job_end_words(ended.error)}: "
                                       f"{self._status.text()}")
        self._job_bar.on_job_changed(job)
        if job is None and ended is not None and ended.stale:
            self._schedule_preload(after=ended)
        elif job is None and ended is not None and ended.succeeded and (
                self.controller.preload_asked()):  # (the slider moved while a model loaded)
            self._schedule_preload()
        elif job is None and ended is not None and ended.error is not None and (
                self._model.currentData() != self.controller.model_choice):
            self._show_model_in_use()  # a checkpoint that failed to load: the one before
            self._set_thresholds(self.controller.model_choice)

    @guarded
    def _on_preload(self, lead: str = ""):
        """An image and a model are chosen: load the model and embed the visible slice now,
        in a job, so that the first click only decodes (controller.preload). Run from the
        event loop once the current change is done (the widget is shown first)."""
        if self.preload and not self._closed and not self._torch.done:
            self._torch.then(lambda: self._on_preload(lead))  # keys resolve the device
        elif self.preload and not self._closed and self._torch.error is None:
            return self.controller.preload(lead)

    def _select_points(self):
        points = self.controller.points_layer
        if not self._closed and points is not None and points in self.viewer.layers:
            self.viewer.layers.selection.active = points

    @guarded
    def _on_tile_changed(self, on: bool):
        self.controller.set_tiling(on)
        self._schedule_preload()

    @guarded
    def _on_store_changed(self):
        self.controller.set_store(self._store.text().strip() or None)
        self._store.setText(self.controller.store or "")  # where it is: ~ expanded, absolute

    def _browse_store(self):
        path = QFileDialog.getExistingDirectory(self, "Embedding store (a .zarr folder)")
        if path:
            self._store.setText(path)
            self._on_store_changed()

    @guarded
    def _on_compute(self):
        self.controller.compute_embeddings()

    @guarded
    def _on_segment(self):
        self.controller.update_preview()

    @guarded
    def _on_next_candidate(self):
        self.controller.next_candidate()

    @guarded
    def _on_toggle_negative(self):
        self._negative.setChecked(not self._negative.isChecked())

    @guarded
    def _on_negative_changed(self, on: bool):
        self.controller.set_negative(on)

    @guarded
    def _on_target_changed(self):
        """A labels layer picked: refused (the previous one shown) if it does not fit."""
        try:
            self.controller.pick_target(self._layer(self._target.currentData()))
        finally:
            self._refresh_targets()

    @guarded
    def _on_commit(self):
        return self.controller.commit()

    @guarded
    def _on_undo(self):
        return self.controller.undo()

    @guarded
    def _on_redo(self):
        return self.controller.redo()

    @guarded
    def _on_clear(self):
        self.controller.clear()

    @guarded
    def _on_propagate(self):
        c = self.controller
        return c.propagate(all_objects=self._scope.currentIndex() == 1,
                           method=self._method.currentData())

    @guarded
    def _on_method_changed(self):
        self.controller.propagation_method = self._method.currentData()

    @guarded
    def _on_automatic(self):
        pps = self._pps.value()
        params = dict(
            points_per_side="auto" if pps == 0 else max(4, pps),
            fill_gaps=self._fill_gaps.isChecked(),
            pred_iou_thresh=self._iou.value(),
            stability_score_thresh=self._stability.value(),
            min_mask_region_area=self._min_size.value(),
        )
        c = self.controller
        whole = self._auto_scope.currentIndex() == 1
        if whole:
            params["propagate"] = self._auto_propagate.isChecked()
        return c.segment_everything(whole_stack=whole, **params)

    def _on_cancel(self):
        self.controller.cancel()

    # ------------------------------------------------------------------ scripts
    def wait(self, timeout: float | None = 600.0) -> None:
        """Return once the dock runs no job: for scripts that drive it (napari's event loop
        is not running while a script's line runs, so jobs, and the preload an image or a
        model starts, would not finish; Qt events are processed meanwhile).

        Each action may start a job (showing a slice or adding a point embeds the slices it
        needs), and the next action is refused while one runs: wait after each.

        >>> dock, w = viewer.window.add_plugin_dock_widget("napari-sam-stacks",
        ...                                                "Segment Anything")
        >>> w.wait()                          # the model and the shown slice's embeddings
        >>> c = w.controller                  # the dock's AnnotationSession on the viewer
        >>> c.go_to_slice(6); w.wait()
        >>> c.add_point(6, 36, 30); w.wait()   # (z, row, col) inside an object
        >>> c.propagate(); w.wait()
        >>> c.commit(); w.wait()

        Raises
        ------
        RuntimeError
            A job that ended since the last ``wait`` failed (the last such): its description
            and the status line then (which says what to do). The dock stays usable.
        TimeoutError
            A job still runs after ``timeout`` seconds (None: no limit); it keeps running
            (``w.controller.cancel()`` stops it).
        KeyboardInterrupt
            Interrupted (Ctrl+C, a notebook's Interrupt): the running job is cancelled first
            (it ran on to its end, and its result was applied, after the user stopped it).
        """
        import time

        from qtpy.QtWidgets import QApplication

        app = QApplication.instance()
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        quiet = 0
        try:
            while quiet < 3:  # no job over three rounds of events: a timer that starts one
                app.processEvents()
                job = self.controller.job
                if (job is None or not job.running) and self._torch.done:  # (the preload
                    quiet += 1  # waits for torch, imported in the background)
                    continue
                quiet = 0
                if deadline is not None and time.monotonic() > deadline:
                    what = "PyTorch's import" if job is None else f"'{job.description}'"
                    raise TimeoutError(f"{what} still runs after {timeout} s; call wait() "
                                       "again, or widget.controller.cancel() to stop a job")
                time.sleep(0.02)
        except KeyboardInterrupt:
            job = self.controller.job
            if job is None or not job.running:
                raise
            self.controller.cancel()
            while job.running:  # it stops at its next step; its end is on this thread
                app.processEvents()
                time.sleep(0.02)
            raise KeyboardInterrupt(f"'{job.description}' was cancelled; the dock is ready "
                                    "for the next action") from None
        failed, self._failed_since_wait = self._failed_since_wait, None
        if failed:
            raise RuntimeError(failed)

    # ------------------------------------------------------------------ session, trace
    @guarded
    def save_session(self, path: str | None = None):
        if path is None:
            start = str(self.controller.session_path or "")
            path, _ = QFileDialog.getSaveFileName(self, "Save session", start,
                                                  "Sessions (*.json)")
        if path:
            return self.controller.save_session(path)

    @guarded
    def load_session(self, path: str | None = None):
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Load session", "", "Sessions (*.json)")
        if path:
            return self.controller.load_session(path)

    def _on_resume_available(self, path: str, offer: str):
        self._resume_label.setText(offer)  # (it names the image's other sessions too)
        self._resume_label.setVisible(True)
        self._resume_row.setVisible(True)
        # at the bottom of the panels: scrolled to once the layout has placed it (at once its
        # geometry is not set yet; and a dock opened with the image is laid out later)
        for delay in (0, 200):
            QTimer.singleShot(delay, self._show_resume_row)

    def _show_resume_row(self):
        if self._resume_row.isVisibleTo(self):
            self._scroll.ensureWidgetVisible(self._resume_row)

    def _hide_resume(self):
        self._resume_label.setVisible(False)
        self._resume_row.setVisible(False)

    @guarded
    def _on_resume(self):
        self._hide_resume()
        return self.controller.resume()

    def _on_ignore_resume(self):
        self._hide_resume()
        self.controller.decline_resume()

    def _on_session_loaded(self, sess):
        """Show the session's settings (the stack axis, *Overwrite other labels*) and pick
        its model (a registry name or a checkpoint file). A 2D image has no stack axis: the
        box stays as it is (a session of one picked after a time series, saved with t, made
        t the pick for the next stack nothing names)."""
        self._hide_resume()  # a session loaded (or resumed) answers the offer
        if self._stack_image() is None:
            self.controller.axis_kind = self._box_kind()
        else:
            self._axis_kind.setCurrentIndex(int(self.controller.axis_kind == "t"))
            self._stack_axes.remember(self._stack_image(), self.controller.axis_kind)
        self._overwrite.setChecked(self.controller.overwrite)
        key = str(sess.model.get("name"))
        for i in range(self._model.count()):
            ch = self._model.itemData(i)
            if ch is not None and ch.key == key:
                if i != self._model.currentIndex() or self.controller.model_choice != ch:
                    self._model.setCurrentIndex(i)
                    self.controller.set_model(ch)
                    self._sync_methods()
                return
        if sess.model.get("is_file"):
            self._model.setCurrentIndex(self._model.count() - 1)
            self._on_model_changed(key)

    def _on_trace_changed(self, trace):
        self._trace.set_trace(trace, self.controller.axis_kind)

    @guarded
    def _on_trace_jump(self, z: int):
        self.controller.go_to_slice(int(z))

    @guarded
    def _on_trace_fix(self, flag: dict):
        self.controller.apply_fix(flag)

    # ------------------------------------------------------------------ closing
    def _teardown(self):
        if self._closed:
            return
        self._closed = self._job_bar.closed = True
        self.controller.detach(self._links, self._keys.unbind)
        self.controller.remove_working_layers()

    def closeEvent(self, event):
        self._teardown()
        super().closeEvent(event)

    def event(self, event):
        # napari's dock "close" button re-parents the widget to None instead of closing it
        if event.type() == QEvent.Type.ParentChange and self.parent() is None and self._seen:
            self._teardown()
        if event.type() == QEvent.Type.ParentChange and self.parent() is not None:
            self._seen = True
        return super().event(event)

    _seen = False
    _refused_image = None
    _refusal_said: str | None = None  # the notification of the image refused
    _links: list = []
    #: Embed the visible slice as soon as an image and a model are chosen (#29).
    preload = True
