"""Sessions of a movie of volumes ((T, Z, Y, X) image layer, e.g. a light-sheet movie): what
a session file records of one, and the refusal of a session made on another kind of image.

The dock segments the volume at the time point the time slider shows
(:class:`~napari_sam.annotate.image_source.ImageSource` with a ``time_axis``), but a session
belongs to the whole movie: its ``image`` record has the movie's ``time_points`` (T) and
``time_axis``, its content hash samples the slices of all its time points (up to 16 of
the T * Z, :class:`MovieFrames`), each operation records the ``time_point`` it was
committed at, its labels and base are the
(T, Z, Y, X) labels of every time point, and its pending prompts those of every time
point (with their ``times`` and ``box_times``). Loading one restores the labels of every
time point at once (the time slider stays where it is); a session of a volume is not loaded
onto a movie, nor the reverse, nor one of a movie of another number of time points
(:func:`movie_mismatch` says which and what to do).

:class:`MovieSessions` is a mixin of :class:`~napari_sam.annotate.session_log.SessionLog`
(it needs the session's ``source``, ``target_zyx``, ``target_data``, ``target_labels`` and,
for a movie, the dock's ``target_layer`` and ``shelf_prompts``); for any image but a movie
it changes nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import UserError
from .image_source import ImageSource
from .prompt_groups import inside_image

__all__ = ["MovieFrames", "MovieSessions", "movie_labels", "movie_mismatch", "same_movie"]


class MovieFrames:
    """Read-only view ``[i] -> (Y, X)`` (or ``(Y, X, 3)``) of the T * Z slices of a movie's
    volumes, time point after time point (slice ``z`` of time point ``t`` at ``t * Z + z``),
    read lazily: what :func:`napari_sam.session.image_hash` and
    :func:`~napari_sam.annotate.memory_sessions.memory_image_key` read to name the whole
    movie, not the time point shown."""

    def __init__(self, source: ImageSource):
        #: the image whose slices these are
        self.source = source
        self._z = int(source.shape[0])
        self.shape = (source.n_times * self._z, *source.stack.shape[1:])
        self.dtype = source.stack.dtype

    def same_image(self, source: ImageSource) -> bool:
        """Whether ``source`` (the movie at any of its time points) reads the slices these
        do (:func:`same_movie`)."""
        return same_movie(self.source, source)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i) -> np.ndarray:
        if not isinstance(i, (int, np.integer)) or not 0 <= int(i) < self.shape[0]:
            raise IndexError(f"slice {i!r} is not one of the movie's {self.shape[0]} slices")
        t, z = divmod(int(i), self._z)
        return self.source.stack_at(t)[z]


def same_movie(a: ImageSource, b: ImageSource) -> bool:
    """Whether sources ``a`` and ``b`` are one movie (at two time points, or one): they read
    the same array (:attr:`ImageSource.data`), channel and axes, so their content hash
    (:class:`MovieFrames`) is one."""
    return (a.time_axis is not None and a.data is not None and a.data is b.data
            and (a.channel_axis, a.channel, a.time_axis, a.n_times, a.shape)
            == (b.channel_axis, b.channel, b.time_axis, b.n_times, b.shape))


def movie_labels(source: ImageSource, layer_array: np.ndarray) -> np.ndarray:
    """The (T, Z, Y, X) view of every time point of an array of ``source.layer_shape`` (a
    movie's labels layer data: its channel axis and size-1 axes left out)."""
    arr = np.asarray(layer_array)
    if tuple(arr.shape) != source.layer_shape:
        raise UserError(f"the labels layer has shape {tuple(arr.shape)} but the movie needs "
                        f"{source.layer_shape}; pick a labels layer made for this movie or a "
                        "new one")
    left_out = {a for a in range(source.ndim) if a not in source.spatial_axes}
    left_out.discard(source.time_axis)
    return arr[tuple(0 if a in left_out else slice(None) for a in range(source.ndim))]


def movie_mismatch(session, source: ImageSource, file_name: str, image_name: str) -> str:
    """Why the ``session`` (:class:`napari_sam.session.Session`) of the file ``file_name``
    is not loaded onto image ``image_name`` (``source``): one is a movie and the other not,
    or the two movies have other numbers of time points; "" when they match."""
    made, now = session.time_points, source.n_times if source.time_axis is not None else None
    if made == now:
        return ""
    on = session.image.get("path") or session.image.get("name") or "another image"
    if now is None:
        return (f"Not loaded: {file_name} is the session of a movie of {made} time points "
                f"({on}), and '{image_name}' is not a movie (one volume, no time axis). Open "
                f"the movie it was made on ({made} time points on napari's time slider) and "
                "load the session there.")
    if made is None:
        return (f"Not loaded: {file_name} is the session of one volume ({on}), and "
                f"'{image_name}' is a movie of {now} time points. Load it onto the volume it "
                "was made on; to go on in this movie, start a new session here (its commits "
                "are autosaved with their time points).")
    return (f"Not loaded: {file_name} is the session of a movie of {made} time points ({on}), "
            f"and '{image_name}' has {now} time points. Open the movie it was made on "
            f"({made} time points) and load the session there.")


class MovieSessions:
    """A movie's session: its labels, hash, records and refusals (a mixin, see the module)."""

    def is_movie(self) -> bool:
        """Whether the image is a movie of volumes (its session holds every time point)."""
        return self.source is not None and self.source.time_axis is not None

    def labels_for_session(self, layer_array: np.ndarray) -> np.ndarray:
        """The labels a session records of an array of the image's ``layer_shape``: its
        (Z, Y, X) view, a movie's (T, Z, Y, X) view."""
        if self.is_movie():
            return movie_labels(self.source, layer_array)
        return self.source.zyx_view(layer_array)

    def session_labels(self, target) -> np.ndarray:
        """The labels a session records of the commit target ``target``: its (Z, Y, X)
        labels (:meth:`target_zyx`), a movie's of every time point, (T, Z, Y, X)."""
        if not self.is_movie():
            return self.target_zyx(target)
        return movie_labels(self.source, self.target_data(target))

    def held_labels(self) -> np.ndarray | None:
        """The target labels as a session records them (:meth:`session_labels`), None
        where there is no target (:meth:`target_labels`)."""
        labels = self.target_labels()
        if labels is None or not self.is_movie():
            return labels
        return movie_labels(self.source, self.target_layer.data)

    def hashed_stack(self):
        """What the image's content hash samples (up to 16 slices): the stack SAM sees, a
        movie's slices across all its time points (:class:`MovieFrames`), the same object
        for every time point of the movie (:func:`napari_sam.session.image_hash` remembers
        the hash of that object: moving the time slider reads nothing again), a new one
        once the source reads another array (a layer's ``data`` replaced, another movie) or
        another channel of it."""
        if not self.is_movie():
            return self.source.stack
        frames = getattr(self, "_movie_frames", None)
        if frames is None or not frames.same_image(self.source):
            frames = self._movie_frames = MovieFrames(self.source)
        return frames

    def forget_movie_frames(self) -> None:
        """Let go of the kept :class:`MovieFrames` (and so of the array they read) unless the
        image is still that movie: its layer was removed, the array stays no longer."""
        frames = getattr(self, "_movie_frames", None)
        if frames is not None and (self.source is None or not frames.same_image(self.source)):
            self._movie_frames = None

    def same_hash(self, a: ImageSource | None, b: ImageSource | None) -> bool:
        """Whether sources ``a`` and ``b`` have one content hash (:meth:`hashed_stack`):
        they are one, or one movie at two time points (:func:`same_movie`)."""
        return a is b or (a is not None and b is not None and same_movie(a, b))

    def labels_hashes(self, labels: np.ndarray | None) -> list[str] | None:
        """A movie's hashes of each time point of the autosave's ``labels`` (T, Z, Y, X)
        (:func:`napari_sam.session.session_labels_hash`), those the autosave writer knows
        (time points no commit changed since its last write) not read again, the others
        hashed and kept for the next autosave; None for any other labels (the write hashes
        them). An autosave then hashes and writes only the time points that changed."""
        if labels is None or labels.ndim != 4:
            return None
        from napari_sam.session import labels_hash

        writer = self.autosave_writer
        hashes = [h or labels_hash(labels[t]) for t, h in enumerate(writer.known_hashes(labels))]
        writer.remember(labels, hashes)
        return hashes

    def movie_record(self) -> dict:
        """A movie's entries of a session's ``image`` record (none for any other image)."""
        if not self.is_movie():
            return {}
        return {"time_points": int(self.source.n_times),
                "time_axis": int(self.source.time_axis)}

    def record_time_point(self, op: dict) -> dict:
        """``op`` (a logged operation) with the time point it was committed at, a movie's
        (changed in place)."""
        if self.is_movie():
            op["time_point"] = int(self.source.time_point)
        return op

    def movie_pending(self) -> dict:
        """A movie's uncommitted prompts of every time point, as a session's ``pending``
        records them: ``points``, ``labels``, ``boxes`` and the time point of each point
        (``times``) and box (``box_times``); those beside the image are left out
        (:func:`~napari_sam.annotate.prompt_groups.inside_image`)."""
        pts, lab, boxes, times, box_times = self.shelf_prompts()
        out = {"points": [], "labels": [], "boxes": [], "times": [], "box_times": []}
        for t in sorted({*np.asarray(times).tolist(), *np.asarray(box_times).tolist()}):
            p, v, b, _ = inside_image(pts[times == t], lab[times == t], boxes[box_times == t],
                                      self.source.shape)
            out["points"] += p.tolist()
            out["labels"] += [int(x) for x in v]
            out["boxes"] += b.tolist()
            out["times"] += [int(t)] * len(p)
            out["box_times"] += [int(t)] * len(b)
        return out

    def prompts_held(self) -> tuple[int, str]:
        """How many uncommitted prompts the image holds (a movie's: of every time point, not
        only those of the time point shown) and, for a movie's at other time points, where:
        ``" (at time point 3: move the time slider there)"``; ``""`` else."""
        pts, _, boxes, times, box_times = self.shelf_prompts()
        n = len(pts) + len(boxes)
        if not self.is_movie() or not n:
            return n, ""
        other = sorted({*np.asarray(times).tolist(), *np.asarray(box_times).tolist()}
                       - {self.source.time_point})
        if not other:
            return n, ""
        return n, (f" (at time point{'s' if len(other) > 1 else ''} "
                   f"{', '.join(map(str, other))}: move the time slider there)")

    def pending_times(self, pending: dict) -> dict:
        """The time points to restore a session's pending prompts at: its ``times`` and
        ``box_times`` (a movie's); ``{}`` otherwise."""
        if not self.is_movie() or "times" not in pending:
            return {}
        return {"times": [int(t) for t in pending["times"]],
                "box_times": [int(t) for t in pending.get("box_times", [])]}

    def pending_here(self, pending: dict) -> dict:
        """A session's pending prompts at the time point shown (a movie's; any other
        image's: all of them)."""
        if not self.is_movie() or "times" not in pending:
            return pending
        t = self.source.time_point
        return {"points": [p for p, at in zip(pending.get("points", []), pending["times"])
                           if at == t],
                "boxes": [b for b, at in zip(pending.get("boxes", []),
                                             pending.get("box_times", [])) if at == t]}

    def pending_elsewhere(self, pending: dict) -> str:
        """" Its uncommitted prompts at time points 0, 3 are back there: ..." when a movie's
        session has pending prompts at other time points than the one shown ("" else)."""
        if not self.is_movie():
            return ""
        other = sorted({*pending.get("times", []), *pending.get("box_times", [])}
                       - {self.source.time_point})
        if not other:
            return ""
        where = (f"time point {other[0]}" if len(other) == 1 else
                 f"time points {', '.join(map(str, other))}")
        return (f" Its uncommitted prompts at {where} are back there: move the time slider "
                "to see them.")

    def refuse_other_movie(self, session, path) -> None:
        """Raise :class:`UserError` when the ``session`` of the file ``path`` was made on a
        movie and the image is not one, or the reverse, or on a movie of another number of
        time points (:func:`movie_mismatch`)."""
        problem = movie_mismatch(session, self.source, Path(path).name, self.image_name())
        if problem:
            raise UserError(problem)
