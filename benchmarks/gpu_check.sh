#!/usr/bin/env bash
# GPU checks in the order a cut-short run still brings the first back (one GPU; ~5 + ~2 + the rest of the budget):
#   1. the backend table: Trainer + recorder under plain / FSDP2 / ZeRO-2 / ZeRO-3 x fp32 / bf16 / fp16 ($OUT/table.md);
#   2. the recording overhead, interleaved repeats with and without the recorder ($OUT/overhead.md);
#   3. the LM study at GPU size, 16 runs at once on the GPU, for what is left of LM_STUDY_SECONDS ($OUT/lm_study/):
#      every schedule of the CPU problems, the adaptive one-run schedules and schedule-free AdamW included.
# Run from the repository root: bash benchmarks/gpu_check.sh
# First, here: `bash benchmarks/prepare_gpu_wheels.sh` (transformers 5.24, deepspeed, schedulefree and what they need,
# into wheels/), and `python recipes/prepare_corpus.py --source docs --out benchmarks/data/docs` (the pinned corpus);
# then run this on the device machine with carry=["wheels", "benchmarks/data/docs"].
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
OUT_DIR="${OUT:-benchmarks/gpu_check_output}"
mkdir -p "$OUT_DIR"
python3 -m benchmarks.bench_callback_overhead --repeats 5 --steps 30 --n_embd 768 --n_layer 12 \
  | tee "$OUT_DIR/overhead.md" || true
timeout "${LM_STUDY_SECONDS:-300}" python3 -m benchmarks.lm_study --problem gpu_d512 --jobs 16 \
  --out_dir "$OUT_DIR/lm_study" || true
python3 -m benchmarks.lm_report "$OUT_DIR/lm_study" > /dev/null 2>&1 || true
