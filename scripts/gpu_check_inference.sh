#!/usr/bin/env bash
# Exported-model inference on a lent GPU machine (torch 2.11 + triton 3.6 preinstalled there; no
# Hydra, soundfile or PyAV, which these checks do not need). Prepare here with:
#   pip wheel --no-deps -w .whl . && pip download --no-deps -d .whl pytest pluggy iniconfig safetensors==0.8.0
# Usage: OUT=/some/dir bash scripts/gpu_check_inference.sh
# Writes $OUT/inference_device.txt, inference_tests.log (pytest -m gpu tests/inference/test_gpu.py:
# CPU- and CUDA-built artifacts on the torch runtime, AOTInductor artifact in a subprocess) and
# aoti_probes.txt: each AOTInductor variant compiled and loaded in its own process (exit 139 =
# segfault), to tell the triton_op from the platform.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv | tee "$OUT/inference_device.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/inference_device.txt"
(cd tests && timeout 900 python3 -m pytest -p no:cacheprovider -m gpu inference/test_gpu.py -q -rfEx -o addopts="" 2>&1 | tee "$OUT/inference_tests.log" | grep -E "^(FAILED|ERROR|XFAIL|XPASS)|passed|failed|error:" | head -20)
probe() {  # probe VARIANT [--register-op-first]
  local package="$OUT/aoti_$1.pt2"
  timeout 600 python3 scripts/aoti_probe.py compile "$1" "$package" > "$OUT/aoti_$1_compile.log" 2>&1
  local compiled=$?
  local loaded=-
  if [ $compiled -eq 0 ]; then
    timeout 300 python3 scripts/aoti_probe.py load "$1" "$package" ${2:-} > "$OUT/aoti_$1${2:-}_load.log" 2>&1
    loaded=$?
  fi
  echo "$1 ${2:-plain}: compile exit $compiled, load exit $loaded, $(tail -1 "$OUT/aoti_$1${2:-}_load.log" 2>/dev/null)" | tee -a "$OUT/aoti_probes.txt"
}
: > "$OUT/aoti_probes.txt"
probe inductor-only
probe op
probe op --register-op-first
probe op-embed-binary
probe op-embed-binary --register-op-first
