#!/usr/bin/env bash
# The GPU-machine checks, as one short script for a lent device (benchmarks, not tests: CI never
# runs this): tiny-model renders in each precision on the GPU (and one twice, for identical
# pixels), the SD3.5 Large tile latency per precision, and `gigacanvas bench` on its cores. Each
# section is bounded and goes on after a failure; logs land in $OUT, the summary is printed last.
#
# The device image has torch, transformers, accelerate, safetensors and numpy; the rest travels as
# cp312 wheels in .whl/ (git-ignored), fetched here with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl ray==2.60.0 zarr==3.1.6 diffusers==0.42.1 torchao jsonschema jsonschema-specifications \
#     referencing rpds-py donfig google-crc32c numcodecs importlib_metadata
# with ray's wheel rewritten without ray/jars, rllib, llm, serve, tune, train and data (79 -> 42 MB)
# so that everything fits the 64 MiB a call carries.
set -uo pipefail
OUT=${OUT:-/tmp/gigacanvas-device}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="/tmp/site:$PWD" RAY_USAGE_STATS_ENABLED=0
PY=python3
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"

section() {  # name seconds command...
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "== $name: rc $rc, $((SECONDS - start)) s" | tee -a "$SUMMARY"
    tail -n "${TAIL:-12}" "$OUT/$name.log" >>"$SUMMARY"
}

if [ -d .whl ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        >"$OUT/install.log" 2>&1 || { echo "wheel install failed"; tail "$OUT/install.log"; exit 1; }
fi
{ nvidia-smi -L; nproc; $PY -c "import torch, ray, zarr, diffusers; print('torch', torch.__version__, 'ray', ray.__version__, 'zarr', zarr.__version__, 'diffusers', diffusers.__version__)"; $PY -c "import torchao; print('torchao', torchao.__version__)"; } >>"$SUMMARY" 2>&1

G="$PY -m gigacanvas"
# The product path on a GPU: a tiny-model render in each precision (FP8 weights, FP8 matmuls,
# bf16). The tiny folder stores fp32 weights: fp8 casts them at load (no --strict-precision).
section tiny-model 120 $G demo-model /tmp/tiny
for mode in fp8 fp8-compute bf16; do
    TAIL=3 section "render-$mode" 120 $G render --model /tmp/tiny --prompt "a lighthouse at dawn" --width 2048 \
        --height 1024 --steps 4 --seed 7 --precision "$mode" --no-progress --out "/tmp/r-$mode.png" --overwrite
done
# The same spec twice gives the same bytes on a GPU too (a new store: not the first one's picture).
TAIL=3 section render-fp8-again 120 $G render --model /tmp/tiny --prompt "a lighthouse at dawn" --width 2048 \
    --height 1024 --steps 4 --seed 7 --precision fp8 --no-progress --out /tmp/r-fp8-again.png --overwrite
$PY - >>"$SUMMARY" 2>&1 <<'EOF'
import numpy as np
from PIL import Image
a, b = (np.asarray(Image.open(p)) for p in ("/tmp/r-fp8.png", "/tmp/r-fp8-again.png"))
print("fp8 render twice: identical pixels" if np.array_equal(a, b) else f"fp8 render twice: DIFFER, max {np.abs(a.astype(int) - b).max()}")
EOF

# SD3.5 Large (38 blocks, random weights) on one 1024x1024 tile with CFG: bf16 vs fp8 vs fp8-compute.
TAIL=8 section fp8-speed 180 $PY benchmarks/fp8_speed.py --repeats 10

# The step loop on this machine's 16 cores (simulated model, 0.2 s per tile).
TAIL=4 section bench-8k 120 $G bench --width 8192 --height 8192 --tile-seconds 0.2 --actors 8 --steps 4
TAIL=4 section bench-8k-slow 120 $G bench --width 8192 --height 8192 --tile-seconds 0.2 --actors 8 --steps 4 --slow-actor 2
TAIL=4 section bench-16k 180 $G bench --width 16384 --height 16384 --tile-seconds 0.2 --actors 32 --steps 3
cat "$SUMMARY"
