#!/usr/bin/env bash
# Build/download the wheels the GPU image lacks into wheels/ (git-ignored), to carry with benchmarks/gpu_check.sh:
#   bash benchmarks/prepare_gpu_wheels.sh            # ~16 MB; then run with carry=["wheels"]
# - transformers 5.24.0, the version this project is tested against (the GPU image has 5.17);
# - deepspeed 0.19.8, a source package, built pure-Python (DS_BUILD_OPS=0), without build isolation so that its
#   setup.py uses the torch already installed here instead of fetching a CUDA build;
# - deepspeed's dependencies missing from the image's package list (hjson, pydantic v2 and its parts), for the
#   image's Python 3.12 on x86-64;
# - schedulefree 1.4.1, the LM study's schedule-free AdamW baseline (pure Python).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf wheels && mkdir -p wheels
python -m pip wheel --quiet --no-deps -w wheels transformers==5.24.0 schedulefree==1.4.1
DS_BUILD_OPS=0 python -m pip wheel --quiet --no-deps --no-build-isolation -w wheels deepspeed==0.19.8
python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d wheels hjson pydantic pydantic-core annotated-types typing-inspection
ls -la wheels
