#!/usr/bin/env bash
# The fourth lease's last 5 minutes (2026-11-27, night): two short continuations of the run 31
# candidate side by side with the device-prompt trainer at batch 32 (runs 34 and 35), to pick
# a model to ship by its validation scores (as runs 25-27 were). fp16 copies come back in $OUT.
#   run: bash training-runs/gpu_lease4b.sh MINUTES
set -u
MIN=${1:-3}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/runs
TL=$(python3 -c "print(int($MIN * 60 + 45))")
COMMON="--device cuda --threads 1 --workers 7 --pool-size 160 --batch-size 32 --eval-minutes 1 --box-noise 0.03 --warm 0 --balanced 0 --correction-fraction 0.5 --no-progress --init training-runs/demo_candidate.pt --minutes $MIN"
timeout $TL python3 -m napari_sam.training.demo $COMMON --lr 3e-4 --weights nuclei_3d=0.45 --propagation-hops 2 --seed 93 --out /tmp/runs/C.pt > /tmp/runs/C.log 2>&1 &
timeout $TL python3 -m napari_sam.training.demo $COMMON --lr 4e-4 --weights nuclei_3d=0.3,cells_membrane_2d=0.24,cells_membrane_3d=0.1 --propagation-hops 1 --seed 94 --out /tmp/runs/D.pt > /tmp/runs/D.log 2>&1 &
wait
python3 - <<'PY'
import os, shutil, torch
out = os.environ["OUT"]
for r in "CD":
    p = f"/tmp/runs/{r}.pt"
    if os.path.exists(p):
        sd = torch.load(p, map_location="cpu", weights_only=True)
        torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()},
                   f"{out}/{r}_fp16.pt")
        shutil.copy(p[:-3] + ".json", f"{out}/{r}.json")
    shutil.copy(p[:-3] + ".log", f"{out}/{r}.log")
PY
grep -h "minutes=" /tmp/runs/*.log | cut -c1-400
