#!/usr/bin/env bash
# GPU check for the callback on every backend (one GPU; about 5 minutes). Run from the repository root:
#   bash benchmarks/gpu_check.sh
# Before carrying to the device machine, build the wheels it lacks into wheels/ (ignored by git), e.g.
#   pip wheel --no-deps -w wheels transformers==5.24.0 && DS_BUILD_OPS=0 pip wheel --no-deps -w wheels deepspeed==0.19.8
# Results: a markdown table on stdout and in $OUT/table.md (per-run logs beside it).
set -uo pipefail
cd "$(dirname "$0")/.."
if compgen -G "wheels/*.whl" > /dev/null; then
  python -m pip install --quiet --no-deps --no-index wheels/*.whl
fi
python -m pip install --quiet --no-deps --no-build-isolation -e . 2>/dev/null || export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python -c "import torch, transformers, accelerate; print('torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__)"
python benchmarks/gpu_check.py
