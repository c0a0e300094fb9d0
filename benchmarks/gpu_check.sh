#!/usr/bin/env bash
# GPU check for the callback on every backend (one GPU; about 5 minutes). Run from the repository root:
#   bash benchmarks/gpu_check.sh
# First, here: `bash benchmarks/prepare_gpu_wheels.sh` (transformers 5.24, deepspeed and what it needs, into wheels/),
# then run this on the device machine with carry=["wheels"].
# Results: a markdown table on stdout and in $OUT/table.md (per-run logs beside it).
set -uo pipefail
cd "$(dirname "$0")/.."
if compgen -G "wheels/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site wheels/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # the package itself, from this checkout
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import torch, transformers, accelerate; print('torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__)"
python3 -m benchmarks.gpu_check
