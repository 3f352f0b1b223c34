"""Session files in the annotation session: the commit log, save, load, autosave, resume,
and the propagation trace's fixes.

A mixin of :class:`~napari_sam._qt.controller.AnnotationController`. The file format,
checks and replay are the core's (:mod:`napari_sam.session`); this module turns the
controller's state into a :class:`~napari_sam.session.Session` and back.

The log holds the commits in effect into one labels layer, in order: a commit appends, undo
moves the last one to a redo list, redo moves it back. When commits go into another labels
layer, the log starts again there (with that layer's content as the session's ``base``).
After every commit, undo and redo the session is autosaved next to the image file
(:func:`napari_sam.session.sidecar_for`) when the image came from a file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from psygnal import Signal

from napari_sam import session as S

from . import layers as L
from .notify import UserError
from .prompts import POINT_OBJECT, boxes_from_shapes

__all__ = ["SessionActions"]


def _layer_coords(source, zyx: np.ndarray) -> np.ndarray:
    """Stack coordinates (N, 3) (z, row, col) -> layer data coordinates (N, ndim)."""
    zyx = np.asarray(zyx, dtype=float).reshape(-1, 3)
    out = np.zeros((len(zyx), source.ndim))
    out[:, list(source.spatial_axes)] = zyx if source.is_3d else zyx[:, 1:]
    return out


class SessionActions:
    """Session log, files and trace (needs the controller's attributes)."""

    session_loaded = Signal(object)  # the Session
    resume_available = Signal(str, str)  # sidecar path, summary
    trace_changed = Signal(object)  # the trace dict, or None

    def _init_session(self) -> None:
        self.log: list[dict] = []
        self._redo_log: list[dict] = []
        self._log_target = None
        self._log_base: np.ndarray | None = None
        self.trace: dict | None = None
        self.autosave = True
        self.session_path: Path | None = None
        self._declined: set[str] = set()
        self._volume_request = None  # (prompts, options, {i: object key}) of the preview
        self._image_hash: tuple[int, str] | None = None

    # ------------------------------------------------------------------ the log
    def _log_before_commit(self, target) -> None:
        if L.same(target, self._log_target):
            return
        data = self.source.zyx_view(target.data)
        self._log_target = L.unwrap(target)
        self.log, self._redo_log = [], []
        self._log_base = np.array(data, copy=True) if data.any() else None

    def _log_commit(self, objects_all, written, commit) -> None:
        """Record a commit: ``objects_all`` the previews (or volume object ids) decoded,
        ``written`` the (index, id refined) pairs the commit wrote, in order."""
        if self.volume is not None:
            prompts, options, _ = self._volume_request
            op = S.volume_operation(prompts, options, written, overwrite=self.overwrite,
                                    ids=commit.ids)
        else:
            mask_label = self._refine_id(None) if any(p.mask_prompt for p in objects_all) else 0
            op = S.slice_operation(objects_all[0].z, objects_all, written,
                                   overwrite=self.overwrite, mask_label=mask_label,
                                   ids=commit.ids)
        self.log.append(op)
        self._redo_log.clear()
        self._autosave()

    def _log_step(self, commit, redo: bool) -> None:
        if not L.same(commit.target, self._log_target):
            return
        src, dst = (self._redo_log, self.log) if redo else (self.log, self._redo_log)
        if src:
            dst.append(src.pop())
            self._autosave()

    # ------------------------------------------------------------------ state
    def image_path(self) -> Path | None:
        """The file the image layer was opened from (None: made in memory)."""
        layer = self.image_layer
        path = getattr(getattr(layer, "source", None), "path", None)
        return Path(path) if path else None

    def _hash(self) -> str:
        key = id(self.image_layer.data)
        if self._image_hash is None or self._image_hash[0] != key:
            self._image_hash = (key, S.image_hash(self.source.stack))
        return self._image_hash[1]

    def _pending_prompts(self) -> dict:
        src = self.source
        pts, lab = L.read_points(self.points_layer, src)
        boxes = boxes_from_shapes(L.read_boxes(self.boxes_layer, src))
        return {"points": pts.tolist(), "labels": [int(v) for v in lab],
                "boxes": boxes.tolist()}

    def session_state(self) -> S.Session:
        """The session as it stands: image, model, settings, the log, pending prompts, the
        committed labels and the last trace."""
        src = self._require_image()
        layer, choice, pred = self.image_layer, self.model_choice, self.predictor
        path = self.image_path()
        image = {"path": str(path) if path else None, "name": layer.name, "hash": self._hash(),
                 "shape": list(src.shape), "layer_shape": list(src.layer_shape),
                 "channel_axis": src.channel_axis, "rgb": bool(src.rgb),
                 "dtype": str(src.stack.dtype),
                 "contrast_limits": [float(v) for v in layer.contrast_limits],
                 "embedding_contrast_limits": None if self.emb is None else
                 [float(v) for v in self.emb.contrast_limits]}
        model = {"name": None if choice is None else choice.key,
                 "is_file": bool(choice is not None and choice.is_file),
                 "id": None if pred is None else getattr(pred.model, "model_id", None),
                 "device": str(pred.device) if pred is not None else self.device,
                 "precision": None if pred is None else pred.precision}
        settings = {"axis_kind": self.axis_kind, "overwrite": bool(self.overwrite),
                    "store": self.store}
        target = self._log_target
        labels = None
        if target is not None and target in self.viewer.layers:
            labels = np.array(src.zyx_view(target.data), copy=True)
        return S.Session(image=image, model=model, settings=settings,
                         operations=list(self.log), pending=self._pending_prompts(), labels=labels,
                         base=self._log_base, trace=self.trace)

    # ------------------------------------------------------------------ files
    def save_session(self, path) -> Path:
        """Write the session to ``path`` (JSON, labels beside it); returns the path."""
        path = Path(path)
        if path.suffix.lower() != ".json":
            path = path.with_name(path.name + ".json")
        try:
            S.write_session(self.session_state(), path)
        except OSError as err:
            raise UserError(f"Could not save the session to {path}: {err.strerror or err}. "
                            "Pick a folder you can write to.") from None
        self.session_path = path
        self._say(f"Saved the session ({len(self.log)} commits) to {path}.")
        return path

    def autosave_path(self) -> Path | None:
        path = self.image_path()
        return None if path is None else S.sidecar_for(path)

    def _autosave(self) -> None:
        target = self.autosave_path()
        if not self.autosave or target is None:
            return
        try:
            S.write_session(self.session_state(), target)
        except OSError as err:
            from .notify import warn

            self.autosave = False
            warn(f"Autosave to {target} failed ({err.strerror or err}); autosave is off. Use "
                 "'Save session' to save elsewhere.")

    def load_session(self, path) -> S.Session:
        """Restore a session file onto the current image: its labels into a new labels layer
        (commits continue there), its pending prompts into the prompt layers, its model and
        trace. Everything is checked first; a bad file changes nothing."""
        try:
            sess = S.read_session(path)
            src = self._require_image()
            S.check_image(sess, src.shape, what=f"'{self.image_layer.name}'")
            S.check_model(sess)
        except S.SessionError as err:
            raise UserError(f"{err}.") from None
        self._restore(sess)
        self.session_path = Path(path)
        pending = sess.pending or {}
        first = (pending.get("points") or pending.get("boxes") or [None])[0]
        if first is not None and self.live:  # show where the work stopped, with its preview
            from .notify import guarded

            self.go_to_slice(int(round(first[0])))
            guarded(self.update_preview)()
        self._say(f"Loaded the session {Path(path).name} ({sess.summary()}); continue where it "
                  "stopped.")
        return sess

    def _restore(self, sess: S.Session) -> None:
        src = self.source
        self.session_loaded.emit(sess)  # the dock picks the session's model
        target = None
        if sess.labels is not None:
            target = self._new_target(src.to_layer(np.ascontiguousarray(sess.labels)))
        self.log, self._redo_log = list(sess.operations), []
        self._log_target, self._log_base = target, sess.base
        pending = sess.pending or {}
        self._muted = True
        try:
            pts = np.asarray(pending.get("points", []), float).reshape(-1, 3)
            kinds = ["positive" if v else "negative" for v in pending.get("labels", [])]
            layer = self.points_layer
            layer.data = _layer_coords(src, pts)
            import pandas as pd

            layer.features = pd.DataFrame(
                {"prompt": pd.Categorical(kinds, categories=L.PROMPT_KINDS)})
            layer.refresh_colors()
            boxes = self.boxes_layer
            if len(boxes.data):
                boxes.data = []
            rects = [_layer_coords(src, [[z, r0, c0], [z, r0, c1], [z, r1, c1], [z, r1, c0]])
                     for z, r0, c0, r1, c1 in pending.get("boxes", [])]
            if rects:
                boxes.add(rects, shape_type="rectangle")
        finally:
            self._muted = False
        self._restore_default_kind()
        self.previews, self.volume = [], None
        self._render()
        self.trace = sess.trace
        self.trace_changed.emit(self.trace)

    def _new_target(self, data):
        """A new labels layer holding ``data`` that commits go into (never an old layer)."""
        scale, translate = self.source.derived_geometry(self.image_layer.scale,
                                                        self.image_layer.translate)
        layer = L.unwrap(self.viewer.add_labels(np.array(data, copy=True), name=L.TARGET_NAME,
                                                scale=scale, translate=translate))
        layers = self.viewer.layers
        if self.preview_layer in layers:
            layers.move(layers.index(layer), layers.index(self.preview_layer))
        layers.selection.active = self.points_layer
        self.target_layer = layer
        self.target_changed.emit(layer)
        return layer

    # ------------------------------------------------------------------ resume
    def offer_resume(self) -> S.Session | None:
        """When the image has an autosaved session next to it (not declined, not loaded),
        emit ``resume_available``; returns that session (read without its labels)."""
        target = self.autosave_path()
        if target is None or not target.is_file() or str(target) in self._declined:
            return None
        if self.session_path is not None and self.session_path == target:
            return None
        try:
            sess = S.read_session(target, load_labels=False)
        except S.SessionError:
            return None
        self.resume_available.emit(str(target), sess.summary())
        return sess

    def resume(self) -> S.Session:
        target = self.autosave_path()
        if target is None or not target.is_file():
            raise UserError("No autosaved session next to this image.")
        return self.load_session(target)

    def decline_resume(self) -> None:
        target = self.autosave_path()
        if target is not None:
            self._declined.add(str(target))

    # ------------------------------------------------------------------ trace
    def go_to_slice(self, z: int) -> None:
        """Show slice ``z`` of the image's stack."""
        src, layer = self._require_image(), self.image_layer
        if not src.is_3d:
            return
        axis = self.viewer.dims.ndim - layer.ndim + src.z_axis
        world = float(layer.translate[src.z_axis] + z * layer.scale[src.z_axis])
        self.viewer.dims.set_point(axis, world)

    def apply_fix(self, flag: dict) -> None:
        """Carry out a flag's fix: go to its slice and, for the point object, add a positive
        point at the centre of the object's last mask there (then Propagate again)."""
        fix = flag.get("fix")
        if not fix:
            self.go_to_slice(int(flag["slice"]))
            return
        z, (r, c) = int(fix["slice"]), fix["point"]
        self.go_to_slice(z)
        keys = (self._volume_request or (None, None, {}))[2]
        obj = next((o for o in (self.trace or {}).get("objects", []) if flag in o["flags"]), {})
        if keys.get(obj.get("id"), POINT_OBJECT) != POINT_OBJECT:
            self._say(f"Slice {z}: draw a box around the object here; a box object lives on "
                      "its own slice, so it becomes a new object.")
            return
        self.set_negative(False)
        self.points_layer.add(_layer_coords(self.source, [[z, r, c]]))
        self._say(f"Added a point on slice {z} at (row {r:g}, col {c:g}); press Propagate to "
                  "carry the object on from there.")
