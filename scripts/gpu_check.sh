#!/usr/bin/env bash
# One-shot GPU check for a lent H100/H200 (torch 2.11 + triton 3.6 preinstalled there): installs
# the mmembed wheel (+ pytest) from .whl/ without touching the machine's torch, runs the GPU
# tests and the benchmark. Prepare here with:
#   pip wheel --no-deps -w .whl . && pip download --no-deps -d .whl pytest pluggy iniconfig
# Usage: OUT=/some/dir bash scripts/gpu_check.sh [bench]
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/device.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/device.txt"
# GPU tests + the kernel tests on CUDA (from tests/ so the installed package is imported).
(cd tests && timeout 200 python3 -m pytest -p no:cacheprovider -m "gpu or not gpu" ops/embed_project/test_gpu.py ops/embed_project/test_kernels.py -q -rfEx -o addopts="" 2>&1 | tee "$OUT/tests.log" | grep -E "^(FAILED|ERROR|XFAIL)|passed|failed|error:" | head -40)
if [ "${1:-}" = bench ]; then
  python3 scripts/bench_embedding.py --no-compile --reps 100 --markdown "$OUT/bench_eager.md" 2>&1 | tee "$OUT/bench_eager.log"
  timeout 200 python3 scripts/bench_embedding.py --compile --modes fwd+bwd --reps 100 --markdown "$OUT/bench_compile.md" 2>&1 | tee "$OUT/bench_compile.log" | tail -12
fi
