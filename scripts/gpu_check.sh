#!/usr/bin/env bash
# One short GPU check: the gpu-marked tests (a killed-and-resumed CUDA training step among them),
# GPU latency rows of the real-shape benchmark, a 1-GPU torchrun run and bf16 training.
# Run it on a machine with CUDA (a few minutes). Without a GPU it says so and exits 0; with a GPU
# that torch cannot see (a CPU build of torch, a driver problem) it fails with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
NVSMI=${NVIDIA_SMI:-nvidia-smi}
gpus=""
if command -v "$NVSMI" >/dev/null 2>&1; then
  gpus=$("$NVSMI" -L 2>/dev/null | grep -c '^GPU ' || true)
fi
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  if [ -n "$gpus" ] && [ "$gpus" != "0" ]; then
    build=$("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)')
    echo "gpu_check: FAILED: nvidia-smi sees $gpus GPU(s) but torch ($build) sees none." >&2
    echo "  A CPU build of torch cannot use them: install the CUDA build of the pinned torch into" >&2
    echo "  .venv (pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cuXXX," >&2
    echo "  with the cuXXX that matches the driver nvidia-smi reports), then run this again." >&2
    exit 1
  fi
  echo "gpu_check: no CUDA device here; nothing to check"
  exit 0
fi
"$NVSMI" --query-gpu=name,driver_version,memory.total --format=csv || true
HF_HUB_OFFLINE=1 "$PY" -m pytest -q -m gpu -p no:cacheprovider
# killed-and-resumed training steps, on CUDA here: the saved RNG states (CPU and CUDA) must load
HF_HUB_OFFLINE=1 "$PY" -m pytest -q -p no:cacheprovider tests/test_pretrain.py -k killed
OUT_DIR=${OUT:-artifacts}
"$PY" benchmarks/lert_shapes.py --devices cuda --repeats 20 --json "$OUT_DIR/lert_shapes_gpu.json"
# the data-parallel path on one GPU: torchrun, an NCCL process group, DDP, one writer
HF_HUB_OFFLINE=1 "$PY" -m torch.distributed.run --standalone --nproc-per-node=1 -m compress run demo \
  --out "$OUT_DIR/gpu-check-ddp" --no-eval task.max_train_examples=512 steps.teacher.max_steps=20 \
  steps.student.max_steps=20 steps.fit.recover.max_steps=10
"$PY" -c 'import json, sys; steps = json.load(open(sys.argv[1]))["steps"]; print({k: (v["status"], v.get("processes"), v.get("backend")) for k, v in steps.items()})' \
  "$OUT_DIR/gpu-check-ddp/demo/manifest.json"
# mixed precision on CUDA: a bf16 teacher and student for a few steps
HF_HUB_OFFLINE=1 "$PY" -m compress run demo --out "$OUT_DIR/gpu-check-bf16" --no-eval \
  task.max_train_examples=512 steps.teacher.max_steps=20 steps.student.max_steps=20 \
  steps.teacher.precision=bf16 steps.student.precision=bf16 steps.fit.recover.max_steps=10
echo "gpu_check: passed"
