#!/usr/bin/env bash
# One-shot GPU check for the train stage, for a machine with CUDA: needs only this repo plus torch, monai,
# numpy and pydicom. Runs a short training (resnet18 and densenet121, 224 px) with and without AMP and prints
# images/s, GPU utilisation and data-wait; then the `gpu`-marked tests if pytest is installed. Under 3 minutes
# on one H100. Writes gpu_check.json (and gpu_tests.txt) to $OUT when it is set.
#   bash bench/gpu_check.sh            # PYTHON=/path/to/python to choose the interpreter
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3 || command -v python)}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi not found"
"$PY" -c "import torch, monai, pydicom, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'monai', monai.__version__, 'pydicom', pydicom.__version__)"
timeout 170 "$PY" bench/gpu_check.py "$@"
status=$?
if "$PY" -c "import pytest" 2>/dev/null; then
    timeout 60 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/jobs/train/test_gpu.py 2>&1 | tail -5 | tee "${OUT:-/tmp}/gpu_tests.txt"
fi
exit $status
