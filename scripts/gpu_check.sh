#!/usr/bin/env bash
# One short GPU check: the gpu-marked tests, then GPU latency rows of the real-shape benchmark.
# Run it on a machine with CUDA (a few minutes); without CUDA it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: no CUDA device here; nothing to check"
  exit 0
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
HF_HUB_OFFLINE=1 "$PY" -m pytest -q -m gpu -p no:cacheprovider
OUT_DIR=${OUT:-artifacts}
"$PY" benchmarks/lert_shapes.py --devices cuda --repeats 20 --json "$OUT_DIR/lert_shapes_gpu.json"
