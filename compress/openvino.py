"""OpenVINO helpers shared by the quantize stage and the evaluator: the project's ONNX export to
OpenVINO IR, NNCF post-training int8 calibrated on task examples, and an inference forward.

The plain ``openvino`` and ``nncf`` APIs are used rather than optimum-intel's ``OVModelFor...``
classes: every optimum-intel release that supports OpenVINO 2026 requires ``torchvision`` and
``optimum~=2.3``, which would replace the pinned torch build and move optimum off the version
optimum-onnx is tested with.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from compress.errors import CompressError
from compress.onnx import stack_outputs

IR_NAME = "openvino_model.xml"  # the file name optimum-intel also uses
# ops NNCF inserts for int8 activations and weights; their presence is what makes an IR int8
INT8_OPS = ("FakeQuantize", "FakeConvert")


def _ov():
    import openvino

    return openvino


def convert_onnx(onnx_path: Path):
    """The ONNX model as an ``openvino.Model`` (dynamic batch and sequence axes kept)."""
    return _ov().convert_model(str(onnx_path))


def save_ir(model, out_dir: Path) -> Path:
    """Write ``openvino_model.xml``/``.bin``; float weights stay fp32 (OpenVINO would halve
    them by default, which is a different model from the one that was validated)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / IR_NAME
    _ov().save_model(model, str(path), compress_to_fp16=False)
    return path


def nncf_int8(model, examples: Sequence[dict[str, np.ndarray]], preset: str):
    """NNCF post-training int8 of ``model``, calibrated on every one of ``examples``.

    ``model_type=TRANSFORMER`` keeps the numerically sensitive parts (softmax, layer norm) in
    float, as NNCF's documentation recommends for BERT-like models.
    """
    import nncf

    return nncf.quantize(
        model,
        nncf.Dataset(list(examples)),
        preset=nncf.QuantizationPreset(preset),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(examples),
    )


def read_ir(path: Path):
    try:
        return _ov().Core().read_model(str(path))
    except RuntimeError as exc:
        raise CompressError(
            f"could not read the OpenVINO model {path}: {exc}; the .xml or its .bin may be "
            "truncated: run the step that wrote it again"
        ) from exc


def ir_is_int8(path: Path, model=None) -> bool:
    """Whether an IR computes in int8: decided by its graph (NNCF's quantize ops)."""
    model = model if model is not None else read_ir(path)
    return any(op.get_type_name() in INT8_OPS for op in model.get_ops())


def cpu_has_bf16() -> bool:
    """Whether OpenVINO can run bf16 on this CPU (AVX512-BF16 or AMX)."""
    return "BF16" in _ov().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def ir_params(model) -> int:
    """Weights in the IR's constants with at least one dimension (as counted for ONNX)."""
    return sum(
        int(np.prod(op.get_output_shape(0)))
        for op in model.get_ops()
        if op.get_type_name() == "Constant" and len(op.get_output_shape(0)) >= 1
    )


def nncf_int8_accuracy_control(
    model, examples: Sequence[dict[str, np.ndarray]], preset: str, validate, max_drop: float
):
    """NNCF int8 that keeps in float whatever costs more than ``max_drop`` (absolute, on
    ``validate(compiled_model) -> metric``, the task metric on dev) against the float model
    (``nncf.quantize_with_accuracy_control``). Returns the model and the names of the
    quantizers NNCF removed against plain ``nncf_int8``."""
    import nncf

    def quantizers(m) -> set[str]:
        return {op.get_friendly_name() for op in m.get_ops() if op.get_type_name() in INT8_OPS}

    plain = quantizers(nncf_int8(model.clone(), examples, preset))
    quantized = nncf.quantize_with_accuracy_control(
        model.clone(),
        calibration_dataset=nncf.Dataset(list(examples)),
        validation_dataset=nncf.Dataset([None]),  # validate scores the whole dev split itself
        # + 1: NNCF's calculate_accuracy_drop also divides by the float model's metric (the
        # relative drop, even for an absolute one), so a float model scoring exactly 0 (a
        # rehearsal's random-weight F1) raised ZeroDivisionError; absolute drops are unchanged
        validation_fn=lambda compiled, _data: validate(compiled) + 1.0,
        max_drop=max_drop,
        drop_type=nncf.DropType.ABSOLUTE,
        preset=nncf.QuantizationPreset(preset),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(examples),
    )
    return quantized, sorted(plain - quantizers(quantized))


def compiled_forward(compiled):
    """``forward(batch) -> logits`` of an already compiled OpenVINO model."""
    names = {name for port in compiled.inputs for name in port.get_names()}
    request = compiled.create_infer_request()

    def forward(batch: dict[str, torch.Tensor]) -> np.ndarray:
        feeds = {k: v.cpu().numpy().astype(np.int64) for k, v in batch.items() if k in names}
        result = request.infer(feeds)
        return stack_outputs([np.array(result[port], copy=True) for port in compiled.outputs])

    return forward


def ov_forward(path: Path, threads: int | None = None, precision: str = "fp32", model=None):
    """``forward(batch) -> logits`` of an IR on the CPU, with ``threads`` inference threads and
    ``precision`` fp32 or bf16 as the inference precision hint (``model``: the IR, if read)."""
    ov = _ov()
    model = model if model is not None else read_ir(path)
    config = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": {"bf16": "bf16"}.get(precision, "f32"),
    }
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return compiled_forward(ov.Core().compile_model(model, "CPU", config))
