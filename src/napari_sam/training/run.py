"""A training run: :func:`train` (files or arrays in, checkpoint out) and the epoch loop
:func:`run_training` it shares with scripts, with resume from a training state.

A resumable run (``resume=True``) writes its training state (see
:mod:`napari_sam.training.checkpoint`) beside the checkpoint after every epoch and whenever
it stops early (``max_steps``, ``time_limit``, SIGTERM, Ctrl-C between steps); the same call
with ``resume=True`` continues from it, so one schedule can run in pieces and end where one
uninterrupted run ends (same data order, same steps, same random draws).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_sam.device import resolve_device
from napari_sam.words import counted

from .checkpoint import (
    load_training_state,
    save_checkpoint,
    save_training_state,
    training_state_path,
)
from .config import TrainConfig
from .data import TrainItem, load_pairs, make_items, split_items
from .evaluation import evaluate
from .missing_checkpoint import restore_missing_checkpoint
from .out_checks import check_out, clear_before_run
from .output_lock import holding_output
from .trainer import Trainer, position_aware_init
from .validation import data_notes, no_objects_note, validation_fields, validation_words

__all__ = ["ModelLoadError", "ScheduleMismatchError", "TrainResult", "run_training", "train"]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    model : Sam
        The trained model: with a validation split and ``save="best"``, the best epoch's (by
        validation IoU; by training IoU when the validation items hold no object), else the
        last epoch's.
    path : Path or None
        The checkpoint written (None when nothing was saved).
    history : list of dict
        Per epoch: "epoch", "steps", "loss", "train_iou_first", "train_iou", "seconds"; with
        a validation split also "val_objects" and, when it is not 0, "val_point_iou",
        "val_box_iou", "val_iou" ("val_gain_se" over the base model's objects,
        "val_on_training_data" when validation ran on the one training item).
    interrupted : bool
        True when training stopped on Ctrl-C (the checkpoint is the last good one; a
        resumable run stops after the step in progress and saves its state, a second
        Ctrl-C stops at once).
    complete : bool
        False when a resumable run stopped before the end of its schedule (``max_steps``,
        ``time_limit`` or SIGTERM); ``resume=True`` continues it.
    already_complete : bool
        True when a resumed run found its schedule already complete: this call trained
        nothing and wrote nothing (``path`` is the checkpoint an earlier call wrote).
    epochs_done_now : int
        Epochs this call finished (0 for a piece of a resumable run that stopped inside an
        epoch: it wrote only the training state; ``path`` is then an earlier call's).
    base : dict or None
        The base model's validation before training ("val_iou", "val_point_iou",
        "val_box_iou", "val_objects"); None without validation items.
    state_saved : bool
        Whether this call wrote the training state of a resumable run when it stopped
        (False: a state on disk is an earlier call's, or the run stopped during a step).
    earlier : tuple of (float, int)
        Seconds the earlier calls of a resumed run trained, and how many calls (0, 0).
    """

    model: Any
    path: Path | None
    history: list[dict[str, Any]]
    interrupted: bool = False
    complete: bool = True
    already_complete: bool = False
    epochs_done_now: int = 0
    base: dict[str, Any] | None = None
    state_saved: bool = False
    earlier: tuple[float, int] = (0.0, 0)

    def __repr__(self) -> str:  # one line, not the model nor the history (a notebook cell)
        n = len(self.history)
        parts = [counted(n, "epoch")]
        ious = [h["val_iou"] for h in self.history if h.get("val_iou") is not None]
        if ious:
            base = (self.base or {}).get("val_iou")
            parts.append(f"best val_iou {max(ious):.3f}"
                         + (f" (base {base:.3f})" if base is not None else ""))
        parts.append("nothing saved" if self.path is None else f"checkpoint {self.path}")
        if self.already_complete:
            parts.append("already complete: nothing trained now")
        elif self.interrupted:
            parts.append("interrupted")
        elif not self.complete:
            parts.append("stopped before the end of the schedule (resume=True continues)")
        return f"TrainResult({', '.join(parts)})"


class ScheduleMismatchError(ValueError):
    """A resume whose schedule (options, data) is not the one its training state was
    written with; the message names each difference."""


class ModelLoadError(ValueError):
    """The model to train from cannot be loaded (not a checkpoint, another family, ...);
    raised before any training."""


