"""One interface over every artifact kind: a PyTorch directory, an ONNX file, a bitsandbytes
model, an OpenVINO IR.

``load_runtime`` returns a ``Runtime`` whose ``forward(batch) -> logits`` runs on one device.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from compress.errors import CompressError
from compress.models import load_errors, model_class, source_error
from compress.onnx import stack_outputs
from compress.scoring import Forward, torch_forward

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".onnx_data", ".data", ".ort", ".pte")


@dataclass
class Runtime:
    runtime: str  # pytorch | onnxruntime | openvino | bitsandbytes | executorch
    device: str  # cpu | cuda
    precision: str  # fp32 | fp16 | bf16 | int8 | nf4 | fp4
    forward: Forward
    vocab_size: int
    params: int
    # examples per scoring call; 1 where a batch's padding changes the numbers (ONNX Runtime's
    # dynamic int8 takes its activation ranges from the whole input tensor, padding included)
    scoring_batch: int = 64
    # the inputs it takes live on the host (ONNX Runtime copies them to its device itself):
    # latency batches stay there, and are timed by the wall clock
    host_inputs: bool = False
    # the largest batch and sequence it takes (an ExecuTorch program's bounds), where bounded
    max_batch: int | None = None
    max_len: int | None = None


class ProviderFallback(CompressError):
    """ONNX Runtime ran a "cuda" session on the CPU provider (it only prints a message)."""


def artifact_kind(path: Path) -> str:
    """``onnx`` for an ONNX file or its ORT-format copy (.ort), ``openvino`` for an IR's .xml,
    ``bnb`` for a bitsandbytes directory, else ``torch``."""
    if path.suffix in (".onnx", ".ort"):
        return "onnx"
    if path.suffix == ".xml":
        return "openvino"
    if path.suffix == ".pte":
        return "executorch"
    return "bnb" if "quantization_config" in _config(path) else "torch"


QUANTIZED_OPS = ("MatMulInteger", "QLinearMatMul", "DynamicQuantizeLinear", "QuantizeLinear")


def onnx_is_quantized(path: Path, graph=None) -> bool:
    """Whether an ONNX model computes in int8: decided by its graph, never by its file name."""
    graph = graph if graph is not None else onnx_graph(path)
    return any(n.op_type in QUANTIZED_OPS for n in graph.node)


def onnx_graph(path: Path):
    """The ONNX graph of ``path``; for an ORT-format file (a flatbuffer the onnx package cannot
    read), that of the .onnx it was converted from, which the converter leaves beside it."""
    import onnx

    source = path.with_suffix(".onnx") if path.suffix == ".ort" else path
    if not source.exists():
        raise CompressError(
            f"{path}: the .onnx it was converted from ({source.name}) is not beside it; the "
            "evaluator reads the graph's parameters and int8 ops from it"
        )
    return onnx.load(str(source), load_external_data=False).graph


def size_mb(path: Path) -> float:
    """Weights on disk in MB (an ONNX file with its external data, an IR's .bin, or a
    directory's weights)."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    if path.is_file():
        files += [p for p in path.parent.glob(path.name + "*") if p != path]
    if path.suffix == ".xml":
        files.append(path.with_suffix(".bin"))
    return sum(p.stat().st_size for p in files if p.name.endswith(WEIGHT_SUFFIXES)) / 1e6


def _config(path: Path) -> dict:
    config = (path.parent if path.is_file() else path) / "config.json"
    try:
        return json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CompressError(f"cannot read the model config {config}: {exc}") from exc


def torch_precision(path: Path) -> str:
    dtype = str(_config(path).get("torch_dtype") or _config(path).get("dtype") or "float32")
    return {"float16": "fp16", "bfloat16": "bf16"}.get(dtype.replace("torch.", ""), "fp32")


def load_runtime(
    path: Path, task_type: str, device: str, threads: int, precision: str | None = None
) -> Runtime:
    """Load ``path`` for inference on ``device`` with ``threads`` CPU threads."""
    torch.set_num_threads(threads)
    kind = artifact_kind(path)
    if kind == "onnx":
        return _onnx_runtime(path, device, threads)
    if kind == "openvino":
        return _openvino_runtime(path, device, threads, precision)
    if kind == "executorch":
        return _executorch_runtime(path, device, threads)
    cls = model_class(task_type)
    if kind == "bnb":
        model = _load(cls, path, device_map={"": device})
        quant = _config(path)["quantization_config"]
        prec = "int8" if quant.get("load_in_8bit") else quant.get("bnb_4bit_quant_type", "nf4")
        return _torch_runtime(model, "bitsandbytes", device, prec)
    prec = precision or torch_precision(path)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(prec, torch.float32)
    model = _load(cls, path, dtype=dtype).to(device)
    return _torch_runtime(model, "pytorch", device, prec)


def _load(cls, path: Path, **kwargs):
    try:
        return cls.from_pretrained(path, **kwargs)
    except load_errors() as exc:
        raise source_error(str(path), exc) from exc


def _torch_runtime(model, runtime: str, device: str, precision: str) -> Runtime:
    model.eval()
    return Runtime(
        runtime,
        device,
        precision,
        torch_forward(model, device),
        model.config.vocab_size,
        count_weights(model),
    )


def count_weights(model) -> int:
    """Parameters as the model defines them: a bitsandbytes 4-bit weight stores two values per
    byte of a packed tensor, whose numel is half the real count (its quant_state has the shape)."""
    total = 0
    for p in model.parameters():
        state = getattr(p, "quant_state", None)
        shape = getattr(state, "shape", None)
        total += int(np.prod(shape)) if shape is not None else p.numel()
    return total


def _onnx_runtime(path: Path, device: str, threads: int) -> Runtime:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # idle ORT threads otherwise spin after each run and steal the cores from whatever model
    # runs next in the interleaved timing (and from PyTorch)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CUDAExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime's own error types (InvalidProtobuf, Fail, ...)
        raise CompressError(
            f"could not load the ONNX model {path}: {exc}; the file may be truncated: run the "
            "step that wrote it again"
        ) from exc
    if device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise ProviderFallback(
            f"{path}: ONNX Runtime's CUDA provider did not load (the session runs on "
            f"{session.get_providers()}); no GPU row for it. The pinned onnxruntime is the CPU "
            "build: GPU rows need onnxruntime-gpu for this CUDA version in its place"
        )
    names = {i.name for i in session.get_inputs()}
    graph = onnx_graph(path)
    params = sum(int(np.prod(t.dims)) for t in graph.initializer if len(t.dims) >= 1)
    quantized = onnx_is_quantized(path, graph)

    def forward(batch: dict[str, torch.Tensor]) -> np.ndarray:
        feeds = {k: v.cpu().numpy().astype(np.int64) for k, v in batch.items() if k in names}
        return stack_outputs(session.run(None, feeds))

    dynamic = any(n.op_type == "DynamicQuantizeLinear" for n in graph.node)
    return Runtime(
        "onnxruntime",
        device,
        "int8" if quantized else "fp32",
        forward,
        _config(path)["vocab_size"],
        params,
        scoring_batch=1 if dynamic else 64,
        host_inputs=True,
    )


def _openvino_runtime(path: Path, device: str, threads: int, precision: str | None) -> Runtime:
    from compress.openvino import ir_is_int8, ir_params, ov_forward, read_ir

    if device != "cpu":
        raise CompressError(f"{path}: OpenVINO models are evaluated on the CPU only")
    model = read_ir(path)
    int8 = ir_is_int8(path, model)
    prec = "int8" if int8 else precision or "fp32"
    forward = ov_forward(path, threads, "bf16" if prec == "bf16" else "fp32", model)
    return Runtime("openvino", device, prec, forward, _config(path)["vocab_size"], ir_params(model))


def _executorch_runtime(path: Path, device: str, threads: int) -> Runtime:
    from compress.executorch import DETAILS, pte_forward

    if device != "cpu":
        raise CompressError(f"{path}: ExecuTorch programs are evaluated on the CPU only")
    try:
        info = json.loads((path.parent / DETAILS).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CompressError(
            f"{path}: cannot read {DETAILS} beside it ({exc}); run the step that wrote it again"
        ) from exc
    return Runtime(
        "executorch",
        device,
        info["precision"],
        pte_forward(path, threads),
        _config(path)["vocab_size"],
        info["params"],
        scoring_batch=min(64, info["max_batch"]),
        host_inputs=True,
        max_batch=info["max_batch"],
        max_len=info["max_len"],
    )
