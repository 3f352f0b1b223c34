"""A movie of volumes ((T, Z, Y, X) image layer, e.g. a light-sheet movie) in the dock: SAM
segments the volume at the time point napari's time slider shows, and follows the slider.

The prompt, preview and labels layers keep all time points (4D); prompts and commits are at
the time point they were made at (:meth:`~napari_sam.annotate.image_source.ImageSource.
in_layer`), so undo writes the pixels of its own time point whichever one is shown. Each time
point has its own embeddings (the cache key holds the time point), and a job for another time
point is cancelled when the slider moves (:mod:`napari_sam.annotate.stale_jobs`).
"""

from __future__ import annotations

import numpy as np

from napari_sam.annotate.image_source import MAX_CHANNELS, ImageSource, UnsupportedImage
from napari_sam.annotate.prompt_groups import boxes_from_shapes
from napari_sam.prompts import MIN_BOX_SIDE

from .movie_axis import first_axis_named, is_ambiguous, movie_question, time_not_first
from .notify import guarded
from .pyramid import layer_source

__all__ = ["TimePoints", "movie_note", "movie_prompts", "time_shown", "time_source"]


def time_shown(viewer, layer, axis: int, n_times: int) -> int:
    """The index along data ``axis`` (of ``n_times``) of image ``layer`` at the position
    napari's sliders show (through the layer's scale and translate; clipped)."""
    data = np.asarray(layer.world_to_data(np.asarray(viewer.dims.point, dtype=float)))
    return int(np.clip(np.round(data[axis]), 0, n_times - 1))


def time_source(viewer, layer, channel_axis: int | None, channel: int | None,
                time_first: bool = False) -> ImageSource:
    """The :class:`ImageSource` of image ``layer`` (:func:`.pyramid.layer_source`), a movie's
    at the time point the viewer shows (``time_first``: its first axis is time also when it
    is short enough to be channels).

    Raises
    ------
    UnsupportedImage
        The layer's data cannot be segmented; the message says what to do.
    """
    problem = time_not_first(layer, channel_axis, viewer)  # (z, t, y, x): z taken as time
    if problem:
        raise UnsupportedImage(problem)
    source = layer_source(layer, channel_axis, channel, time_point=0, time_first=time_first)
    if source.time_axis is None:
        return source
    t = time_shown(viewer, layer, source.time_axis, source.n_times)
    return source if t == 0 else layer_source(layer, channel_axis, channel, time_point=t,
                                              time_first=time_first)


def movie_note(source: ImageSource | None, name: str, why: str = "") -> str:
    """The status line's words when a movie of volumes, image ``name``, is picked, e.g.
    "'movie' is a movie of 5 time points: SAM segments the volume at the time point the
    time slider shows (2 now)." ("" for any other image); ``why`` it is taken as one, e.g.
    "its file names its axes TZYX", in brackets after the count."""
    if source is None or source.time_axis is None:
        return ""
    return (f"'{name}' is a movie of {source.n_times} time points{f' ({why})' if why else ''}"
            f": SAM segments the volume at the time point the time slider shows "
            f"({source.time_point} now).")


def movie_prompts(points_layer, boxes_layer, source: ImageSource) -> tuple:
    """The prompts of a movie at every time point: points (P, 3) (z, row, col), their
    labels (P,) 1/0, boxes (N, 5) (z, row0, col0, row1, col1), and the time point of each
    point (P,) and box (N,) (ints). Rectangles with a side under ``MIN_BOX_SIDE`` pixels
    are left out, as the preview leaves them out."""
    axis = source.time_axis
    data = np.zeros((0, source.ndim)) if points_layer is None else np.asarray(
        points_layer.data, float).reshape(-1, source.ndim)
    kinds = (points_layer.features["prompt"].astype(str).to_numpy() if len(data)
             else np.array([], str))
    rects = [np.asarray(v, float) for v, kind in zip(
        getattr(boxes_layer, "data", ()), getattr(boxes_layer, "shape_type", ()))
        if kind == "rectangle"]
    rects = [v for v in rects if np.ptp(source.to_zyx(v)[:, 1:], axis=0).min() >= MIN_BOX_SIDE]
    boxes = boxes_from_shapes([source.to_zyx(v) for v in rects])
    return (source.to_zyx(data), (kinds != "negative").astype(int), boxes,
            np.round(data[:, axis]).astype(int),
            np.array([int(np.round(v[0, axis])) for v in rects], int))


