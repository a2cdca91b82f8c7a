#!/usr/bin/env bash
# The one GPU check (issue 21), for a machine with CUDA: needs only this repo plus torch, monai, numpy, pydicom
# (nvidia-ml-py for GPU busy %, pytest for the gpu-marked tests). Prints the environment, runs bench/gpu_bench.py
# (ours vs MONAI's tutorial loop and fast-training recipe, and each acceleration option on its own) under a time
# budget and appends its table to bench/RESULTS.md; the `gpu`-marked tests run first (at most 120 s). Fits in 10
# minutes on one H100/H200: the bench starts no case after BUDGET_S (default 340 s) and is interrupted at
# BENCH_TIMEOUT_S (default 420 s; it still writes what it measured). gpu_bench.json, gpu_bench.log, RESULTS.md
# and gpu_tests.txt go to $OUT (default /tmp/irmsia-gpu-check).
#   bash bench/gpu_check.sh                  # PYTHON=/path/to/python; extra arguments go to gpu_bench.py
#   bash bench/gpu_check.sh --cases resnet18 # only the resnet18 rows
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3 || command -v python)}"
OUT="${OUT:-/tmp/irmsia-gpu-check}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export OUT
date -u
nvidia-smi || echo "nvidia-smi not found"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit --format=csv 2>/dev/null
"$PY" - <<'EOF'
import os, torch, monai, numpy, pydicom
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
      "monai", monai.__version__, "numpy", numpy.__version__, "pydicom", pydicom.__version__,
      "cores", len(os.sched_getaffinity(0)))
print("devices", [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
try:
    import pynvml  # noqa: F401
    print("nvidia-ml-py present: GPU busy % comes from NVML")
except ImportError:
    print("nvidia-ml-py missing: GPU busy % will be empty (pip install nvidia-ml-py)")
EOF
# The gpu-marked tests first, bounded, so that a long bench cannot crowd them out.
if "$PY" -c "import pytest" 2>/dev/null; then
    timeout 120 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/jobs/train tests/bench 2>&1 | tail -8 \
        | tee "$OUT/gpu_tests.txt"
fi
timeout --signal=INT --kill-after=15 "${BENCH_TIMEOUT_S:-420}" "$PY" bench/gpu_bench.py --budget-s "${BUDGET_S:-340}" \
    --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_bench.log"
status=${PIPESTATUS[0]}
cp bench/RESULTS.md "$OUT/RESULTS.md"
exit "$status"