def _resolve_model(model, device, on_note=None):
    """The model to train and its name; what loading it said (its ``load_notes``, e.g. a
    FILE.json beside it that is another checkpoint's, not used) goes to ``on_note`` (without
    one, :func:`load_model` has logged it)."""
    from napari_sam.models.build import SamConfig, build_sam
    from napari_sam.models.sam import Sam

    if isinstance(model, Sam):
        return model, getattr(model, "model_id", "model")
    if isinstance(model, (SamConfig, dict)):
        cfg = model if isinstance(model, SamConfig) else SamConfig.from_dict(model)
        sam = build_sam(cfg)
        position_aware_init(sam)
        return sam, "scratch"
    from napari_sam.models.registry import load_model, require_family

    if getattr(model, "family", None) == "sam2":
        require_family(model, "sam1", "training (napari_sam.train)")
    m = load_model(model if not isinstance(model, str) or not os.path.isfile(model)
                   else Path(model), device="cpu")
    for note in getattr(m, "load_notes", ()) if on_note is not None else ():
        on_note(note)
    return require_family(m, "sam1", "training (napari_sam.train)"), str(model)



def train(
    images,
    labels,
    model="demo",
    out: str | os.PathLike | None = "my_model.pt",
    *,
    epochs: int = 10,
    lr: float = 1e-4,
    batch_size: int = 2,
    objects_per_image: int = 8,
    n_corrections: int = 3,
    freeze_encoder: bool = False,
    val_fraction: float = 0.2,
    seed: int = 0,
    device="auto",
    precision: str = "auto",
    steps_per_epoch: int | None = None,
    max_val_objects: int | None = 200,
    progress: bool = True,
    save: str = "best",
    config: TrainConfig | None = None,
    callback: Callable[[int, dict], None] | None = None,
    data_description: str | None = None,
    resume: bool = False,
    max_steps: int | None = None,
    time_limit: float | None = None,
    on_note: Callable[[str], None] | None = None,
    on_resume: Callable[[Path], None] | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train or finetune a SAM-family model on images with instance labels.

    Parameters
    ----------
    images, labels : path, glob, numpy array, or a list of them
        Two glob patterns are paired by name (``img.tif`` with ``img_labels.tif`` or
        ``ground_truth/img.tif``; :func:`napari_sam.training.data.label_order`), else in
        sorted order; lists in their order. 2D images (Y, X) / (Y, X, 3|4) with (Y, X) labels, or
        stacks (Z, Y, X[, C]) with (Z, Y, X) labels, used slice by slice. Labels are integer
        instance ids, 0 = background. Every check (shapes, dtypes, empty labels, unreadable
        files) runs before training starts and raises ``ValueError``.
    model : str, path, Sam, or SamConfig
        Registry name ("demo", "vit_b", ...), a checkpoint path, a loaded model (trained in
        place), or a :class:`~napari_sam.models.build.SamConfig` to train from scratch.
    out : path or None
        Checkpoint to write (SAM state_dict layout) plus its checkpoint metadata (``.json``).
        Written atomically after each epoch whose validation IoU is the best so far
        (``save="best"``) or after every epoch (``save="last"``). None saves nothing. An
        existing file is replaced only with ``overwrite=True`` (or continued with
        ``resume=True``), as ``napari-sam train`` does.
    epochs, lr, batch_size, objects_per_image, n_corrections, freeze_encoder
        See :class:`TrainConfig`; ``batch_size`` is images per step.
    val_fraction : float
        Held-out share of the images (whole files when several are given).
    seed : int
        Seeds the split, the prompts, augmentation and torch.
    device : "auto", "cpu", "cuda", ...
    precision : {"auto", "fp32", "bf16", "fp16"}
    steps_per_epoch : int, optional
        Default: one pass over the training images.
    max_val_objects : int or None
        Cap on validation objects (speed), at least 1 (``val_fraction=0`` for none).
    progress : bool
        tqdm progress bar.
    save : {"best", "last"}
    config : TrainConfig, optional
        Full control; the keyword arguments above override its fields.
    callback : callable(step, info), optional
        Called after every step (e.g. for logging); may raise KeyboardInterrupt to stop.
    data_description : str, optional
        Recorded in the checkpoint metadata (default: the file names / array count).
    resume : bool
        Make the run resumable: write the training state ``<out stem>.train-state.pt``
        beside ``out`` after every epoch and when the run stops early, and continue from
        that file when it exists (a run whose schedule is complete returns at once). The
        schedule (epochs, steps per epoch, batch size, seed, data, :class:`TrainConfig`)
        must be the one the state was written with (else :class:`ScheduleMismatchError`, a
        ValueError naming the differences). Needs ``out``.
    max_steps : int, optional
        Stop this call after this many training steps (the state is saved; ``resume=True``
        continues). Needs ``resume``.
    time_limit : float, optional
        Stop this call after the step during which this many seconds have passed (the state
        is saved). Needs ``resume``.
    on_note : callable(str), optional
        Receives what the user should know about the data before training starts (an image
        left out because none of its objects is large enough at the model input; validation
        on the training data when only one item is usable; validation items that hold no
        object, the best epoch then chosen by training IoU), and what loading ``model`` said
        (its ``load_notes``: a metadata file beside it not used, or missing). Default: a
        logging warning.
    on_resume : callable(Path), optional
        With ``resume``: called with the training state's path when this call continues the
        run saved there (its schedule and data match and epochs are left), before the first
        step; not when there is no state, when it is refused (:class:`ScheduleMismatchError`)
        or when its schedule is already complete.
    overwrite : bool
        Replace an existing ``out`` and a ``<out stem>.json`` beside it that no training run
        wrote (default: a FileExistsError before any work). Without ``resume`` this starts a
        new run: the training state of an earlier resumable run of ``out`` is removed once
        the data and model have loaded, so a later ``resume=True`` cannot continue that run.
        Beside such a state one of ``resume`` and ``overwrite`` is needed (without either, a
        FileExistsError names the state; with both, a ValueError: they contradict). With
        ``resume`` and no state, it replaces ``out`` with a new resumable run.

    Returns
    -------
    TrainResult

    A second call (or ``napari-sam train``) with the same ``out`` while one runs raises
    :class:`~napari_sam.training.output_lock.TrainingOutputBusy` before any work.

    Ctrl-C (KeyboardInterrupt) stops training cleanly: the checkpoint on disk is the last
    good one (never half-written) and the result has ``interrupted=True``. In a resumable
    run SIGTERM (e.g. ``timeout``) stops after the step in progress and saves the state.
    """
    _check_options(save, epochs, val_fraction, out, resume, overwrite, max_steps, time_limit,
                   max_val_objects)
    with holding_output(out):  # a second run of out is refused (TrainingOutputBusy)
        check_out(out, overwrite, resume)
        pairs = load_pairs(images, labels)  # all input checks first
        dev = resolve_device(device)
        try:
            sam, base = _resolve_model(model, dev, on_note)
        except (ValueError, OSError) as exc:
            raise ModelLoadError(str(exc)) from exc
        items = make_items(pairs, sam.img_size,
                           smoothing=float(getattr(sam, "input_smoothing", 0)))
        train_items, val_items = split_items(items, val_fraction, seed)
        for note in data_notes(pairs, items, val_items, sam.img_size):
            (on_note or logger.warning)(note)
        cfg = _run_config(config, lr=lr, batch_size=batch_size, precision=precision,
                          objects_per_image=objects_per_image, n_corrections=n_corrections,
                          freeze_encoder=freeze_encoder)
        spe = steps_per_epoch or max(1, math.ceil(len(train_items) / batch_size))
        trainer = Trainer(sam, cfg, device=dev, seed=seed, total_steps=spe * epochs)
        meta_base = _run_metadata(pairs, items, train_items, val_items, base, seed, cfg,
                                  data_description)
        clear_before_run(out, overwrite, resume)  # every check passed: the run goes on
        state_path = training_state_path(out) if resume else None
        state = load_training_state(state_path) if state_path and state_path.is_file() else None
        extra = {"model": str(Path(base).resolve()) if os.path.isfile(base) else base,
                 "seed": int(seed)}
        return run_training(
            trainer, train_items, val_items, epochs=epochs, steps_per_epoch=spe, out=out,
            meta=meta_base, max_val_objects=max_val_objects, progress=progress, save=save,
            callback=callback, time_limit=time_limit, state_path=state_path, resume_state=state,
            max_steps=max_steps, schedule_extra=extra, on_resume=on_resume, on_note=on_note)


def _check_options(save, epochs, val_fraction, out, resume, overwrite, max_steps, time_limit,
                   max_val_objects) -> None:
    """:func:`train`'s options that contradict or are out of range: a ValueError naming
    the option, before any work."""
    if save not in ("best", "last"):
        raise ValueError(f"save must be 'best' or 'last', got {save!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if isinstance(val_fraction, bool) or not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1) (the share of the images held out "
                         f"for validation; 0 holds none out, 1 would leave none to train on), "
                         f"got {val_fraction!r}")
    if max_val_objects is not None and (isinstance(max_val_objects, bool)
                                        or max_val_objects < 1):
        raise ValueError(f"max_val_objects must be at least 1 or None, got {max_val_objects!r}; "
                         "val_fraction=0 trains without validation")
    if resume and out is None:
        raise ValueError("resume needs out: the training state is written beside it")
    if out is not None and Path(out).is_dir():
        raise ValueError(f"out {out} is a folder; give the checkpoint file to write, e.g. "
                         f"{Path(out) / 'my_model.pt'}")
    if (max_steps is not None or time_limit is not None) and not resume:
        raise ValueError("max_steps and time_limit stop a resumable run: pass resume=True")
    if resume and overwrite and training_state_path(out).exists():
        raise ValueError(
            f"resume=True and overwrite=True contradict each other beside "
            f"{training_state_path(out)}: resume=True continues that run (with its options), "
            "overwrite=True trains from the start (it removes the state); pass one")


def _run_config(config: TrainConfig | None, **fields) -> TrainConfig:
    """A copy of ``config`` (default: ``TrainConfig()``) with ``fields`` set."""
    cfg = copy.deepcopy(config) if config is not None else TrainConfig()
    for name, value in fields.items():
        setattr(cfg, name, value)
    return cfg


def _run_metadata(pairs, items, train_items, val_items, base, seed, cfg, data_description
                  ) -> dict[str, Any]:
    """The record of a :func:`train` run written into the checkpoint metadata."""
    description = data_description or (
        f"{counted(len(pairs), 'image')}: " + ", ".join(p.name for p in pairs[:10])
        + (" ..." if len(pairs) > 10 else "")
    )
    return {
        "base_model": base,
        "data": {
            "description": description,
            "n_images": len(pairs),
            "n_train_items": len(train_items),
            "n_val_items": len(val_items),
            "n_objects": int(sum(len(it.ids) for it in items)),
        },
        "seed": seed,
        "train_config": cfg.to_dict(),
        "trained_by": "napari_sam.training.train",
    }


@dataclass
class _Loop:
    """Where the epoch loop stands; what a training state holds besides the trainer's."""

    epoch: int = 1  # the epoch in progress (1-based); epochs + 1 when the schedule is done
    step_in_epoch: int = 0  # steps of that epoch already taken
    order: list[int] | None = None  # item order of that epoch (list data), drawn at its start
    sums: dict[str, float] = field(default_factory=dict)
    count: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: float = -math.inf
    best_state: dict | None = None  # with validation, or in a resumable run (to restore it)
    keep_best: bool = False  # keep best_state without validation: the run is resumable
    saved: str | None = None
    stop: str | None = None  # why this call stops early ("max_steps", "time_limit", "SIGTERM",
    # "SIGINT": Ctrl-C in a resumable run)
    in_step: bool = False
    #: the base model's validation before the first step ("val_iou", "val_point_iou", ...)
    base: dict[str, Any] | None = None
    earlier: tuple[float, int] = (0.0, 0)  # seconds and calls of the earlier pieces
    t_start: float = field(default_factory=time.perf_counter)  # this call's

    def to_state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "order": self.order,
                "sums": dict(self.sums), "count": self.count, "history": self.history,
                "best": self.best, "best_state": self.best_state, "saved": self.saved,
                "base": self.base, "runs": self.earlier[1] + 1,
                "seconds": self.earlier[0] + time.perf_counter() - self.t_start}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _Loop:
        keys = ("epoch", "step_in_epoch", "order", "sums", "count", "history", "best",
                "best_state", "saved")
        return cls(**{k: state[k] for k in keys}, base=state.get("base"),
                   earlier=(float(state.get("seconds", 0.0)), int(state.get("runs", 0))))


