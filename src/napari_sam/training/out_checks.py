"""Checks before a training run writes its model: an existing checkpoint, a resumable run's
state, or a file no training run wrote at the output path (:func:`check_out`); once they
pass, what killed saves left is cleared (:func:`clear_before_run`). Used by
:func:`napari_sam.training.train`."""

from __future__ import annotations

from pathlib import Path

from .checkpoint import (
    finish_interrupted_save,
    not_ours_problem,
    remove_dead_temporaries,
    training_state_path,
)

__all__ = ["check_out", "clear_before_run"]


def _check_metadata_file(out) -> None:
    """FileExistsError when the checkpoint metadata ``out``'s training would write
    (``model.json`` beside ``model.pt``) is a file that no training run wrote."""
    from .checkpoint import checkpoint_metadata_path, is_training_metadata

    meta = None if out is None else checkpoint_metadata_path(out)
    if meta is not None and meta.exists() and not is_training_metadata(meta):
        raise FileExistsError(
            f"{meta} exists and was not written by a training run; training {out} would "
            "replace it with the checkpoint's metadata: move it, give another out, or pass "
            "overwrite=True")


def _check_existing_out(out, resume: bool) -> None:
    """FileExistsError before any work when training into ``out`` would replace a model (an
    existing checkpoint, unless ``resume`` continues the run whose training state is beside
    it), would start afresh beside the training state of a resumable run (as
    ``napari-sam train`` refuses a rerun without ``--resume``) or would replace a metadata
    file no training run wrote (:func:`_check_metadata_file`)."""
    state = None if out is None else training_state_path(out)
    if state is not None and state.exists() and not resume:
        raise FileExistsError(
            f"{state} is the training state of a resumable run of {out}: pass resume=True to "
            "continue that run (with its options), or overwrite=True to train from the start "
            "(it removes the state)")
    if out is not None and Path(out).exists() and not resume:
        raise FileExistsError(
            f"{out} already exists (an earlier model?) and there is no training state beside "
            f"it ({training_state_path(out).name}) to resume; pass overwrite=True to replace "
            "it or give another out")
    if out is not None and Path(out).exists() and not training_state_path(out).exists():
        raise FileExistsError(
            f"{out} already exists and there is no training state beside it "
            f"({training_state_path(out).name}) to continue: resume=True would train it "
            "again from the start over it; pass overwrite=True for that, or give another out")
    _check_metadata_file(out)


def check_out(out, overwrite: bool, resume: bool) -> None:
    """FileExistsError before any work: an ``out`` (or its metadata) no training run wrote,
    never replaced, not even with ``overwrite``
    (:func:`~napari_sam.training.checkpoint.not_ours_problem`); without ``overwrite``, the
    checks of :func:`_check_existing_out`. First, a save of ``out`` that was stopped between
    its two renames is completed
    (:func:`~napari_sam.training.checkpoint.finish_interrupted_save`)."""
    if out is not None:
        finish_interrupted_save(out)
    if out is not None and not_ours_problem(out, "overwrite=True"):
        raise FileExistsError(not_ours_problem(out, "overwrite=True"))
    if not overwrite:
        _check_existing_out(out, resume)


def clear_before_run(out, overwrite: bool, resume: bool) -> None:
    """Once the checks of the arguments, inputs, model and ``out`` passed (a resumed run's
    schedule is compared later: its refusal comes after this, when only dead processes'
    leftovers are gone): remove the
    temporary files killed saves of ``out`` left
    (:func:`~napari_sam.training.checkpoint.remove_dead_temporaries`) and, for a new run
    (``overwrite`` without ``resume``), the training state of the old one (not its to
    resume)."""
    if out is None:
        return
    remove_dead_temporaries(out)
    if overwrite and not resume:
        training_state_path(out).unlink(missing_ok=True)
