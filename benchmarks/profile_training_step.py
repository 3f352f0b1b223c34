"""Where a demo-model training step spends its time (for the GPU rate of napari_sam.training).

On a lent H200 the demo trainer made about 2 steps of batch 16 a second whether one or three
runs shared the GPU, so something other than the GPU's arithmetic bounds a run. This script
times ``Trainer.train_step`` on the demo architecture and prints:

- the wall time per step, and the part spent outside PyTorch ops (numpy prompt simulation,
  Python), from ``torch.profiler``'s total of op time;
- the ops with the most self time on the host and, on a GPU, on the device.

    python benchmarks/profile_training_step.py                       # CPU, batch 4
    python benchmarks/profile_training_step.py --device cuda --batch-size 16
    python benchmarks/profile_training_step.py --no-profile --correction-fraction 0.5
    python benchmarks/profile_training_step.py --device cuda --no-profile --batch-size 16,32,64 \
        --workers 8

``--no-profile`` only times the steps (the profiler's overhead inflates them); with several
batch sizes it times each in turn (one model, one pool of scenes). ``--workers`` makes the
pool with that many processes.

There is no reference to compare with: this is a diagnosis, not a target.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", default="4",
                    help="images per step; a comma-separated list times each (--no-profile)")
    ap.add_argument("--workers", type=int, default=0, help="processes making the scene pool")
    ap.add_argument("--steps", type=int, default=5, help="profiled steps (after the warm-up)")
    ap.add_argument("--warmup", type=int, default=3,
                    help="untimed steps first (on a GPU the first tens of steps are slow)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--corrections", type=int, default=2)
    ap.add_argument("--correction-fraction", type=float, default=1.0,
                    help="share of the objects given correction clicks (TrainConfig)")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--no-profile", action="store_true",
                    help="only time the steps (no torch.profiler)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from torch.profiler import ProfilerActivity, profile

    from napari_sam.device import resolve_device
    from napari_sam.models.build import SamConfig, build_sam
    from napari_sam.training.config import TrainConfig
    from napari_sam.training.demo import DEMO_CONFIG, SyntheticStream
    from napari_sam.training.losses import LossWeights
    from napari_sam.training.trainer import Trainer, position_aware_init

    sizes = [int(b) for b in str(args.batch_size).split(",")]
    if len(sizes) > 1 and not args.no_profile:
        ap.error("several batch sizes need --no-profile")
    model = build_sam(SamConfig(**DEMO_CONFIG))
    position_aware_init(model)

    def make_trainer(batch_size):
        cfg = TrainConfig(  # the demo recipe (napari_sam.training.demo.train_demo)
            lr=1e-3, weight_decay=0.05, warmup_steps=40, min_lr_ratio=0.02,
            batch_size=batch_size, objects_per_image=6, n_corrections=args.corrections,
            correction_fraction=args.correction_fraction,
            p_box=0.4, p_farthest=0.5, p_drop_mask=0.1, point_interior_bias=0.5,
            precision="bf16", grad_clip=1.0, loss_resolution="low", loss=LossWeights(),
            box_noise=0.03, propagation_hops=1,
        )  # fmt: skip
        return Trainer(model, cfg, device=args.device, seed=0)

    dev = resolve_device(args.device)
    stream = SyntheticStream(model.img_size, pool_size=max(24, 2 * max(sizes)), seed=0,
                             workers=args.workers)
    stream.close()
    rng = np.random.default_rng(0)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    if args.no_profile:
        for size in sizes:
            trainer = make_trainer(size)
            batches = [stream.batch(rng, size) for _ in range(args.steps + args.warmup)]
            for items in batches[:args.warmup]:
                trainer.train_step(items)
            sync()
            t0 = time.perf_counter()
            for items in batches[args.warmup:]:
                trainer.train_step(items)
            sync()
            wall = (time.perf_counter() - t0) / args.steps
            print(f"device {dev}, batch {size}, {args.corrections} correction rounds "
                  f"for {args.correction_fraction:g} of the objects, torch threads "
                  f"{torch.get_num_threads()}: {wall:.3f} s per step, "
                  f"{wall / size:.4f} s per image ({size / wall:.0f} images a second)",
                  flush=True)
        return

    trainer = make_trainer(sizes[0])
    batches = [stream.batch(rng, sizes[0]) for _ in range(args.steps + args.warmup)]
    for items in batches[:args.warmup]:
        trainer.train_step(items)
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        for items in batches[args.warmup:]:
            trainer.train_step(items)
        sync()
        wall = (time.perf_counter() - t0) / args.steps
    events = prof.key_averages()
    # top-level op time on the host (children are inside their parents' totals)
    op_host = sum(e.self_cpu_time_total for e in events) / 1e6 / args.steps
    print(f"device {dev}, batch {sizes[0]}, {args.corrections} correction rounds "
          f"for {args.correction_fraction:g} of the objects, "
          f"torch threads {torch.get_num_threads()}")
    print(f"wall time per step: {wall:.3f} s; host time inside PyTorch ops: {op_host:.3f} s; "
          f"outside them (numpy, Python, waiting): {max(0.0, wall - op_host):.3f} s")
    if dev.type == "cuda":
        gpu = sum(getattr(e, "self_device_time_total", 0) for e in events) / 1e6 / args.steps
        print(f"GPU kernel time per step: {gpu:.3f} s ({100 * gpu / wall:.0f} % of the wall time)")
        print(events.table(sort_by="self_device_time_total", row_limit=args.top))
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.top))


if __name__ == "__main__":
    main()
