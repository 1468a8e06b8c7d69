#!/usr/bin/env bash
# One-command GPU check for a lent H100/H200 (torch 2.11 + triton 3.6 preinstalled there, no
# hydra, no network). Installs the mmembed wheel (+ pytest, Liger-Kernel) from .whl/ without
# touching the machine's torch, then writes everything to $OUT as it goes (at most 8 files come
# back): device.txt, tests.log (pytest -m gpu and the op's other tests on CUDA), bench.log,
# bench.md (the table, and the cost_model.AUTO / DIRECT_FORWARD entries the measurements
# support) and bench.jsonl (one line per case, written as each finishes).
#
# Prepare on the development machine (Python 3.11 there, 3.12 on the GPU machine: all wheels
# here are pure Python):
#   rm -rf .whl && pip wheel --no-deps -w .whl . && \
#     pip download --no-deps -d .whl pytest==9.2.0 pluggy iniconfig liger-kernel==0.8.5
# Run there (the device tool): command "bash scripts/gpu_check.sh", carry [".whl"],
# timeout_s 540. Optional argument: tests | bench | all (default all) | quantized (int8/int4
# tables against the float one, forward, three anchor shapes: ~1 min, not part of all).
# Budget: tests <= 4 min, bench <= 5.5 min; each step has its own timeout so a slow step still
# leaves the other's results.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
STEP=${1:-all}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CUBLAS_WORKSPACE_CONFIG=:4096:8
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  date -u; } 2>&1 | tee "$OUT/device.txt"

if [ "$STEP" = all ] || [ "$STEP" = tests ]; then
  # From tests/ so the installed package is imported; test_kernels.py runs its cases on CUDA.
  (cd tests && timeout 240 python3 -m pytest -p no:cacheprovider -o addopts="" -m "gpu or not gpu" \
     ops/embed_project/test_gpu.py ops/embed_project/test_kernels.py \
     ops/embed_project/test_cost_model.py -q -rfEx --maxfail=25 --durations=15 2>&1 \
     | tee "$OUT/tests.log" | tail -25)
fi
if [ "$STEP" = all ] || [ "$STEP" = bench ]; then
  # First every shape and pass without torch.compile (its compiles take most of the time), then
  # forward+backward again with it; both append to the same files.
  bench() { python3 scripts/bench_embedding.py --reps 100 --markdown "$OUT/bench.md" \
              --jsonl "$OUT/bench.jsonl" "$@" 2>&1 | tee -a "$OUT/bench.log" | tail -22; }
  timeout 150 bash -c "$(declare -f bench); OUT=$OUT; bench --no-compile"
  timeout 180 bash -c "$(declare -f bench); OUT=$OUT; bench --compile --modes fwd+bwd"
fi
if [ "$STEP" = quantized ]; then
  timeout 90 python3 scripts/bench_embedding.py --quantized --reps 100 \
    --only caption-subword gpt2-vocab llama-vocab --markdown "$OUT/bench_quantized.md" \
    --jsonl "$OUT/bench_quantized.jsonl" 2>&1 | tee "$OUT/bench_quantized.log" | tail -8
fi
