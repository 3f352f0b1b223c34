"""The model sees the image layer's contrast limits once the user has set them.

The model sees the stack's own 0.5-99.5 percentile limits
(:mod:`napari_sam.annotate.model_contrast`), which suit it better than min/max, unless the
user ticks the Setup box 'Model sees the layer's contrast' (off by default: a contrast change
made only to look must not embed every slice again). With the box ticked, once the user changes
the layer's limits (napari's layer controls), e.g. to make a faint object visible, the model is
given those limits: the dock says "Contrast changed: slices are embedded again with the
layer's limits" (frames in a time series) and embeds the visible slice again (with an
Embedding store, into a store of those limits beside it: the user's store is never
cleared). A freshly added layer (napari's own limits) still uses the percentiles. The
events of a dragged contrast slider are debounced (:data:`DEBOUNCE_MS`); a change made while a job runs is applied when it ends, and one made
while a propagated preview waits for its commit once it is committed or cleared. With the box
unticked, the first change of the limits says once how to give them to the model
(:data:`HINT`). A loaded or resumed session whose model saw the layer's limits ticks the box
and puts them back on the layer (:meth:`LayerContrast.restore`).
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QTimer

from napari_sam.annotate.model_contrast import contrast_words
from napari_sam.words import in_frames

from . import layers as L
from .autosave_thread import OnUndo
from .controls import check
from .notify import guarded
from .tips import AXIS_TIP

__all__ = ["DEBOUNCE_MS", "HINT", "LayerContrast", "napari_limits"]

#: Quiet time after the last contrast event before the model's contrast follows it (ms)
DEBOUNCE_MS = 400

BOX_TEXT = "Model sees the layer's contrast"
BOX_TIP = ("Ticked: once you change the image layer's contrast limits (napari's layer "
           "controls), SAM is given the image with those limits, so that a faint object you "
           "made visible is visible to the model too; slices are embedded again. A freshly "
           "opened image (napari's own limits) uses the stack's 0.5-99.5 percentiles, which "
           "suit the model better. Unticked (the default): always the percentiles, and a "
           "contrast change is for your eyes only.")
#: The status line, once per dock, when the user changes the limits with the box unticked
HINT = ("The model sees the stack's own contrast (percentiles); tick 'Model sees the layer's "
        "contrast' to segment with the limits you set.")


def napari_limits(layer) -> tuple[float, float] | None:
    """The contrast limits napari gives an in-memory (numpy) image ``layer`` when it is
    added without ``contrast_limits`` (its data range); None for lazy (dask, zarr) or
    multiscale data, whose limits napari guesses from the first slice drawn."""
    data = layer.data
    if not isinstance(data, np.ndarray) or getattr(layer, "multiscale", False):
        return None
    from napari.layers.utils.layer_utils import calc_data_range

    lo, hi = calc_data_range(data, rgb=bool(getattr(layer, "rgb", False)), dtype=layer.dtype)
    return float(lo), float(hi)


class LayerContrast:
    """Follows the contrast limits of the session's image layer (its ``contrast_source``).

    Parameters
    ----------
    session : napari_sam._qt.controller.AnnotationController
    links : list
        The dock's (signal, slot) pairs, disconnected when it closes: the connections made
        here are kept in it.
    beside : QCheckBox
        A check box of the Setup form: the 'Model sees the layer's contrast' box goes under it.
    after_change : callable, optional
        ``after_change(lead=...)`` once the model's contrast changed (the dock embeds the visible
        slice; ``lead`` is the status line's news).
    """

    def __init__(self, session, links: list, beside, after_change=None):
        self.session = session
        self.links = links
        self.after_change = after_change
        self.layer = None  # the image layer followed
        self.link = None  # (its contrast event, our slot), in links
        self.baseline: tuple[float, float] | None = None  # napari's limits of self.layer
        self.current = None  # the limits the model sees for self.layer (None: percentiles)
        self.hinted = False  # the HINT was shown
        self.waiting = False  # the limits waiting for a propagated preview's commit
        self.unchanged = None  # the layer's limits said to be those embedded with already
        self.box = check(BOX_TEXT, False, BOX_TIP, toggled=lambda on: self.schedule(0))
        self.box.setProperty(AXIS_TIP, BOX_TIP)  # (frames in a time series: tips)
        form = beside.parentWidget().layout()
        row, _role = form.getWidgetPosition(beside)
        form.insertRow(row + 1, self.box)
        self.timer = QTimer(self.box)
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self.apply)
        removed = session.viewer.layers.events.removed
        for signal, slot in ((session.job_changed, self.on_job_changed),
                             (removed, self.on_removed)):
            links.append((signal, slot))
            signal.connect(slot)
        session.contrast_source = self.limits
        session.restore_contrast = self.restore
        # the dock closing lets its contrast stores go: another dock may then delete them
        links.append((OnUndo(session.release_contrast_stores), None))

    # ------------------------------------------------------------------ what the model sees
    def wanted(self, layer, ticked=None) -> tuple[float, float] | None:
        """The limits the model should see for ``layer`` now: the layer's, where the box is
        ticked (``ticked``: as if it were, or not) and they are not napari's own; else None
        (the stack's percentiles)."""
        ticked = self.box.isChecked() if ticked is None else ticked
        if not ticked or getattr(layer, "auto_contrast", False):
            return None
        lo, hi = (float(v) for v in layer.contrast_limits)
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            return None
        base = self.baseline
        if base is not None and np.allclose((lo, hi), base, rtol=1e-6, atol=1e-9):
            return None
        return lo, hi

    def limits(self) -> tuple[float, float] | None:
        """The session's ``contrast_source``: the limits the model sees for the image layer
        (main thread). A layer seen for the first time is followed from now on."""
        layer = self.session.image_layer
        if layer is None:
            return None
        if layer is not self.layer:
            self.follow(layer)
        return self.current

    def follow(self, layer) -> None:
        """Listen to ``layer``'s contrast events (instead of the last layer's; None: to no
        layer's)."""
        if self.link is not None:
            self.link[0].disconnect(self.link[1])
            if self.link in self.links:
                self.links.remove(self.link)
        self.layer, self.link, self.current = layer, None, None
        if layer is None or not self.links:  # (no links: the dock was closed)
            self.layer = None
            return
        self.baseline = napari_limits(layer)
        if self.baseline is None or self.drawing_first(layer):
            self.baseline = tuple(float(v) for v in layer.contrast_limits)
        self.current = self.wanted(layer)
        self.link = (layer.events.contrast_limits, self.on_contrast)
        self.links.append(self.link)
        layer.events.contrast_limits.connect(self.on_contrast)

    @staticmethod
    def drawing_first(layer) -> bool:
        """Whether napari has yet to set a lazy layer's limits from its first slice drawn
        (its contrast events until then are napari's, not the user's). napari has no
        public flag for it: its ``_should_calc_clims`` (False where it has none)."""
        return bool(getattr(layer, "_should_calc_clims", False))

    # ------------------------------------------------------------------ events
    def on_contrast(self, event=None) -> None:
        """The layer's contrast limits changed: napari's first guess (lazy data) becomes the
        baseline; a change of the user's is applied once the slider rests."""
        layer = self.layer
        if layer is None:
            return
        if self.drawing_first(layer):
            self.baseline = tuple(float(v) for v in layer.contrast_limits)
            return
        if not self.box.isChecked():
            if self.wanted(layer, ticked=True) is not None and not self.hinted and self.links:
                self.hinted = True
                self.session.say(HINT)
            return
        self.schedule(DEBOUNCE_MS)

    def on_removed(self, event) -> None:
        """A layer was removed: let go of it if it is the one followed (and of its data)."""
        if self.layer is not None and L.same(L.unwrap(event.value), self.layer):
            self.follow(None)

    def schedule(self, ms: int) -> None:
        self.timer.start(int(ms))

    def on_job_changed(self, job) -> None:
        """A job ended: a change that waited for it is applied now (from the event loop:
        the job's follow-up, e.g. a preview of a click made meanwhile, goes first)."""
        if job is None and self.layer is not None and self.wanted(self.layer) != self.current:
            self.schedule(DEBOUNCE_MS)

    @guarded
    def apply(self) -> None:
        """Main thread, the slider rests: where the limits the model should see changed,
        use them (the session embeds again as needed, and says so); waits for a running
        job (:meth:`on_job_changed`)."""
        session, layer = self.session, self.layer
        if layer is None or layer is not session.image_layer or not self.links:
            return
        new = self.wanted(layer)
        if new == self.current:
            self.unchanged = None  # (ticked again: said again)
            return
        if self.embedded_with(new):  # the same numbers: nothing to embed again
            if self.unchanged != new:
                self.unchanged = new
                session.say(f"Contrast unchanged: the "
                            f"{in_frames('slices', session.axis_kind)} were embedded with "
                            f"{contrast_words(new)} already; their embeddings are kept.")
            return
        job = session.job
        if job is not None and job.running:
            return  # on_job_changed applies it
        if session.volume is not None:  # an uncommitted propagated preview is kept
            if self.waiting != new:
                self.waiting = new
                session.say("Contrast changed: the propagated preview is kept; the model sees "
                            f"{contrast_words(new)} once you commit it (Shift+C) or clear it.")
            self.schedule(4 * DEBOUNCE_MS)  # (checked again until then)
            return
        self.current, self.waiting, self.unchanged = new, False, None
        lead = session.contrast_changed()
        if self.after_change is not None:
            self.after_change(lead=lead)

    def embedded_with(self, new) -> bool:
        """Whether the layer's limits ``new`` (None: the percentiles) are, to the last
        digits, those the current embeddings were computed with while the model sees the
        stack's percentiles: the box ticked over limits equal to the percentiles changes
        nothing (it said "Contrast changed" and embedded every slice again)."""
        emb = self.session.emb
        had = getattr(emb, "contrast_limits", None)
        return (new is not None and self.current is None and had is not None
                and bool(np.allclose(new, had, rtol=1e-6, atol=1e-9)))

    def restore(self, limits) -> None:
        """A loaded or resumed session's model saw ``limits`` (None: the stack's percentiles,
        left as they are): tick the box, put them on the image layer and give them to the
        model now; a notification says so."""
        session = self.session
        layer = session.image_layer
        limits = session.recorded_limits(limits)
        if limits is None or layer is None or not self.links:
            return
        self.limits()  # (follow the layer)
        self.box.blockSignals(True)
        self.box.setChecked(True)
        self.box.blockSignals(False)
        layer.contrast_limits = limits
        self.timer.stop()
        if self.wanted(layer) != self.current:
            self.current = self.wanted(layer)
            session.contrast_changed()
        session.notify_info(f"The session's model saw {contrast_words(limits)}: they are on "
                            f"'{layer.name}' again and 'Model sees the layer's contrast' is "
                            "ticked.")
