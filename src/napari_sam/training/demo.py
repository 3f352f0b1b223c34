"""Train the bundled demo model from scratch on synthetic scenes (one command).

    python -m napari_sam.training.demo --out src/napari_sam/weights/demo.pt --minutes 45

The model is a member of our SAM family: the small residual CNN + FPN image encoder
(input 256 px, stride 8, 256 x 32 x 32 embeddings) with SAM's prompt encoder and mask decoder
(token MLP 512 wide). It is trained by :class:`napari_sam.training.Trainer`, the machinery of
:func:`napari_sam.train`, on a stream of synthetic images from every domain of
:mod:`napari_sam.synthetic` (fluorescent nuclei weighted most, plus membrane-stained cells,
EM organelles, X-ray, underwater RGB, and slices of 3D volumes), 8- and 16-bit, several image
sizes. A pool of preprocessed images is refreshed with a fresh image every step, so the model
rarely sees the same scene twice. Training seeds stay below 9000; seeds 9000-9999 are its
validation set; tests use seeds >= 10000.

Training is time-boxed (``--minutes``): the learning rate follows a warmup + cosine schedule
over the time budget, the validation IoU is measured every ``--eval-minutes`` and the best
model so far is written (atomically) to ``--out`` with its checkpoint metadata, so a usable
checkpoint exists early and Ctrl-C keeps the last good one.

``--resume`` makes the run resumable: the training state (weights, optimizer, step counter,
every random generator, the scene pool and the time spent) is written beside ``--out`` at
every validation and when the run stops (SIGTERM, e.g. from ``timeout``, or Ctrl-C between
steps), and the same command continues from it. The schedule follows the time spent, so a
run in pieces follows the same schedule over the same total time as a run in one go.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch

from napari_sam.device import resolve_device

from .checkpoint import (
    load_training_state,
    save_checkpoint,
    save_training_state,
    training_state_path,
)
from .config import TrainConfig
from .demo_data import (
    DOMAIN_WEIGHTS,
    TRAIN_SEED_END,
    VAL_SEEDS,
    SyntheticStream,
    validation_items,
    validation_volumes,
)
from .demo_quality import DEMO_LINES, check, nuclei_quality, report, validation_scores
from .losses import LossWeights
from .trainer import Trainer, position_aware_init

__all__ = ["DEMO_CONFIG", "DEMO_LINES", "DOMAIN_WEIGHTS", "TRAIN_SEED_END", "VAL_SEEDS",
           "SyntheticStream", "check", "main", "nuclei_quality", "phase", "report",
           "train_demo", "validation_items", "validation_volumes"]

logger = logging.getLogger(__name__)

#: Architecture of the demo model (see docs/models.md).
DEMO_CONFIG: dict[str, Any] = dict(
    encoder="cnn",
    img_size=256,
    cnn_widths=(32, 64, 128, 192),
    cnn_depths=(1, 2, 2, 2),
    cnn_fpn_dim=128,
    decoder_mlp_dim=512,
    name="demo",
)


def phase(done: float, *, n_corrections: int, balanced: float, warm_fraction: float,
          corrections_from: float | None = None) -> tuple[int, float]:
    """The demo recipe's schedule at ``done`` (fraction of the time budget spent, 0..1).

    Returns ``(correction rounds, weight of the class-balanced BCE)``: no correction clicks
    before ``corrections_from`` (``None``: ``warm_fraction``), so the first part of the time
    goes to cheap one-prompt steps; the balanced BCE falls linearly from ``balanced`` to 0
    over ``warm_fraction`` (see ``LossWeights.balanced``).
    """
    start = warm_fraction if corrections_from is None else corrections_from
    rounds = 0 if done < start else n_corrections
    fade = max(0.0, 1 - done / warm_fraction) if warm_fraction > 0 else 0.0
    return rounds, balanced * fade



class _DemoRun:
    """The time-boxed training loop of :func:`train_demo`: steps, periodic validation (each
    may save a better checkpoint), and the training state of a resumable run."""

    def __init__(self, trainer: Trainer, stream: SyntheticStream, *, out, budget: float,
                 eval_minutes: float, progress: bool, recipe: dict[str, Any],
                 state_path: Path | None, volumes, val, t_start: float) -> None:
        self.trainer, self.stream, self.out = trainer, stream, out
        self.budget, self.eval_minutes, self.progress = budget, eval_minutes, progress
        self.recipe, self.state_path = recipe, state_path
        self.val, self.volumes = val, volumes
        self.base_loss = trainer.cfg.loss
        self.history: list[dict[str, Any]] = []
        self.best = -math.inf
        self.sums: dict[str, float] = {}
        self.count = 0
        self.t_start = t_start
        self.last_eval = time.perf_counter()
        self.stop: str | None = None
        self.in_step = False

    def elapsed(self) -> float:
        return time.perf_counter() - self.t_start

    # ------------------------------------------------------------------ resume
    def state(self, complete: bool) -> dict[str, Any]:
        return {"schedule": self.recipe["schedule"], "trainer": self.trainer.training_state(),
                "stream": self.stream.state(), "complete": complete,
                "loop": {"history": self.history, "best": self.best, "sums": dict(self.sums),
                         "count": self.count, "elapsed": self.elapsed(),
                         "since_eval": time.perf_counter() - self.last_eval}}

    def restore(self, loop: dict[str, Any]) -> None:
        """Continue the bookkeeping of a saved run; the clock goes on from its time spent."""
        self.history, self.best = list(loop["history"]), float(loop["best"])
        self.sums, self.count = dict(loop["sums"]), int(loop["count"])
        self.t_start = time.perf_counter() - float(loop["elapsed"])
        self.last_eval = time.perf_counter() - float(loop["since_eval"])

    def save_state(self, complete: bool = False) -> None:
        if self.state_path is not None:
            save_training_state(self.state_path, self.state(complete))

    # ------------------------------------------------------------------ validation
    def checkpoint_metadata(self, final: bool) -> dict[str, Any]:
        r, trainer, stream = self.recipe, self.trainer, self.stream
        dev = trainer.device
        return {
            "trained_by": "napari_sam.training.demo",
            "command": "python -m napari_sam.training.demo " + " ".join(sys.argv[1:])
            if sys.argv and sys.argv[0].endswith("demo.py") else
            f"python -m napari_sam.training.demo --out {self.out} --minutes {r['minutes']}",
            "base_model": "scratch" if r["init"] is None else str(r["init"]),
            "data": {
                "description": "napari_sam.synthetic scenes, all domains, streamed",
                "domain_weights": {f"{d}_{n}d": w for (d, n), w in r["weights"].items()},
                "train_seeds": f"[0, {TRAIN_SEED_END})",
                "val_seeds": f"[{VAL_SEEDS[0]}, {VAL_SEEDS[1]})",
                "images_generated": stream.generated,
                "per_domain": dict(stream.counts),
            },
            "seed": r["seed"],
            "schedule": {"warm_fraction": r["warm_fraction"],
                         "corrections_from": r["corrections_from"],
                         "minutes": r["minutes"], "lr": r["lr"]},
            "train_config": trainer.cfg.to_dict(),
            "steps": trainer.step_count,
            "minutes": round(self.elapsed() / 60, 2),
            "machine": (torch.cuda.get_device_name(dev) if dev.type == "cuda" else
                        f"{platform.processor() or platform.machine()}, "
                        f"{torch.get_num_threads()} torch threads"),
            "device": str(dev),
            "batch_size": r["batch_size"],
            "metrics": self.history,
            "final": final,
        }

    def record(self, final: bool) -> None:
        """Validate, log, and save the checkpoint when the score is the best so far."""
        from tqdm.auto import tqdm

        trainer, sums, count = self.trainer, self.sums, self.count
        ev = validation_scores(trainer.model, self.val, self.volumes, device=trainer.device)
        rec = {
            "minutes": round(self.elapsed() / 60, 2),
            "steps": trainer.step_count,
            "images_generated": self.stream.generated,
            "loss": sums.get("loss", float("nan")) / max(count, 1),
            "train_iou_first": sums.get("iou_first", float("nan")) / max(count, 1),
            "train_iou": sums.get("iou_last", float("nan")) / max(count, 1),
            "train_iou_propagated": sums.get("iou_prop", float("nan")) / max(sums.get("n_prop", 0), 1),
            "lr": trainer.opt.param_groups[0]["lr"],
            **{k: round(float(v), 4) for k, v in ev.items()},
        }
        self.history.append(rec)
        self.sums, self.count = {}, 0
        msg = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items())
        (tqdm.write if self.progress else print)(msg)
        sys.stdout.flush()
        if ev["score"] > self.best:
            self.best = ev["score"]
            save_checkpoint(trainer.model, self.out, self.checkpoint_metadata(final))

    # ------------------------------------------------------------------ training
    def step(self, bar) -> None:
        """One training step at the recipe's phase of the time budget; refresh the pool."""
        r, trainer = self.recipe, self.trainer
        # first learn to segment from one prompt (cheap steps), then add corrections
        done = self.elapsed() / self.budget
        trainer.cfg.n_corrections, balanced = phase(
            done, n_corrections=r["n_corrections"], balanced=self.base_loss.balanced,
            warm_fraction=r["warm_fraction"], corrections_from=r["corrections_from"])
        trainer.cfg.loss = dataclasses.replace(self.base_loss, balanced=balanced)
        self.in_step = True
        info = trainer.train_step(self.stream.batch(trainer.rng, r["batch_size"]))
        self.stream.refresh(max(1, r["batch_size"] // 4))
        self.in_step = False
        if info:
            self.count += 1
            for k in ("loss", "iou_first", "iou_last"):
                self.sums[k] = self.sums.get(k, 0.0) + info[k]
            if not math.isnan(info.get("iou_propagated", math.nan)):
                self.sums["iou_prop"] = self.sums.get("iou_prop", 0.0) + info["iou_propagated"]
                self.sums["n_prop"] = self.sums.get("n_prop", 0.0) + 1
            bar.n = int(min(self.budget, self.elapsed()))
            bar.set_postfix(step=trainer.step_count, loss=f"{info['loss']:.3f}",
                            iou=f"{info['iou_last']:.3f}")

    def run(self) -> None:
        """Train until the budget is spent (then the final validation) or the run stops."""
        from tqdm.auto import tqdm

        interrupted = False
        bar = tqdm(total=int(self.budget), initial=int(min(self.budget, self.elapsed())),
                   unit="s", disable=not self.progress, desc="demo training")
        old_term = self._stop_on_sigterm()
        try:
            while self.elapsed() < self.budget and self.stop is None:
                self.step(bar)
                now = time.perf_counter()
                # the final evaluation follows at the end of the budget: none just before
                if now - self.last_eval > self.eval_minutes * 60 and \
                        self.budget - (now - self.t_start) > 30:
                    self.record(final=False)
                    self.last_eval = time.perf_counter()
                    self.save_state()
        except KeyboardInterrupt:
            interrupted = True
            (tqdm.write if self.progress else print)("interrupted: the last good checkpoint is kept")
        finally:
            self.stream.close()
            if old_term is not None:
                signal.signal(signal.SIGTERM, old_term)
        bar.close()
        if self.stop is not None or (interrupted and not self.in_step):
            self.save_state()
        elif not interrupted:
            self.record(final=True)
            self.save_state(complete=True)

    def _stop_on_sigterm(self):
        """In a resumable run SIGTERM (e.g. ``timeout``) stops after the step in progress."""
        if self.state_path is None:
            return None

        def handler(signum, frame):  # pragma: no cover - signal handler
            self.stop = "SIGTERM"

        try:
            return signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread
            return None


def train_demo(
    out: str | os.PathLike,
    *,
    minutes: float = 45.0,
    eval_minutes: float = 5.0,
    threads: int | None = None,
    seed: int = 0,
    lr: float = 2e-3,
    batch_size: int = 4,
    objects_per_image: int = 6,
    n_corrections: int = 2,
    correction_fraction: float = 1.0,
    pool_size: int = 160,
    precision: str = "bf16",
    init: str | os.PathLike | None = None,
    progress: bool = True,
    warm_fraction: float = 0.2,
    loss: LossWeights | None = None,
    box_noise: float = TrainConfig.box_noise,
    domain_weights: dict[tuple[str, int], float] | None = None,
    val_volumes: int = 2,
    device="cpu",
    workers: int = 0,
    propagation_hops: int = 2,
    corrections_from: float | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train the demo model for ``minutes`` of wall-clock time; returns the last metrics.

    ``warm_fraction`` of the time fades the class-balanced BCE out; correction clicks start
    after ``corrections_from`` of the time (default: ``warm_fraction``), see :func:`phase`.

    ``device`` is where the model trains ("cpu", "cuda", "auto"); ``workers`` processes make
    the synthetic scenes meanwhile (0: the training process makes one per step).

    ``resume`` makes the run resumable (see the module docstring): the training state is
    written to ``<out stem>.train-state.pt`` and, when that file exists, the run continues
    from it; the recipe's arguments must be the ones it was written with (``device``,
    ``workers``, ``threads``, ``eval_minutes`` and ``progress`` may change).
    """
    if corrections_from is None:
        corrections_from = warm_fraction
    if not 0 <= corrections_from <= 1:
        raise ValueError(f"corrections_from must be in [0, 1], got {corrections_from}")
    t_start = time.perf_counter()
    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    model = _demo_model(init, seed)
    cfg = TrainConfig(
        lr=lr, weight_decay=0.05, warmup_steps=40, min_lr_ratio=0.02, batch_size=batch_size,
        objects_per_image=objects_per_image, n_corrections=n_corrections,
        correction_fraction=correction_fraction, p_box=0.4,
        p_farthest=0.5, p_drop_mask=0.1, point_interior_bias=0.5, precision=precision,
        grad_clip=1.0, loss_resolution="low", loss=loss or LossWeights(), box_noise=box_noise,
        propagation=propagation_hops > 0, propagation_hops=max(1, propagation_hops),
    )
    trainer = Trainer(model, cfg, device=device, seed=seed)
    weights = {**DOMAIN_WEIGHTS, **(domain_weights or {})}
    recipe = {"minutes": minutes, "seed": seed, "lr": lr, "batch_size": batch_size,
              "n_corrections": n_corrections, "warm_fraction": warm_fraction,
              "corrections_from": corrections_from, "init": init, "weights": weights}
    recipe["schedule"] = {
        "minutes": float(minutes), "seed": int(seed), "pool_size": int(pool_size),
        "init": None if init is None else str(init), "val_volumes": int(val_volumes),
        "train_config": cfg.to_dict(), "domain_weights": {f"{d}_{n}d": float(w)
                                                          for (d, n), w in weights.items()},
        "warm_fraction": float(warm_fraction), "corrections_from": float(corrections_from)}
    state_path = training_state_path(out) if resume else None
    state = _saved_demo_state(state_path, recipe["schedule"])
    if state is not None and state["complete"]:
        logger.info("%s: the run is complete; nothing to resume", state_path)
        return state["loop"]["history"][-1] if state["loop"]["history"] else {}
    if state is not None:
        trainer.load_training_state(state["trainer"])
    stream = SyntheticStream(model.img_size, pool_size=pool_size, seed=seed, weights=weights,
                             workers=workers, state=None if state is None else state["stream"])
    run = _DemoRun(trainer, stream, out=out, budget=minutes * 60.0, eval_minutes=eval_minutes,
                   progress=progress, recipe=recipe, state_path=state_path,
                   val=validation_items(model.img_size),
                   volumes=validation_volumes(tuple(range(9500, 9500 + val_volumes))),
                   t_start=t_start)
    if state is not None:
        run.restore(state["loop"])
    # learning-rate schedule over the time budget rather than a step count
    trainer.progress_fn = lambda: run.elapsed() / run.budget
    logger.info("data ready after %.0f s (%d pool images)", run.elapsed(), len(stream.pool))
    run.run()
    return run.history[-1] if run.history else {}


def _demo_model(init, seed: int):
    """The demo architecture, from scratch (position-aware decoder init) or from ``init``."""
    from napari_sam.models.build import SamConfig, build_sam, load_checkpoint

    config = SamConfig(**DEMO_CONFIG)
    if init is None:
        model = build_sam(config)
        position_aware_init(model, seed=seed)
    else:
        model = load_checkpoint(init, config)
    model.model_id = "demo-training"
    return model


def _saved_demo_state(state_path: Path | None, schedule: dict[str, Any]) -> dict | None:
    """The training state to continue (None: start), checked against this run's recipe."""
    if state_path is None or not state_path.is_file():
        return None
    state = load_training_state(state_path)
    differ = sorted(k for k in schedule if state["schedule"].get(k) != schedule[k])
    if differ:
        raise ValueError(f"cannot resume from {state_path}: the recipe differs in "
                         f"{', '.join(differ)}; resume with the same arguments, or delete the "
                         "training state to start over")
    return state


def _domain_weights(text: str) -> dict[tuple[str, int], float]:
    """``"nuclei_3d=0.3,xray_2d=0.05"`` -> {("nuclei", 3): 0.3, ("xray", 2): 0.05}."""
    out: dict[tuple[str, int], float] = {}
    known = {f"{d}_{n}d": (d, n) for d, n in DOMAIN_WEIGHTS}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        if key not in known:
            raise argparse.ArgumentTypeError(
                f"unknown domain {key!r}; choose from {', '.join(sorted(known))}")
        try:
            out[known[key]] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: the share must be a number") from None
        if out[known[key]] < 0:
            raise argparse.ArgumentTypeError(f"{part!r}: the share must be >= 0")
    return out




def _parser() -> argparse.ArgumentParser:
    """The command line of ``python -m napari_sam.training.demo``."""
    p = argparse.ArgumentParser(
        prog="python -m napari_sam.training.demo",
        description="Train the bundled demo model from scratch on synthetic data.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", default="src/napari_sam/weights/demo.pt",
                   help="checkpoint to write (the best so far, with its checkpoint metadata .json); "
                        "for --check / --report the checkpoint to measure")
    p.add_argument("--minutes", type=float, default=45.0, help="wall-clock budget")
    p.add_argument("--eval-minutes", type=float, default=5.0,
                   help="minutes between validations (each may save a better checkpoint)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (None: torch's choice; use 1 on a busy machine)")
    p.add_argument("--seed", type=int, default=0,
                   help="initialisation, scenes and prompts (training scene seeds stay < 9000)")
    p.add_argument("--lr", type=float, default=2e-3,
                   help="peak AdamW learning rate (warm-up, then cosine over the time budget)")
    p.add_argument("--batch-size", type=int, default=4, help="images per step")
    p.add_argument("--objects-per-image", type=int, default=6,
                   help="objects prompted per image and step")
    p.add_argument("--corrections", type=int, default=2,
                   help="correction-click rounds per prompted object")
    p.add_argument("--pool-size", type=int, default=160,
                   help="synthetic images held; each step replaces max(1, batch size / 4) of "
                        "them with new scenes")
    p.add_argument("--precision", default="bf16", choices=["fp32", "bf16"],
                   help="autocast dtype of the forward passes")
    p.add_argument("--init", default=None, help="start from this checkpoint instead of scratch")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (the validation lines are still printed)")
    p.add_argument("--focal-weight", type=float, default=20.0,
                   help="weight of the focal loss on masks")
    p.add_argument("--focal-gamma", type=float, default=2.0, help="0 makes it plain BCE")
    p.add_argument("--dice-weight", type=float, default=1.0, help="weight of the dice loss")
    p.add_argument("--balanced", type=float, default=1.0,
                   help="initial weight of the class-balanced BCE (fades out over --warm)")
    p.add_argument("--warm", type=float, default=0.25,
                   help="fraction of the time over which the balanced BCE fades out; also "
                        "when correction clicks start unless --corrections-from")
    p.add_argument("--corrections-from", type=float, default=None,
                   help="fraction of the time trained before correction clicks start "
                        "(None: --warm)")
    p.add_argument("--weights", default="", type=_domain_weights,
                   help="override shares of training images, e.g. nuclei_3d=0.3,xray_2d=0.05 (the "
                        "others as DOMAIN_WEIGHTS; shares are normalised to sum to 1)")
    p.add_argument("--val-volumes", type=int, default=2,
                   help="3D nuclei volumes in the validation score (one-click propagation)")
    p.add_argument("--box-noise", type=float, default=TrainConfig.box_noise,
                   help="box jitter: Gaussian std as a fraction of the box side (SAM: 0.1)")
    p.add_argument("--device", default="cpu",
                   help="where to train: cpu, cuda, cuda:N or auto")
    p.add_argument("--workers", type=int, default=0,
                   help="processes making synthetic scenes while training (use with a GPU)")
    p.add_argument("--propagation-hops", type=int, default=2,
                   help="propagation steps per slice pair (see TrainConfig.propagation_hops); "
                        "0 trains no propagation")
    p.add_argument("--correction-fraction", type=float, default=1.0,
                   help="share of each step's objects given correction clicks "
                        "(see TrainConfig.correction_fraction)")
    p.add_argument("--report", action="store_true",
                   help="do not train: print per-domain scores of --out on held-out seeds")
    p.add_argument("--check", action="store_true",
                   help="do not train: measure --out against the demo model's quality lines "
                        "(exit status 1 when one is not met)")
    p.add_argument("--resume", action="store_true",
                   help="resumable run: write the training state beside --out (at every "
                        "validation and when stopped by SIGTERM or Ctrl-C) and continue from "
                        "it when it exists; run the same command again to go on")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (1 when ``--check`` finds a line not met)."""
    p = _parser()
    a = p.parse_args(argv)
    if not 0 < a.correction_fraction <= 1:
        p.error(f"--correction-fraction must be in (0, 1], got {a.correction_fraction}")
    if a.corrections_from is not None and not 0 <= a.corrections_from <= 1:
        p.error(f"--corrections-from must be in [0, 1], got {a.corrections_from}")
    if a.propagation_hops < 0:
        p.error(f"--propagation-hops must be >= 0, got {a.propagation_hops}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        resolve_device(a.device)
    except ValueError as err:
        p.error(str(err))
    if a.report or a.check:
        if not Path(a.out).is_file():
            p.error(f"--out {a.out}: no such checkpoint (train one first, or pass its path)")
        if a.report:
            report(a.out)
            return 0
        return 0 if check(a.out) else 1
    train_demo(a.out, minutes=a.minutes, eval_minutes=a.eval_minutes, threads=a.threads,
               seed=a.seed, lr=a.lr, batch_size=a.batch_size,
               objects_per_image=a.objects_per_image, n_corrections=a.corrections,
               correction_fraction=a.correction_fraction,
               precision=a.precision, init=a.init, pool_size=a.pool_size,
               loss=LossWeights(focal=a.focal_weight, focal_gamma=a.focal_gamma,
                                dice=a.dice_weight, balanced=a.balanced),
               warm_fraction=a.warm, box_noise=a.box_noise, domain_weights=a.weights,
               val_volumes=a.val_volumes, device=a.device, workers=a.workers,
               propagation_hops=a.propagation_hops, corrections_from=a.corrections_from,
               progress=not a.no_progress, resume=a.resume)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
