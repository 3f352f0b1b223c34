#!/usr/bin/env bash
# For the next GPU lease (written 2026-11-27 afternoon, not run yet): is a from-scratch demo
# model within reach of one command on a lent GPU? First where a training step's time goes
# (never measured on a GPU), then one from-scratch run with the faster correction phase
# (--correction-fraction 0.5), then the demo model's quality lines on the result (--check).
#   run: bash training-runs/gpu_lease3.sh   (one device command: at most 600 s)
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
T0=$SECONDS
timeout 60 python3 benchmarks/profile_training_step.py --device cuda --batch-size 16 \
  --correction-fraction 0.5 --top 12 2>&1 | tee "$OUT/profile_step.txt"
timeout 40 python3 benchmarks/profile_training_step.py --device cuda --batch-size 16 \
  --correction-fraction 0.5 --no-profile --steps 10 2>&1 | tee -a "$OUT/profile_step.txt"
echo "profile: $((SECONDS - T0)) s"; T0=$SECONDS
# about 7 minutes of training from scratch, the rest of the command's 600 s for the above and
# the check; the log and the checkpoint come back under $OUT
timeout 470 python3 -m napari_sam.training.demo --out "$OUT/run30.pt" --minutes 7 \
  --eval-minutes 2 --device cuda --workers 12 --threads 2 --batch-size 16 --box-noise 0.03 \
  --propagation-hops 1 --correction-fraction 0.5 --seed 81 --no-progress 2>&1 \
  | tee "$OUT/run30.log"
echo "training: $((SECONDS - T0)) s"; T0=$SECONDS
timeout 60 python3 -m napari_sam.training.demo --check --out "$OUT/run30.pt" 2>&1 \
  | tee "$OUT/run30_check.txt"
echo "check: $((SECONDS - T0)) s"
