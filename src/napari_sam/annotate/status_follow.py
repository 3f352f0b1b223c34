"""The status line follows what the user changes without a prompt: the slice shown (a
slice's preview is named with its slice once the user looks at another one), the
'Live preview' box (ticked again: the prompts kept meanwhile are previewed) and the
removal of the last prompt (the line about the kept prompts goes). A mixin of
:class:`~napari_sam.annotate.annotation_session.AnnotationSession`."""

from __future__ import annotations

from napari_sam.words import in_frames

from .commit_words import LIVE_OFF

__all__ = ["StatusFollow", "moved_away"]


def moved_away(preview_z: int, z: int, unit: str = "slice") -> str:
    """The status line of a preview on slice ``preview_z`` while slice ``z`` is shown."""
    return (f"The preview is on {unit} {preview_z} ({unit} {z} is shown): go back to "
            f"{unit} {preview_z} to check it; Shift+C commits it.")


class StatusFollow:
    """'Live preview' (:attr:`live`), the slice shown (:meth:`slice_shown`) and removed
    prompts (:meth:`prompts_changed_live_off`) in the status line (a mixin of the session)."""

    _live = True
    #: the status line of the slice preview shown (said by ``_show_previews``), and of it
    #: seen from another slice (:func:`moved_away`)
    preview_status = ""
    _away_status = ""

    @property
    def live(self) -> bool:
        """Whether prompts are previewed as they change ('Live preview'). Ticked again with
        prompts kept meanwhile: they are previewed now (the status said they were not)."""
        return self._live

    @live.setter
    def live(self, on: bool) -> None:
        on, was = bool(on), self._live
        self._live = on
        if on and not was and getattr(self, "source", None) is not None and self.image_shown():
            points, _, boxes = self.prompt_arrays()
            if self.volume is None and len(points) + len(boxes):
                self.refresh_preview()
            elif self.status.startswith(LIVE_OFF):
                self._say(self.next_step())

    def prompts_changed_live_off(self, action: str) -> None:
        """Prompts changed while 'Live preview' is off: an added one is kept, not decoded
        (:data:`LIVE_OFF`); once the last is removed that line goes."""
        if action.endswith("added"):
            self._say(LIVE_OFF)
        elif self.status.startswith(LIVE_OFF) and not sum(map(len, self.prompt_arrays()[::2])):
            self._say(self.next_step())

    def slice_shown(self, *_event) -> None:
        """The viewer shows another slice: a slice preview's status line names the slice it
        is on while another is shown, and is said again on its own slice."""
        src = getattr(self, "source", None)
        if (src is None or not src.is_3d or not self.previews or self.volume is not None
                or not self.image_shown()):
            return
        if self.status not in (self.preview_status, self._away_status) or not self.status:
            return
        z, at = self.current_z(), self.previews[0].z
        if z == at:
            if self.status != self.preview_status:
                self._say(self.preview_status)
            return
        self._say(moved_away(at, z, in_frames("slice", self.axis_kind)))
        self._away_status = self.status
