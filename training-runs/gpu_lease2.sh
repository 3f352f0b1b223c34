#!/usr/bin/env bash
# Second GPU lease of 2026-11-27 (about 7 minutes left): the CUDA tests, then the
# segment-everything benchmark against Meta with and without the fused Triton head.
#   run: bash training-runs/gpu_lease2.sh   (carry .whl: segment-anything wheel)
set -u
export PYTHONPATH=$PWD/src:$PWD/tests PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=$PYTHONPATH:/tmp/site
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
T0=$SECONDS
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py -rs 2>&1 | tee "$OUT/test_cuda.txt"
echo "test_cuda: $((SECONDS - T0)) s"; T0=$SECONDS
timeout 140 python3 benchmarks/bench_automatic.py --device cuda --threads 4 \
  --grid-precision fp32:eager,fp32,tf32:eager,tf32 2>&1 | tee "$OUT/bench_automatic.txt"
echo "bench_automatic: $((SECONDS - T0)) s"
