"""Peak CPU memory of one model's inference, measured in a fresh process.

In the evaluator's own process the allocator keeps what earlier models freed, so resident-set
deltas there say little about any one model. Here a child process imports the libraries,
restarts the kernel's peak counter (Linux ``/proc/self/clear_refs``), loads the model, runs one
batch and reports its peak resident set over the baseline. Elsewhere the figure is left out.

    python -m compress.eval.memory PATH TASK_TYPE BATCH SEQ_LEN THREADS
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil


def peak_rss_mb(path: Path, task_type: str, batch: int, seq_len: int, threads: int) -> float | None:
    """Peak resident MB added by loading ``path`` and running one batch; None on failure."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "compress.eval.memory",
            str(path),
            task_type,
            str(batch),
            str(seq_len),
            str(threads),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"]


def _measure(path: Path, task_type: str, batch: int, seq_len: int, threads: int) -> dict:
    from compress.eval.latency import latency_batch
    from compress.eval.runtimes import load_runtime

    _warm_code_paths(task_type, threads)
    if path.suffix == ".xml":
        _warm_openvino()
    Path("/proc/self/clear_refs").write_text("5")  # restart the peak (VmHWM) after the imports
    baseline = psutil.Process().memory_info().rss / 2**20
    rt = load_runtime(path, task_type, "cpu", threads)
    rt.forward(latency_batch(batch, seq_len, rt.vocab_size))
    peak = _vm_hwm_mb()
    return {"peak_mb": round(max(0.0, peak - baseline), 1), "baseline_mb": round(baseline, 1)}


def _warm_code_paths(task_type: str, threads: int) -> None:
    """Load and run a tiny model first, so that lazily imported library code is in the
    baseline rather than in the measured model's share."""
    import gc
    import tempfile

    import onnxruntime  # noqa: F401
    from compress.eval.latency import latency_batch
    from compress.eval.runtimes import load_runtime
    from transformers import BertConfig

    from compress.models import model_class

    with tempfile.TemporaryDirectory() as tmp:
        config = BertConfig(
            vocab_size=128,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
        )
        model_class(task_type).from_config(config).save_pretrained(tmp)
        rt = load_runtime(Path(tmp), task_type, "cpu", threads)
        rt.forward(latency_batch(2, 16, rt.vocab_size))
    del rt
    gc.collect()


def _warm_openvino() -> None:
    """Compile and run a one-op model, so that OpenVINO's CPU plugin is in the baseline."""
    import numpy as np
    import openvino as ov

    param = ov.opset13.parameter([1, 4], ov.Type.f32)
    model = ov.Model([ov.opset13.relu(param)], [param])
    ov.Core().compile_model(model, "CPU")(np.zeros((1, 4), dtype=np.float32))


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise OSError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    model, kind, bs, seq, n = sys.argv[1:6]
    print(json.dumps(_measure(Path(model), kind, int(bs), int(seq), int(n))))
