"""A resumed run whose checkpoint is gone: it is written again from the training state when the
run continues. With ``save="best"`` the state keeps the best epoch's weights (by validation
IoU; in a run without validation images by training IoU, kept since session 42); with
``save="last"`` the weights of the last completed epoch are the trainer's own when the run
stopped at the end of an epoch, and are kept nowhere when it stopped inside one (the
checkpoint is then written at the end of that epoch, and a note says so).

Without this, a run whose ``FILE.pt`` was deleted (or lost) between pieces wrote it again
only when a later epoch beat the best one: when none did, the command ended with "wrote
FILE.pt: the weights of epoch 1" and no FILE.pt on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .checkpoint import save_checkpoint

__all__ = ["restore_missing_checkpoint"]

#: How the notes below begin.
_GONE = "{out} was not there (deleted since an earlier piece of this run wrote it): "


def restore_missing_checkpoint(trainer, loop, out, meta: dict[str, Any],
                               save: str = "best") -> str | None:
    """Write ``out`` again when an earlier piece wrote it and it is no longer there, with the
    metadata that epoch's save wrote: with ``save="best"`` from ``loop.best_state`` (the
    weights of the best epoch so far, kept in the training state; the trainer's current
    weights are put back, so the run goes on as before), with ``save="last"`` from the
    trainer's weights when they are those of the last completed epoch (the run stopped at the
    end of it), or from ``loop.best_state`` when that epoch was the best. Returns a note saying what was done (also that nothing could be: ``"last"``
    stopped inside an epoch, or no best weights kept by a state of an older version), or None
    (nothing missing).

    Parameters
    ----------
    trainer : napari_sam.training.trainer.Trainer
        The resumed trainer (its model's weights are the last step's).
    loop : object
        The resumed loop of :mod:`napari_sam.training.run` (``saved``, ``best``,
        ``best_state``, ``history``, ``base``, ``epoch``).
    out : str or os.PathLike or None
        The checkpoint path this call was given.
    meta : dict
        The run's checkpoint metadata without the per-epoch entries.
    save : {"best", "last"}
        Which epoch's weights the run's checkpoint holds.
    """
    if loop.saved is None or out is None or Path(out).exists() or not loop.history:
        return None
    # the epoch whose save wrote out: its score is the validation IoU, or the training IoU
    # in a run without validation images
    rec = next((r for r in loop.history if r.get("val_iou", r.get("train_iou")) == loop.best),
               None)
    best = rec if loop.best_state is not None else None  # None: no best weights kept
    if save == "last":
        return _restore_last(trainer, loop, out, meta, best)
    if best is None:
        return _restore_unkept(trainer, loop, out, meta, rec)
    _save_from_best(trainer, loop, out, meta, best)
    return (_GONE.format(out=out) + "wrote it again from the training state, the weights of "
            f"epoch {best['epoch']} (the best so far)")


def _restore_unkept(trainer, loop, out, meta: dict[str, Any], rec) -> str | None:
    """:func:`restore_missing_checkpoint` with ``save="best"`` where the state keeps no best
    weights (one written before runs without validation images kept them): the trainer's when
    it stopped at the end of that epoch, else a note that it cannot be written now."""
    if rec is None:
        return None
    if rec is loop.history[-1] and trainer.step_count == rec["steps"]:
        _save_epoch(trainer, loop, out, meta, rec)
        return (_GONE.format(out=out) + "wrote it again from the training state, the weights "
                f"of epoch {rec['epoch']} (the best so far)")
    return (_GONE.format(out=out) + f"not written again now: the training state (of an older "
            f"version) keeps no weights of epoch {rec['epoch']}; it is written when a later "
            "epoch beats it, or train again with --overwrite")


def _restore_last(trainer, loop, out, meta: dict[str, Any], best) -> str:
    """:func:`restore_missing_checkpoint` of a run that saves every epoch's weights: the
    trainer's when it stopped at the end of the last completed epoch, the best epoch's kept
    in the state when that is the last completed; else none."""
    last = loop.history[-1]
    if trainer.step_count == last["steps"]:  # stopped at the end of the epoch
        _save_epoch(trainer, loop, out, meta, last)
    elif best is last:
        _save_from_best(trainer, loop, out, meta, best)
    else:  # stopped inside the next epoch: that epoch's weights are kept nowhere
        return (_GONE.format(out=out) + f"not written again now: the training state holds the "
                f"weights of step {trainer.step_count}, inside epoch {loop.epoch}, not those "
                f"of epoch {last['epoch']} (the last completed); it is written at the end of "
                f"epoch {loop.epoch}")
    return (_GONE.format(out=out) + "wrote it again from the training state, the weights of "
            f"epoch {last['epoch']} (the last completed)")


def _save_from_best(trainer, loop, out, meta: dict[str, Any], best: dict[str, Any]) -> None:
    """:func:`_save_epoch` of ``loop.best_state``; the trainer's weights are put back."""
    current = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    trainer.model.load_state_dict(loop.best_state)
    try:
        _save_epoch(trainer, loop, out, meta, best)
    finally:
        trainer.model.load_state_dict(current)


def _save_epoch(trainer, loop, out, meta: dict[str, Any], rec: dict[str, Any]) -> None:
    """Save the trainer's weights to ``out`` as the epoch ``rec`` of ``loop.history`` did."""
    save_checkpoint(trainer.model, out, {
        **meta, "epochs_done": rec["epoch"], "steps": rec["steps"],
        "metrics": loop.history[:loop.history.index(rec) + 1],
        "best_epoch": rec["epoch"], "interrupted": False,
        **({"base_validation": loop.base} if loop.base is not None else {})})
