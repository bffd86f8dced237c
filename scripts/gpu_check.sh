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
# the data-parallel path on one GPU: torchrun, an NCCL process group, DDP, one writer
HF_HUB_OFFLINE=1 "$PY" -m torch.distributed.run --standalone --nproc-per-node=1 -m compress run demo \
  --out "$OUT_DIR/gpu-check" --no-eval task.max_train_examples=512 steps.teacher.max_steps=20 \
  steps.student.max_steps=20 steps.pruned.recover.max_steps=10
"$PY" -c 'import json, sys; steps = json.load(open(sys.argv[1]))["steps"]; print({k: (v["status"], v.get("processes"), v.get("backend")) for k, v in steps.items()})' \
  "$OUT_DIR/gpu-check/demo/manifest.json"
# mixed precision on CUDA: a bf16 teacher and student for a few steps
HF_HUB_OFFLINE=1 "$PY" -m compress run demo --out "$OUT_DIR/gpu-check-bf16" --no-eval \
  task.max_train_examples=512 steps.teacher.max_steps=20 steps.student.max_steps=20 \
  steps.teacher.precision=bf16 steps.student.precision=bf16 steps.pruned.recover.max_steps=10
