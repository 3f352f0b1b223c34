"""Uncommitted prompts kept per image: picking another image sets the current image's
prompts aside, and picking it again brings them back (the prompts belong to their image;
nothing drawn is lost without a word).

A mixin of :class:`~napari_sam.annotate.annotation_session.AnnotationSession`: the session
calls :meth:`PromptShelf.set_aside_prompts` before it changes image and
:meth:`PromptShelf.restore_prompts` after. Prompts are kept in stack coordinates (points
(z, row, col), boxes (z, row0, col0, row1, col1)) under the image's identity and channel
axis, with the stack's shape: an image whose shape changed meanwhile does not get them back
(the status says so).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_sam.words import for_count

__all__ = ["PromptShelf", "ShelvedPrompts"]


@dataclass
class ShelvedPrompts:
    """The uncommitted prompts of one image, set aside while another image is annotated."""

    name: str  # the image's name when they were set aside
    shape: tuple  # (Z, Y, X) of the image's stack; a movie's (T, Z, Y, X)
    points: np.ndarray  # (P, 3) (z, row, col)
    labels: np.ndarray  # (P,) 1 positive / 0 negative
    boxes: np.ndarray  # (N, 5) (z, row0, col0, row1, col1)
    times: np.ndarray | None = None  # a movie's: (P,) time point of each point
    box_times: np.ndarray | None = None  # a movie's: (N,) time point of each box

    def describe(self) -> str:
        """E.g. "3 uncommitted prompts of 'blobs' (2 points, 1 box)" (a movie's: "... at
        time points 0, 2")."""
        n_pts, n_box = len(self.points), len(self.boxes)
        kinds = [f"{n} {word}{'' if n == 1 else plural}"
                 for n, word, plural in ((n_pts, "point", "s"), (n_box, "box", "es")) if n]
        n = n_pts + n_box
        at = sorted(self.time_points())
        when = "" if not at else (f" at {for_count(len(at), 'time point')} "
                                  f"{', '.join(map(str, at))}")
        return (f"{n} uncommitted prompt{'' if n == 1 else 's'} of '{self.name}' "
                f"({', '.join(kinds)}){when}")

    def time_points(self) -> set[int]:
        """The time points of a movie's prompts (empty for any other image)."""
        if self.times is None:
            return set()
        return {int(t) for t in (*self.times, *self.box_times)}


class PromptShelf:
    """Prompts set aside per image (needs the session's attributes and hooks)."""

    #: {(image id, channel axis): ShelvedPrompts}; the session's own (made in its __init__)
    shelved: dict

    def _shelf_key(self) -> tuple:
        return self.image_identity()[0], self.channel_axis

    def set_aside_prompts(self) -> str:
        """Before another image is picked: keep the current image's uncommitted prompts
        until it is picked again. Returns what the status line says ("" when there were
        none)."""
        if self.source is None or not self.image_shown():
            return ""
        points, labels, boxes, times, box_times = self.shelf_prompts()
        key = self._shelf_key()
        if not len(points) and not len(boxes):
            self.shelved.pop(key, None)
            return ""
        kept = ShelvedPrompts(self.image_name(), self._shelf_shape(),
                              np.array(points, float), np.array(labels, int),
                              np.array(boxes, float), times, box_times)
        self.shelved[key] = kept
        return (f"Set aside {kept.describe()}: pick '{kept.name}' in 'Image' again to get "
                "them back.")

    def restore_prompts(self) -> str:
        """After an image was picked: bring back the prompts set aside for it (and preview
        them, with live preview on). Returns what the status line says ("" when none)."""
        kept = self.shelved.pop(self._shelf_key(), None)
        if kept is None:
            return ""
        if self._shelf_shape() != kept.shape:
            return (f"The {kept.describe()} were dropped: the image's shape changed from "
                    f"{kept.shape} to {self._shelf_shape()} since they were set aside.")
        self.unshelve_prompts(kept)
        z = self.current_z()
        on_slice = np.round(np.concatenate([kept.points[:, 0], kept.boxes[:, 0]])) == z
        if kept.times is not None:  # a movie's: on the slice at the time point shown
            on_slice &= np.concatenate([kept.times, kept.box_times]) == self.source.time_point
        if self.live and self.model_choice is not None and on_slice.any():
            self.refresh_preview()
        slices = sorted({int(v) for v in np.round(kept.points[:, 0])}
                        | {int(v) for v in np.round(kept.boxes[:, 0])})
        where = (f" on {for_count(len(slices), 'slice')} {', '.join(map(str, slices))}"
                 if self.source.is_3d else "")
        return f"Restored {kept.describe()}{where}, set aside when another image was picked."

    def _shelf_shape(self) -> tuple:
        """(Z, Y, X) of the stack; a movie's (T, Z, Y, X)."""
        shape = tuple(self.source.shape)
        return shape if self.source.time_axis is None else (self.source.n_times, *shape)

    def shelf_prompts(self) -> tuple:
        """The prompts to set aside: :meth:`prompt_arrays` and, for a movie, the time
        point of each point and box (None, None here: the dock's layers hold a movie's
        prompts of every time point, :class:`~napari_sam._qt.time_point.TimePoints`)."""
        return (*self.prompt_arrays(), None, None)

    def unshelve_prompts(self, kept: ShelvedPrompts) -> None:
        """Put prompts set aside back (at their time points, a movie's)."""
        self.set_prompts(kept.points, kept.labels, kept.boxes)

    def drop_shelved(self, image_id) -> None:
        """Forget the prompts set aside for image ``image_id`` (its layer was removed)."""
        for key in [k for k in self.shelved if k[0] == image_id]:
            del self.shelved[key]

    def shelf_note(self) -> str:
        """" Set aside: ..." naming the other images' prompts waiting ("" when none): the
        first status line keeps saying where they are."""
        current = self._shelf_key() if self.source is not None else None
        waiting = [kept.describe() for key, kept in self.shelved.items()
                   if key != current]
        if not waiting:
            return ""
        return (f" Set aside: {'; '.join(waiting)}; pick that image in 'Image' to get them "
                "back.")
