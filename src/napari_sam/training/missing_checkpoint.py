"""A resumed run whose checkpoint is gone: the training state keeps the best epoch's weights,
so the checkpoint an earlier piece wrote is written again from them when the run continues.

Without this, a run whose ``FILE.pt`` was deleted (or lost) between pieces wrote it again
only when a later epoch beat the best one: when none did, the command ended with "wrote
FILE.pt: the weights of epoch 1" and no FILE.pt on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .checkpoint import save_checkpoint

__all__ = ["restore_missing_checkpoint"]


def restore_missing_checkpoint(trainer, loop, out, meta: dict[str, Any]) -> str | None:
    """Write ``out`` again from ``loop.best_state`` (the weights of the best epoch so far, kept
    in the training state) when an earlier piece wrote it and it is no longer there, with the
    metadata that epoch's save wrote; the trainer's current weights are put back, so the run
    goes on as before. Returns a note saying so, or None (nothing missing, or no best weights
    kept: a run without validation images).

    Parameters
    ----------
    trainer : napari_sam.training.trainer.Trainer
        The resumed trainer (its model's weights are the last step's).
    loop : object
        The resumed loop of :mod:`napari_sam.training.run` (``saved``, ``best``,
        ``best_state``, ``history``, ``base``).
    out : str or os.PathLike or None
        The checkpoint path this call was given.
    meta : dict
        The run's checkpoint metadata without the per-epoch entries.
    """
    if loop.saved is None or out is None or loop.best_state is None or Path(out).exists():
        return None
    best = next((r for r in loop.history if r.get("val_iou") == loop.best), None)
    if best is None:
        return None
    current = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    trainer.model.load_state_dict(loop.best_state)
    try:
        save_checkpoint(trainer.model, out, {
            **meta, "epochs_done": best["epoch"], "steps": best["steps"],
            "metrics": loop.history[:loop.history.index(best) + 1],
            "best_epoch": best["epoch"], "interrupted": False,
            **({"base_validation": loop.base} if loop.base is not None else {})})
    finally:
        trainer.model.load_state_dict(current)
    return (f"{out} was not there (deleted since an earlier piece of this run wrote it): "
            f"wrote it again from the training state, the weights of epoch {best['epoch']} "
            "(the best so far)")
