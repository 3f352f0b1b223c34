"""A checkpoint file picked in *Model* that fails to load (a training state, a file of
another format, weights of an unknown architecture), or a registry model that cannot be
downloaded (offline): the session goes back to the model chosen before it, since every click
would fail the same way (a mixin of
:class:`~napari_sam.annotate.annotation_session.AnnotationSession`)."""

from __future__ import annotations

__all__ = ["FailedLoads"]


class FailedLoads:
    """What follows a job that failed while loading a checkpoint file."""

    #: the model chosen before the current one (None: none, or the same)
    previous_model_choice = None
    #: the model that loaded last (None: none yet)
    working_model_choice = None

    def fallback_choice(self, failed):
        """The model to go back to after ``failed`` failed to load: the one that loaded last,
        else the one chosen before if it is the demo model or a cached registry model (not
        another that may fail too: two models that cannot be downloaded took turns); None
        when there is none."""
        for choice in (self.working_model_choice, self.previous_model_choice):
            if choice is None or choice == failed:
                continue
            if choice is self.working_model_choice or choice.is_demo or (
                    choice.cached and not choice.is_file):
                return choice
        return None

    def failed_load_note(self, job, err: BaseException | None = None) -> str:
        """Main thread, ``job`` failed (with ``err``): when it failed loading the checkpoint
        file chosen now, or downloading the registry model chosen now (offline: every click
        would try again and fail the same way, the dock stuck on it), go back to the model of
        :meth:`fallback_choice` and return what to say after the failure (" The model in use
        is 'demo' again: ..."); "" otherwise."""
        from napari_sam.models.download import ModelDownloadError

        choice = self.model_choice
        before = self.fallback_choice(choice)
        download = isinstance(err, ModelDownloadError) and choice is not None and (
            not choice.is_file)
        if (choice is None or not (choice.is_file or download) or before is None
                or not job.phase.startswith("loading the model")
                or job.key is None or job.key[1][0] != choice):
            return ""
        self.set_model(before)
        if download:
            note = (f" The model in use is '{before.key}' again: pick '{choice.key}' in "
                    "'Model' once its file is in place.")
        else:
            note = (f" The model in use is '{before.key}' again: pick another checkpoint file "
                    "('Checkpoint file...' in 'Model').")
        if self.source is not None and self.image_shown() and any(
                self.current_z() in o.slices for o in self.objects()):
            note += " Press Shift+S to preview the prompts with it."
        return note