class TimePoints:
    """Follows the time slider of a movie (a mixin of the controller: ``viewer``,
    ``image_layer``, ``source``, ``channel_axis``, ``channel``, ``use_source``, the signal
    ``time_point_shown``;
    ``time_chosen``, the set of the unique ids of the layers whose first axis the user said
    is time, is made by the controller's ``__init__``)."""

    def time_first(self, layer, channel_axis: int | None = None) -> bool:
        """Whether the first axis of 4D image ``layer`` (with ``channel_axis``) is time:
        napari or its file names it so (:func:`~.movie_axis.first_axis_named`), or the user
        said so (:meth:`choose_time`)."""
        named = first_axis_named(layer, channel_axis, self.viewer)
        return (named is not None and named[0]) or (
            getattr(layer, "unique_id", id(layer)) in self.time_chosen)

    def movie_reason(self, layer) -> str:
        """Why a short movie (T <= ``MAX_CHANNELS``, which could be channels) is taken as
        one: "its file names its axes TZYX", "napari names axis 0 't'", "you said axis 0
        holds time points"; "" for any other image (a longer time axis is not in doubt)."""
        src = self.source
        if src is None or src.time_axis is None or src.n_times > MAX_CHANNELS:
            return ""
        named = first_axis_named(layer, self.channel_axis, self.viewer)
        if named is not None and named[0]:
            return named[1]
        if getattr(layer, "unique_id", id(layer)) in self.time_chosen:
            return f"you said axis {src.time_axis} holds time points"
        return ""

    def choose_time(self, layer) -> None:
        """The user said the first axis of ``layer`` holds time points (the dock's *Time
        points* button): it is taken as a movie from now on."""
        self.time_chosen.add(getattr(layer, "unique_id", id(layer)))

    def shelf_prompts(self) -> tuple:
        """The prompts to set aside when another image is picked: of a movie, those of
        every time point (only the time point shown was kept before: the others were lost
        once the movie was picked again)."""
        src = self.source
        if src is None or src.time_axis is None:
            return super().shelf_prompts()
        return movie_prompts(self.points_layer, self.boxes_layer, src)

    def unshelve_prompts(self, kept) -> None:
        """Put prompts set aside back, a movie's at their time points."""
        if kept.times is None or self.source.time_axis is None:
            return super().unshelve_prompts(kept)
        self.set_prompts(kept.points, kept.labels, kept.boxes, kept.times, kept.box_times)

    def movie_refusal(self, layer, channel_axis: int | None) -> str:
        """The question the status line asks where the first axis of ``layer`` may be time
        or channels and nothing says which (:func:`~.movie_axis.is_ambiguous`), else ""."""
        if not is_ambiguous(layer, channel_axis, self.time_first(layer, channel_axis),
                            self.viewer):
            return ""
        return movie_question(layer)

    @guarded
    def time_step_shown(self, *_event) -> None:
        """napari shows another step: on a movie at another time point, the prompts, preview
        and embeddings become that time point's ("SAM now segments time point t of T.", its
        prompts previewed with live preview on); the prompts of the time point left stay in
        the layers for when the slider comes back. While a job runs on (a model that loads:
        it is let finish), the line says the time point is segmented once it is done, not
        "Click on an object" (it said so over the load's line; a failed load then left the
        user with a ready line for a model that never came)."""
        src, layer = self.source, self.image_layer
        if src is None or src.time_axis is None or layer is None or not self.image_shown():
            return
        if not self.segments_layer_data():  # (napari updates the sliders for new data
            return  # first: the image is picked again right after, :meth:`set_image`)
        t = time_shown(self.viewer, layer, src.time_axis, src.n_times)
        if t == src.time_point:
            return
        self.previews, self.volume = [], None  # (the old time point's preview is cleared)
        self.render()
        self.drop_sam2_features()  # (SAM 2's memory is of the volume left)
        self.source = layer_source(layer, self.channel_axis, self.channel, time_point=t,
                                   time_first=self.time_first(layer, self.channel_axis))
        self.use_source(False)  # (its embeddings; a job for the time point left is stopped)
        points, _, boxes = self.prompt_arrays()  # (this time point's)
        # with live preview, its prompts are previewed, after the line
        line = f"SAM now segments time point {t} of {src.n_times}."
        job = self.job  # a model that loads is let finish: said ready once it is (preload)
        prompted = "slice" if self.live and len(points) + len(boxes) else None
        if job is not None and job.running and not job.cancelled:
            if prompted:  # previewed once it is done ("SAM now segments ...", its scores)
                self.after_setting(prompted, line)
            self.say(f"Time point {t} of {src.n_times} shown: SAM segments it once "
                     f"'{job.description}' is done.")
        else:
            self.after_setting(prompted, line)
        # the dock embeds the slice shown at that time point, as it does for a new image
        # (the first click there waited for its embedding)
        self.time_point_shown.emit(line)