def _epoch_order(rng: np.random.Generator, n_items: int, n_needed: int) -> list[int]:
    """Shuffled item indices, reshuffled passes appended until ``n_needed`` are there."""
    order = [int(i) for i in rng.permutation(n_items)]
    while len(order) < n_needed:
        order += [int(i) for i in rng.permutation(n_items)]
    return order


#: Schedule entries older training states lack: not compared when the saved state has none.
_LATER_KEYS = ("model", "seed")


def _schedule(trainer: Trainer, train_items, val_items, epochs: int, steps_per_epoch: int,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What must not change between the pieces of a resumed run, the data included (a
    fingerprint of every training and validation item, see :func:`_items_fingerprint`),
    plus ``extra`` (:func:`train`: the model started from and the seed)."""
    return {**(extra or {}), "epochs": int(epochs), "steps_per_epoch": int(steps_per_epoch),
            "train_config": trainer.cfg.to_dict(), "total_steps": int(trainer.total_steps),
            "n_train_items": None if callable(train_items) else len(train_items),
            "n_val_items": len(val_items),
            "data": {"training": _items_fingerprint(train_items),
                     "validation": _items_fingerprint(val_items)}}


def _items_fingerprint(items) -> list[list[str]] | None:
    """``[name, digest]`` per item, in order: the digest hashes the item's original image and
    labels (dtype, shape and pixels), so renamed or moved files with the same pixels match and
    edited ones do not. None for streamed items (a function), which have nothing to compare."""
    if callable(items):
        return None
    out = []
    for it in items:
        h = hashlib.blake2b(digest_size=16)
        for a in (it.image, it.labels):
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.data)
        out.append([str(it.name), h.hexdigest()])
    return out


def _resumed_loop(trainer: Trainer, resume_state, schedule: dict[str, Any], state_path,
                  out=None, meta=None, save: str = "best") -> _Loop:
    """A fresh loop, or (with a saved state) the trainer and loop where the state left them.
    The checkpoint an earlier piece saved is ``out`` as this call names it (the state keeps
    the path that piece was given: relative to its working folder, or in a folder moved since;
    the result and the command named that path, which did not exist)."""
    if resume_state is None:  # best weights kept in a resumable run: see missing_checkpoint
        return _Loop(keep_best=state_path is not None)
    _check_schedule(resume_state["schedule"], schedule, state_path)
    trainer.load_training_state(resume_state["trainer"])
    loop = _Loop.from_state(resume_state["loop"])
    loop.keep_best = state_path is not None
    if loop.saved is not None and out is not None:
        loop.saved = str(out)
        note = restore_missing_checkpoint(trainer, loop, out, meta or {}, save)
        if note:
            logger.warning(note)
    return loop


def _check_schedule(saved: dict[str, Any], now: dict[str, Any], path) -> None:
    """ScheduleMismatchError naming every difference (option, saved and given values; the
    data that changed) between a saved schedule and this run's."""
    differ = [k for k in sorted(now) if k not in ("data", "train_config")
              and (k in saved or k not in _LATER_KEYS) and saved.get(k) != now[k]]
    if "epochs" in differ or "steps_per_epoch" in differ:
        differ = [k for k in differ if k != "total_steps"]  # follows from those two
    s_data = saved.get("data") or {}  # older training states have no data fingerprint
    if s_data:  # the data differences below say more than the item counts
        differ = [k for k in differ if k not in ("n_train_items", "n_val_items")]
    parts = [f"{k} (saved {saved.get(k)!r}, given {now[k]!r})" for k in differ]
    s_cfg, n_cfg = saved.get("train_config") or {}, now["train_config"]
    parts += [f"{k} (saved {s_cfg.get(k)!r}, given {n_cfg.get(k)!r})"
              for k in sorted(set(s_cfg) | set(n_cfg)) if s_cfg.get(k) != n_cfg.get(k)]
    if "seed" in differ and _same_items(s_data, now["data"]):
        s_data = {}  # the seed draws the split: the same images, split otherwise
    for split in ("training", "validation"):
        change = _data_change(s_data.get(split), now["data"][split])
        if change:
            parts.append(f"the {split} images ({change})")
    if parts:
        raise ScheduleMismatchError(
            f"cannot resume from {path}: the run differs in {'; '.join(parts)}; resume with "
            "the same schedule and data, or delete the training state to start over")


def _same_items(saved: dict, now: dict) -> bool:
    """Whether two data fingerprints hold the same items, however they are split."""
    def digests(data):
        out = []
        for split in ("training", "validation"):
            if data.get(split) is None:
                return None
            out += [d for _, d in data[split]]
        return sorted(out)
    return digests(saved) is not None and digests(saved) == digests(now)


def _data_change(saved: list | None, now: list | None) -> str | None:
    """How the items of one split differ from the saved fingerprint, in words (None when
    they do not, or when either side has no fingerprint)."""
    if saved is None or now is None or [d for _, d in saved] == [d for _, d in now]:
        return None
    saved_digests, now_digests = {d for _, d in saved}, {d for _, d in now}
    gone = [n for n, d in saved if d not in now_digests]
    new = [n for n, d in now if d not in saved_digests]
    if not gone and not new:
        return "the same images in another order"
    if len(saved) == len(now) and len(gone) == len(new):
        detail = f"{len(new)} of {len(now)} changed"
    else:
        detail = f"saved {len(saved)}, given {len(now)}: {len(gone)} gone, {len(new)} new"
    return f"{detail}, e.g. {(new or gone)[0]}"


def _step_limit_reached(loop: _Loop, trainer: Trainer, first_step: int, max_steps, time_limit,
                        t_start: float, resumable: bool) -> bool:
    """Whether this call stops after the step just taken (sets ``loop.stop``)."""
    if max_steps is not None and trainer.step_count - first_step >= max_steps:
        loop.stop = "max_steps"
    elif time_limit is not None and time.perf_counter() - t_start > time_limit:
        loop.stop = "time_limit"
    return loop.stop is not None and (resumable or loop.stop != "time_limit")


def _run_epoch_steps(trainer, train_items, loop: _Loop, bar, callback, stop_check) -> None:
    """Take the remaining steps of the epoch in progress (from ``loop.step_in_epoch``)."""
    cfg = trainer.cfg
    for k in range(loop.step_in_epoch, bar.total):
        if callable(train_items):
            batch = train_items(trainer.rng, cfg.batch_size)
        else:
            batch = [train_items[j] for j in loop.order[k * cfg.batch_size:
                                                        (k + 1) * cfg.batch_size]]
        loop.in_step = True
        info = trainer.train_step(batch)
        loop.in_step = False
        loop.step_in_epoch = k + 1
        bar.update(1)
        if info:
            loop.count += 1
            for key in ("loss", "iou_first", "iou_last"):
                loop.sums[key] = loop.sums.get(key, 0.0) + info[key]
            bar.set_postfix(loss=f"{info['loss']:.3f}", iou=f"{info['iou_last']:.3f}")
            if callback is not None:
                callback(trainer.step_count, info)
            if stop_check():
                return
        if loop.stop in ("SIGTERM", "SIGINT"):
            return


def _finish_epoch(trainer, loop: _Loop, epoch: int, epochs: int, val_items, *, t0, out, meta,
                  max_val_objects, progress, save) -> None:
    """Validate, record the epoch in the history, log it and save the checkpoint."""
    from tqdm.auto import tqdm

    count = loop.count
    rec: dict[str, Any] = {
        "epoch": epoch,
        "steps": trainer.step_count,
        "loss": loop.sums.get("loss", float("nan")) / max(count, 1),
        "train_iou_first": loop.sums.get("iou_first", float("nan")) / max(count, 1),
        "train_iou": loop.sums.get("iou_last", float("nan")) / max(count, 1),
    }
    shared = bool(val_items) and bool(val_items[0].meta.get("shared"))
    if val_items:
        ev = evaluate(trainer.model, val_items, device=trainer.device,
                      max_objects=max_val_objects)
        rec.update(validation_fields(ev, loop.base, shared))
    rec["seconds"] = time.perf_counter() - t0
    loop.history.append(rec)
    msg = f"epoch {epoch}/{epochs}: loss {rec['loss']:.4f}, train IoU {rec['train_iou']:.3f}"
    if val_items:
        msg += validation_words(rec, shared)
    logger.info(msg)
    if progress:
        tqdm.write(msg)
    # the validation IoU, else (no validation, or none of its objects) the training IoU;
    # an epoch without a number is the best only while no epoch had one (never nan > best)
    score = rec.get("val_iou", rec["train_iou"])
    improved = score > loop.best if not math.isnan(score) else loop.best == -math.inf
    if improved:
        loop.best = score if not math.isnan(score) else loop.best
        if val_items or loop.keep_best:
            loop.best_state = {k: v.detach().clone().cpu()
                               for k, v in trainer.model.state_dict().items()}
    if out is not None and (save == "last" or improved):
        loop.saved = str(save_checkpoint(
            trainer.model, out,
            {**meta, "epochs_done": epoch, "steps": trainer.step_count,
             "metrics": loop.history, "best_epoch": epoch, "interrupted": False,
             **({"base_validation": loop.base} if loop.base is not None else {})},
        ))


def _finish_epoch_or_undo(trainer, loop: _Loop, *args, **kwargs) -> None:
    """:func:`_finish_epoch`, undone in ``loop`` when Ctrl-C stops it (during the validation
    or the checkpoint's save): the epoch is then not recorded and not the best, so the state
    saved when the run stops finishes it again on resume (was: a second Ctrl-C during the
    save left it in the history and as the best, and the resumed run recorded it twice and
    did not write its weights)."""
    kept = (len(loop.history), loop.best, loop.best_state, loop.saved)
    try:
        _finish_epoch(trainer, loop, *args, **kwargs)
    except KeyboardInterrupt:
        del loop.history[kept[0]:]
        loop.best, loop.best_state, loop.saved = kept[1:]
        raise


def _validate_base(trainer, loop: _Loop, val_items, max_val_objects, progress,
                   on_note=None, save: str = "best") -> None:
    """Before the first step: the base model's IoU on the validation items (what each epoch
    is compared with: a finetune can make a model worse on the user's own images), logged
    and kept in ``loop.base`` (and the checkpoint metadata's ``base_validation``). When the
    validation items hold no object, :func:`no_objects_note` goes to ``on_note`` (default: a
    logged warning) and there is no base."""
    from tqdm.auto import tqdm

    if loop.base is not None or loop.history or loop.step_in_epoch or not val_items:
        return
    ev = evaluate(trainer.model, val_items, device=trainer.device, max_objects=max_val_objects)
    if not ev["n_objects"]:
        (on_note or logger.warning)(no_objects_note(val_items, save))
        return
    loop.base = {"val_iou": ev["val_iou"], "val_point_iou": ev["point_iou"],
                 "val_box_iou": ev["box_iou"], "val_objects": ev["n_objects"],
                 "val_object_ious": [round(float(v), 5) for v in ev["object_ious"]]}
    msg = (f"before training, the base model: val IoU {ev['val_iou']:.3f} (point "
           f"{ev['point_iou']:.3f}, box {ev['box_iou']:.3f})")
    logger.info(msg)
    if progress:
        tqdm.write(msg)


def _say_interrupted(saved: str | None, progress: bool) -> None:
    """Say once (above the progress bar, else as a logged warning) that training stopped
    on Ctrl-C, and which checkpoint is the last good one."""
    from tqdm.auto import tqdm

    msg = "training interrupted"
    msg += f"; the last good checkpoint is {saved}" if saved else "; no checkpoint was written"
    if progress:
        tqdm.write(msg)
    else:
        logger.warning(msg)


def _save_state(path, trainer: Trainer, loop: _Loop, schedule: dict[str, Any]) -> None:
    save_training_state(path, {"schedule": schedule, "trainer": trainer.training_state(),
                               "loop": loop.to_state(),
                               "complete": loop.epoch > schedule["epochs"]})


def _on_sigterm(loop: _Loop, resumable: bool):
    """SIGTERM (e.g. from a job scheduler or ``timeout``): like Ctrl-C, or in a resumable
    run a stop after the step in progress."""
    def handler(signum, frame):  # pragma: no cover - signal handler
        if resumable:
            loop.stop = "SIGTERM"
            return
        raise KeyboardInterrupt
    return handler


def _on_sigint(loop: _Loop):
    """Ctrl-C in a resumable run: stop after the step in progress (its state is then saved:
    a step takes seconds on a CPU, and Ctrl-C nearly always came during one, so the steps
    since the last save were lost); a second Ctrl-C stops at once."""
    def handler(signum, frame):  # pragma: no cover - signal handler
        if loop.stop == "SIGINT":
            raise KeyboardInterrupt
        loop.stop = "SIGINT"
        print("\nCtrl-C: stopping after the step in progress, then saving the training state "
              "(Ctrl-C again stops at once, losing that step)", file=sys.stderr, flush=True)
    return handler


def _install_signals(loop: _Loop, resumable: bool):
    """Install :func:`_on_sigterm`'s handler, and in a resumable run :func:`_on_sigint`'s,
    but not over a signal that is ignored (``trap '' TERM``; ``cmd &`` for SIGINT); the
    previous handlers (None outside the main thread, where nothing is installed)."""
    try:
        old = [] if signal.getsignal(signal.SIGTERM) is signal.SIG_IGN else [
            (signal.SIGTERM, signal.signal(signal.SIGTERM, _on_sigterm(loop, resumable)))]
        if resumable and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # `cmd &`
            old.append((signal.SIGINT, signal.signal(signal.SIGINT, _on_sigint(loop))))
        return old
    except ValueError:  # not the main thread
        return None


def run_training(
    trainer: Trainer,
    train_items: Sequence[TrainItem] | Callable[[np.random.Generator, int], list[TrainItem]],
    val_items: Sequence[TrainItem],
    *,
    epochs: int,
    steps_per_epoch: int,
    out,
    meta: dict[str, Any],
    max_val_objects: int | None = 200,
    progress: bool = True,
    save: str = "best",
    callback=None,
    time_limit: float | None = None,
    state_path: str | os.PathLike | None = None,
    resume_state: dict[str, Any] | None = None,
    max_steps: int | None = None,
    schedule_extra: dict[str, Any] | None = None,
    on_resume: Callable[[Path | None], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> TrainResult:
    """The epoch loop shared by :func:`train` and scripts.

    ``train_items`` is a list (shuffled each epoch) or a function ``(rng, batch_size) ->
    items`` that draws a batch (for streamed synthetic data). ``time_limit`` (seconds) ends
    training early after the epoch in which it is reached (the final validation still runs).

    With ``state_path`` the run is resumable: the training state is written there after
    every epoch and when the run stops early; ``time_limit`` and ``max_steps`` (steps of
    this call) then stop after the step in progress without finishing the epoch, and so
    does SIGTERM. ``resume_state`` (from
    :func:`~napari_sam.training.checkpoint.load_training_state`) continues such a run; one
    written for another schedule or other data raises :class:`ScheduleMismatchError`;
    ``schedule_extra`` (JSON-ready) is compared with the rest of the schedule; ``on_resume``
    is called with ``state_path`` (a Path, None without one) once such a run is continued
    (not when it is complete). Validation items without an object to measure are said to
    ``on_note`` (default: a logged warning): the best epoch is then the training IoU's.
    """
    from tqdm.auto import tqdm

    resumable = state_path is not None
    schedule = (_schedule(trainer, train_items, val_items, epochs, steps_per_epoch,
                          schedule_extra) if resumable or resume_state is not None else None)
    loop = _resumed_loop(trainer, resume_state, schedule, state_path, out, meta, save)
    epochs_before, out = len(loop.history), Path(out) if out is not None else None
    already_complete = resume_state is not None and loop.epoch > epochs
    if resume_state is not None and not already_complete and on_resume:  # it continues
        on_resume(None if state_path is None else Path(state_path))
    interrupted, t_start, first_step = False, time.perf_counter(), trainer.step_count
    old_handlers = _install_signals(loop, resumable)
    stop_check = functools.partial(_step_limit_reached, loop, trainer, first_step, max_steps,
                                   time_limit, t_start, resumable)
    try:
        _validate_base(trainer, loop, val_items, max_val_objects, progress, on_note, save)
        while loop.epoch <= epochs and loop.stop is None:
            epoch, t0 = loop.epoch, time.perf_counter()
            if loop.step_in_epoch == 0:
                loop.sums, loop.count = {}, 0
                if not callable(train_items):
                    loop.order = _epoch_order(trainer.rng, len(train_items),
                                              steps_per_epoch * trainer.cfg.batch_size)
            bar = tqdm(total=steps_per_epoch, initial=loop.step_in_epoch,
                       desc=f"epoch {epoch}/{epochs}", disable=not progress, leave=False)
            _run_epoch_steps(trainer, train_items, loop, bar, callback, stop_check)
            bar.close()
            if resumable and loop.stop is not None and loop.step_in_epoch < steps_per_epoch:
                break  # stopped inside the epoch: the state below continues it
            _finish_epoch_or_undo(trainer, loop, epoch, epochs, val_items, t0=t0, out=out, meta=meta,
                                  max_val_objects=max_val_objects, progress=progress, save=save)
            loop.epoch, loop.step_in_epoch, loop.order = epoch + 1, 0, None
            if resumable:
                _save_state(state_path, trainer, loop, schedule)
    except KeyboardInterrupt:
        interrupted = True
        _say_interrupted(loop.saved, progress)
    finally:
        for signum, handler in old_handlers or ():
            if handler is not None:  # None: a handler not set from Python, left as it is
                signal.signal(signum, handler)
    interrupted = interrupted or (loop.stop == "SIGINT" and loop.epoch <= epochs)
    state_saved = False
    if resumable and not loop.in_step and (loop.stop is not None or interrupted):
        _save_state(state_path, trainer, loop, schedule)
        state_saved = True
        if loop.stop is not None:
            logger.info("stopped (%s) after step %d; resume continues from %s", loop.stop,
                        trainer.step_count, state_path)
    if loop.best_state is not None and save == "best" and val_items:
        trainer.model.load_state_dict(loop.best_state)
    trainer.model.eval()
    return TrainResult(model=trainer.model, path=Path(loop.saved) if loop.saved else None,
                       history=loop.history, interrupted=interrupted, base=loop.base,
                       complete=loop.epoch > epochs, already_complete=already_complete,
                       epochs_done_now=len(loop.history) - epochs_before,
                       state_saved=state_saved, earlier=loop.earlier)
