"""ONNX helpers shared by the export and quantize stages: sessions, validation against PyTorch,
and the quantization preset for this CPU."""

from __future__ import annotations

import logging
import platform
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.data import batch_indices, collate, encode
from compress.errors import CompressError
from compress.scoring import output_logits

log = logging.getLogger(__name__)


OPTIMUM_TASKS = {
    "classification": "text-classification",
    "ner": "token-classification",
    "qa": "question-answering",
}


SIDE_FILES = (
    "config.json",
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)  # what a runtime artifact's folder carries beside it


def copy_side_files(src: Path, out: Path) -> None:
    """The config and tokenizer files of the model folder ``src`` into ``out``, beside a
    runtime artifact (those already there are kept)."""
    for name in SIDE_FILES:
        if (src / name).exists() and not (out / name).exists():
            shutil.copy(src / name, out / name)


def onnx_export(src: Path, out: Path, task_type: str, opset: int = 18) -> Path:
    """``src`` (a PyTorch model directory) as ``out/model.onnx`` with dynamic batch and sequence
    axes, its tokenizer files beside it; not validated (the callers compare logits)."""
    from optimum.exporters.onnx import main_export

    main_export(
        str(src),
        out,
        task=OPTIMUM_TASKS[task_type],
        opset=opset,
        do_validation=False,
        local_files_only=True,
    )
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (src / name).exists() and not (out / name).exists():
            shutil.copy(src / name, out / name)
    return out / "model.onnx"


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
    from compress.hardware import cpu_flags

    machine = platform.machine()
    return preset_for(machine, set() if machine.lower() in ("aarch64", "arm64") else cpu_flags())


def preset_for(machine: str, flags: set[str]) -> str:
    """The preset for a CPU of this architecture and these instruction-set flags (this machine's
    or a device profile's)."""
    if machine.lower() in ("aarch64", "arm64", "armv8l"):
        return "arm64"
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
    nodes_to_exclude: list[str] | None = None,
) -> Path:
    """int8 with optimum's ``ORTQuantizer``: dynamic, or static when ``calibration`` is given;
    ``nodes_to_exclude`` stay in fp32. Returns the path of ``<name>_quantized.onnx`` in
    ``out``."""
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoCalibrationConfig, AutoQuantizationConfig

    qconfig = getattr(AutoQuantizationConfig, preset)(
        is_static=calibration is not None,
        per_channel=per_channel,
        nodes_to_exclude=nodes_to_exclude or None,
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


ORT_FORMAT_ATOL = 1e-3  # the .ort runs the graph the .onnx session optimizes to: same numbers


def write_ort_format(onnx_path: Path, target: str | None = None) -> tuple[Path, Path]:
    """``onnx_path`` in ONNX Runtime's ORT format, with onnxruntime's own converter
    (``onnxruntime.tools.convert_onnx_models_to_ort``): ``<stem>.ort`` and
    ``<stem>.required_operators.config`` beside it, the latter being the file a minimal ONNX
    Runtime build takes (``--minimal_build --include_ops_by_config``).

    The graph is optimized ahead of time ("fixed" style) without the converter's x86-only
    layout pass, so one file serves every CPU; for an arm64 ``target`` (an optimum preset name)
    int8 QDQ nodes are kept as ONNX Runtime's arm kernels expect."""
    import contextlib
    import io

    from onnxruntime.tools.convert_onnx_models_to_ort import (
        OptimizationStyle,
        convert_onnx_models_to_ort,
    )

    platform_name = "arm" if target == "arm64" else None
    printed = io.StringIO()  # the converter prints its progress; keep it for the log
    with contextlib.redirect_stdout(printed):
        convert_onnx_models_to_ort(
            onnx_path,
            optimization_styles=[OptimizationStyle.Fixed],
            target_platform=platform_name,
        )
    for line in printed.getvalue().splitlines():
        log.debug("ORT format: %s", line)
    ort_path = onnx_path.with_suffix(".ort")
    config = onnx_path.with_suffix(".required_operators.config")
    if not ort_path.exists() or not config.exists():
        raise CompressError(
            f"onnxruntime's ORT-format converter wrote no {ort_path.name} / {config.name} for "
            f"{onnx_path}: {printed.getvalue().strip()[-300:]}"
        )
    # its header names the model by the absolute path it was converted at (a step's temporary
    # directory): name the file a build is given beside it instead
    lines = config.read_text(encoding="utf-8").splitlines()
    config.write_text(
        "\n".join(f"# - {ort_path.name}" if x.startswith("# - ") else x for x in lines) + "\n",
        encoding="utf-8",
    )
    return ort_path, config


def required_operators(config: Path) -> int:
    """How many operators a required_operators.config names (lines ``domain;opset;op,op``)."""
    count = 0
    for line in config.read_text(encoding="utf-8").splitlines():
        parts = line.split(";")
        if not line.startswith("#") and len(parts) == 3:
            count += len([op for op in parts[2].split(",") if op.strip()])
    return count


def ort_format_variant(
    onnx_path: Path, target: str | None, batches, spans: bool
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write the ORT-format copy of ``onnx_path``, check it against the .onnx on ``batches``
    and return it as an extra variant with what was measured."""
    ort_path, config = write_ort_format(onnx_path, target)
    check = compare_logits(onnx_reference(onnx_path), ort_path, batches, spans)
    ops = required_operators(config)
    details = {
        "file": ort_path.name,
        "required_operators": config.name,
        "operators": ops,
        "validation": check,
        "mb": round(ort_path.stat().st_size / 1e6, 3),
    }
    log.info(
        "ORT format %s vs %s: max |diff| %.2e, argmax agreement %.4f, %d operators",
        ort_path.name,
        onnx_path.name,
        check["max_abs_diff"],
        check["argmax_agreement"],
        ops,
    )
    if check["max_abs_diff"] > ORT_FORMAT_ATOL or check["argmax_agreement"] < 1.0:
        raise ValidationError(
            f"the ORT-format model {ort_path.name} differs from {onnx_path.name} by "
            f"{check['max_abs_diff']:.2e} (argmax agreement {check['argmax_agreement']:.4f}); "
            "set ort_format: false and report it",
            {"ort_format": details},
        )
    return {"ort format": ort_path}, details
