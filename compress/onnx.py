"""ONNX helpers shared by the export and quantize stages: sessions, validation against PyTorch,
and the quantization preset for this CPU."""

from __future__ import annotations

import logging
import platform
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.data import batch_indices, collate, encode
from compress.errors import CompressError
from compress.scoring import output_logits


class ValidationError(CompressError):
    """An exported or quantized model disagrees with its source beyond the tolerance."""

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.details = details or {}  # what was measured, kept in the failed step's entry


def session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_session(sess, batch: dict[str, torch.Tensor]) -> np.ndarray:
    names = {i.name for i in sess.get_inputs()}
    return stack_outputs(sess.run(None, {k: v.numpy() for k, v in batch.items() if k in names}))


def stack_outputs(outputs: list[np.ndarray]) -> np.ndarray:
    """A graph's logits; a QA graph's two outputs (start, end logits) stacked as ``[..., 2]``."""
    return np.stack(outputs[:2], axis=-1) if len(outputs) == 2 else outputs[0]


def validation_batches(task, tokenizer, max_len: int, n: int, batch_size: int = 16):
    """Up to ``n`` dev examples in padded batches (padding exercises the attention mask)."""
    enc = encode(task.splits["dev"][:n], tokenizer, task, max_len)
    return [
        collate(enc, idx, with_labels=False)
        for idx in batch_indices(enc, batch_size, shuffle=True, seed=0)
    ]


def torch_reference(model):
    """Logits of a PyTorch model, as the reference a converted model is checked against."""
    model.eval()

    def forward(batch):
        with torch.inference_mode():
            return output_logits(model(**batch)).float().numpy()

    return forward


def onnx_reference(path: Path):
    sess = session(path)
    return lambda batch: run_session(sess, batch)


def compare_logits(reference, candidate, batches, spans: bool = False) -> dict[str, float]:
    """Max absolute logit difference and argmax agreement of ``candidate`` (an ONNX file, or a
    ``forward(batch) -> logits``) against ``reference(batch) -> logits``, over real
    (non-padding) positions. ``spans`` (QA): agreement is on the argmax position of the start
    and of the end logits over each sequence."""
    if isinstance(candidate, Path):
        candidate = onnx_reference(candidate)
    max_diff, agree, total = 0.0, 0, 0
    for batch in batches:
        ref, got = reference(batch), candidate(batch)
        if spans:
            mask = batch["attention_mask"].numpy().astype(bool)
            max_diff = max(max_diff, float(np.abs(ref - got)[mask].max()))
            masked = np.where(mask[..., None], 0.0, -np.inf)
            same = (ref + masked).argmax(1) == (got + masked).argmax(1)  # (batch, start/end)
            agree, total = agree + int(same.sum()), total + same.size
            continue
        mask = batch["attention_mask"].numpy().astype(bool) if ref.ndim == 3 else None
        diff = np.abs(ref - got)
        max_diff = max(max_diff, float(diff[mask].max() if mask is not None else diff.max()))
        same = ref.argmax(-1) == got.argmax(-1)
        agree += int(same[mask].sum() if mask is not None else same.sum())
        total += int(mask.sum() if mask is not None else same.size)
    return {"max_abs_diff": max_diff, "argmax_agreement": agree / max(total, 1)}


def cpu_preset() -> str:
    """optimum's AutoQuantizationConfig preset for this CPU's instruction set."""
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "arm64"
    from compress.hardware import cpu_flags

    flags = cpu_flags()
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags and "avx512bw" in flags:
        return "avx512"
    return "avx2"


@dataclass
class Calibration:
    """Static quantization calibration: a ``datasets.Dataset`` of model inputs and a method."""

    dataset: Any
    method: str = "minmax"  # or "percentile"
    percentile: float = 99.999


def ort_quantize(
    onnx_path: Path,
    out: Path,
    *,
    preset: str,
    per_channel: bool = False,
    calibration: Calibration | None = None,
) -> Path:
    """int8 with optimum's ``ORTQuantizer``: dynamic, or static when ``calibration`` is given.
    Returns the path of ``<name>_quantized.onnx`` in ``out``."""
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoCalibrationConfig, AutoQuantizationConfig

    qconfig = getattr(AutoQuantizationConfig, preset)(
        is_static=calibration is not None, per_channel=per_channel
    )
    quantizer = ORTQuantizer.from_pretrained(onnx_path.parent, file_name=onnx_path.name)
    ranges = None
    if calibration is not None:
        data = calibration.dataset
        calib = (
            AutoCalibrationConfig.minmax(data)
            if calibration.method == "minmax"
            else AutoCalibrationConfig.percentiles(data, percentile=calibration.percentile)
        )
        augmented = out / "augmented.onnx"
        ranges = quantizer.fit(
            dataset=data, calibration_config=calib, onnx_augmented_model_name=augmented
        )
        augmented.unlink(missing_ok=True)
    with _quiet_root_info():
        quantizer.quantize(
            quantization_config=qconfig, save_dir=out, calibration_tensors_range=ranges
        )
    return out / f"{onnx_path.stem}_quantized.onnx"


@contextmanager
def _quiet_root_info():
    """ONNX Runtime's quantizer logs one INFO line per tensor it leaves in float ("Quantization
    parameters for tensor ... not specified") through the root logger; keep those out of the
    run log while it works."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)
