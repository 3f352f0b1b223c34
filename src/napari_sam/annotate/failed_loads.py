"""A checkpoint file picked in *Model* that fails to load (a training state, a file of
another format, weights of an unknown architecture): the session goes back to the model
chosen before it, since every click would fail the same way (a mixin of
:class:`~napari_sam.annotate.annotation_session.AnnotationSession`)."""

from __future__ import annotations

__all__ = ["FailedLoads"]


class FailedLoads:
    """What follows a job that failed while loading a checkpoint file."""

    #: the model chosen before the current one (None: none, or the same)
    previous_model_choice = None

    def failed_load_note(self, job) -> str:
        """Main thread, ``job`` failed: when it failed loading the checkpoint file chosen
        now, choose the model chosen before it again and return what to say after the
        failure (" The model in use is 'demo' again: ..."); "" otherwise (a download that
        failed keeps its choice: the file put in place by hand is found at the next click)."""
        choice, before = self.model_choice, self.previous_model_choice
        if (choice is None or not choice.is_file or before is None
                or not job.phase.startswith("loading the model")
                or job.key is None or job.key[1][0] != choice):
            return ""
        self.set_model(before)
        return (f" The model in use is '{before.key}' again: pick another checkpoint file "
                "('Checkpoint file...' in 'Model').")
