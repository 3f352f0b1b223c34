#!/usr/bin/env bash
# One GPU lease (device tool, 15 min): the automatic-segmentation benchmark against Meta first,
# then three demo-model runs side by side on the one GPU and its 16 cores, then fp16 copies of
# their best checkpoints (16 MB per returned file) and the logs into $OUT.
#   run: bash training-runs/gpu_lease.sh TRAIN_MINUTES   (carry .whl: segment-anything wheel)
set -u
MIN=${1:-6.5}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/runs
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=$PYTHONPATH:/tmp/site
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee /tmp/runs/gpu.txt
python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__)" | tee -a /tmp/runs/gpu.txt
timeout 150 python3 benchmarks/bench_automatic.py --device cuda --threads 4 2>&1 | tee /tmp/runs/bench_automatic.txt
COMMON="--device cuda --threads 1 --workers 4 --batch-size 16 --eval-minutes 1.5 --box-noise 0.03 --propagation-hops 1 --no-progress --minutes $MIN"
CAND=training-runs/demo_candidate.pt
timeout 450 python3 -m napari_sam.training.demo $COMMON --out /tmp/runs/A.pt --init $CAND --lr 6e-4 --warm 0 --balanced 0 --weights nuclei_3d=0.3 --seed 41 > /tmp/runs/A.log 2>&1 &
timeout 450 python3 -m napari_sam.training.demo $COMMON --out /tmp/runs/B.pt --init $CAND --lr 4e-4 --warm 0 --balanced 0 --weights nuclei_3d=0.35 --seed 42 > /tmp/runs/B.log 2>&1 &
timeout 450 python3 -m napari_sam.training.demo $COMMON --out /tmp/runs/C.pt --lr 2e-3 --weights nuclei_3d=0.3 --seed 43 > /tmp/runs/C.log 2>&1 &
wait
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
python3 - <<'PY'
import os, torch
out = os.environ["OUT"]
for r in "ABC":
    p = f"/tmp/runs/{r}.pt"
    if os.path.exists(p):
        sd = torch.load(p, map_location="cpu", weights_only=True)
        sd = {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}
        torch.save(sd, f"{out}/{r}_fp16.pt")
PY
tail -n 3 /tmp/runs/*.log
tar -C /tmp/runs -czf "$OUT/runs.tar.gz" --exclude='*.pt' .
ls -la "$OUT"
