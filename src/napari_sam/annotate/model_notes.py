"""What the status line says about the model picked once its preload is done: the ready line
(the image embedded, "Click on an object ...") names a checkpoint file as the demo model's
"[demo model]" names it, and keeps the notice that the file changed on disk since it was
loaded (a model retrained into the same path, picked again), which the preload's lines
replaced. A mixin of :class:`~napari_sam.annotate.annotation_session.AnnotationSession`."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ModelNotes"]


class ModelNotes:
    """The model's words in the ready line (:meth:`ready_words`)."""

    #: (checkpoint path, what the ready line says about it) of a file picked again after it
    #: changed on disk; said once, by the next ready line while that file is the model
    _reloaded_note: tuple[str, str] | None = None

    def checkpoint_changed(self, key: str) -> str:
        """The status line when a checkpoint, picked again, changed on disk since it was
        loaded; the ready line after its preload says it again (:meth:`ready_words`).

        Parameters
        ----------
        key : str
            The checkpoint's path (its model choice's key).

        Returns
        -------
        str
        """
        self._reloaded_note = (key, f"The checkpoint {key} changed on disk since it was "
                               "loaded (written again?): its new weights are used, and the "
                               "image is embedded again.")
        return (f"The checkpoint {key} changed on disk since it was loaded (written again?): "
                "it is loaded again, and the image embedded again, at the next click.")

    def ready_words(self, lead: str) -> tuple[str, str]:
        """The model's words in the ready line; the changed-on-disk notice is said once.

        Parameters
        ----------
        lead : str
            The line the ready line starts with (e.g. why the job before it stopped).

        Returns
        -------
        lead : str
            ``lead`` with the changed-on-disk notice of the checkpoint in use in front, if
            there is one.
        tag : str
            " [model NAME]" naming a checkpoint file in use (" [model NAME: the demo model's
            weights]" for a copy of the bundled demo model's file), else "" (a registry
            model, or the bundled demo model's file, which the status line calls "[demo
            model]").
        """
        choice = getattr(self, "model_choice", None)
        note, self._reloaded_note = self._reloaded_note, None
        if choice is None or not choice.is_file:
            return lead, ""
        if note is not None and note[0] == choice.key:
            lead = f"{note[1]} {lead}".strip()
        name = Path(choice.key).name
        if choice.demo_weights == "copy":  # the file picked, holding the demo's weights (it
            return lead, f" [model {name}: the demo model's weights]"  # said "[demo model]")
        demo = getattr(self, "using_demo", False)  # the bundled file: "[demo model]" says it
        return lead, "" if demo else f" [model {name}]"
