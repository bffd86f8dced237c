"""Stage ``quantize``: ONNX Runtime int8 (dynamic or static), OpenVINO (NNCF int8 or fp32 IR),
bitsandbytes int8/nf4/fp4, an ExecuTorch program (XNNPACK fp32 or int8), or a half-precision
cast. The input artifact stays; the quantized one
is a new step output."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

from pydantic import Field

from compress.data import collate, encode
from compress.models import load_model, load_tokenizer, model_class
from compress.onnx import (
    Calibration,
    ValidationError,
    compare_logits,
    copy_side_files,
    cpu_preset,
    onnx_reference,
    ort_format_variant,
    ort_quantize,
    torch_reference,
    validation_batches,
)
from compress.registry import ArtifactKind, StageConfig, StageContext, StageResult, stage

log = logging.getLogger(__name__)


class QuantizeConfig(StageConfig):
    """Quantize the input: onnxruntime int8 (after an export step), bitsandbytes or a torch cast.

    Each backend has its own options; ``backend`` picks them (default onnxruntime).
    """

    backend: str


class _FromOnnx(QuantizeConfig):
    """A backend that reads an export step's ONNX file."""

    def accepts(self) -> set[ArtifactKind]:
        return {"onnx"}


class OnnxRuntimeQuantize(_FromOnnx):
    """ONNX Runtime int8 of an exported ONNX model (a CPU path)."""

    backend: Literal["onnxruntime"] = "onnxruntime"
    mode: Literal["dynamic", "static"] = Field(
        "dynamic",
        description="static calibrates activations on train examples; on this project's CPU "
        "checks it was no faster than dynamic and had the larger logit error",
    )
    target: Literal["avx2", "avx512", "avx512_vnni", "arm64", "build-host"] | None = Field(
        None,
        description="the instruction set of the CPU the model is for; it picks optimum's "
        "preset (avx2: u8u8, which cannot saturate on any x86 CPU; avx512, avx512_vnni and "
        "arm64: u8s8). Default: the preset's, else avx2 (a model that is right on every x86 "
        "CPU). build-host: this machine's (the artifact then differs between machines)",
    )
    preset: Literal["auto", "avx512_vnni", "avx512", "avx2", "arm64"] = Field(
        "auto", description="optimum AutoQuantizationConfig preset; auto: the target's"
    )
    per_channel: bool = False
    calibration: Literal["minmax", "percentile"] = Field("minmax", description="static mode")
    calibration_examples: int = Field(128, ge=1, description="static mode")
    percentile: float = Field(99.999, gt=50, le=100, description="static percentile mode")
    ort_format: bool = Field(
        False,
        description="also write it in ONNX Runtime's ORT format (.ort, for ONNX Runtime Mobile "
        "and minimal builds, optimized for the target) with its required_operators.config; "
        "checked against the .onnx and evaluated as a row of its own",
    )

    def produces(self, input_kind: ArtifactKind | None) -> ArtifactKind:
        return "onnx"

    def check(self, configs) -> list[str]:
        problems = []
        fixed = self.target not in (None, "build-host")
        if fixed and self.preset != "auto" and self.preset != self.target:
            problems.append(
                f"target {self.target} and preset {self.preset} name two instruction sets; "
                "give target: alone (it picks the preset)"
            )
        static_only = {"calibration", "calibration_examples", "percentile"} & self.model_fields_set
        if self.mode == "dynamic" and static_only:
            problems.append(
                f"{', '.join(sorted(static_only))}: static-mode options, but mode is dynamic "
                "(it calibrates nothing); set mode: static or drop them"
            )
        if "percentile" in self.model_fields_set and self.calibration != "percentile":
            problems.append("percentile: set calibration: percentile for it to apply")
        return problems

    def resolved_target(self) -> tuple[str, str]:
        """The instruction set quantized for, and where that choice came from."""
        if self.target == "build-host":
            return cpu_preset(), "the build host's instruction set"
        if self.target is not None:
            return self.target, "the recipe's target"
        if self.preset != "auto":
            return self.preset, "the recipe's preset"
        return "avx2", "the default (right on every x86 CPU; name target: for yours)"


class OpenVinoQuantize(_FromOnnx):
    """OpenVINO IR of an exported ONNX model: NNCF post-training int8, or fp32 (a CPU path)."""

    backend: Literal["openvino"] = "openvino"
    precision: Literal["int8", "fp32"] = Field(
        "int8",
        description="int8: NNCF post-training quantization calibrated on train examples; fp32: "
        "the converted IR as is (the evaluator adds a bf16 row where the CPU has bf16)",
    )
    preset: Literal["performance", "mixed"] = Field(
        "performance", description="NNCF preset: symmetric (performance) or mixed activations"
    )
    calibration_examples: int = Field(300, ge=1, description="int8: train examples")
    atol: float = Field(
        1e-4, gt=0, description="fp32: largest allowed logit difference from the ONNX model"
    )

    def produces(self, input_kind: ArtifactKind | None) -> ArtifactKind:
        return "openvino"

    def check(self, configs) -> list[str]:
        other = {"int8": {"atol"}, "fp32": {"preset", "calibration_examples"}}[self.precision]
        given = other & self.model_fields_set
        if given:
            return [
                f"{', '.join(sorted(given))}: not an option of precision {self.precision} "
                f"(it would be ignored); drop it or change precision"
            ]
        return []


class BitsAndBytesQuantize(QuantizeConfig):
    """bitsandbytes int8 / nf4 / fp4 weights of a PyTorch model directory."""

    backend: Literal["bitsandbytes"] = "bitsandbytes"
    bits: Literal["int8", "nf4", "fp4"] = "int8"

    def produces(self, input_kind: ArtifactKind | None) -> ArtifactKind:
        return "bnb"


class ExecuTorchLower(QuantizeConfig):
    """An ExecuTorch program (.pte) of a PyTorch model, XNNPACK-delegated: fp32, or int8 through
    PT2E quantization with XNNPACK's quantizer (a CPU path: phones and boards; the evaluator
    runs it with ExecuTorch's Python runtime). Needs the executorch extra."""

    backend: Literal["executorch"] = "executorch"
    precision: Literal["fp32", "int8"] = Field(
        "fp32",
        description="int8: symmetric per-channel weights, static activations calibrated on "
        "train examples",
    )
    calibration_examples: int = Field(128, ge=1, description="int8: train examples")
    max_batch: int = Field(
        64,
        ge=1,
        le=4096,
        description="the largest batch the program takes (its sequence length goes up to the "
        "task's max_seq_len); the evaluator leaves larger latency batch sizes out",
    )
    atol: float = Field(
        1e-4, gt=0, description="fp32: largest allowed logit difference from PyTorch"
    )

    def produces(self, input_kind: ArtifactKind | None) -> ArtifactKind:
        return "executorch"

    def check(self, configs) -> list[str]:
        other = {"int8": {"atol"}, "fp32": {"calibration_examples"}}[self.precision]
        given = other & self.model_fields_set
        if given:
            return [
                f"{', '.join(sorted(given))}: not an option of precision {self.precision} "
                f"(it would be ignored); drop it or change precision"
            ]
        return []


class TorchCast(QuantizeConfig):
    """A half-precision copy of a PyTorch model directory."""

    backend: Literal["torch"] = "torch"
    dtype: Literal["fp16", "bf16"] = "fp16"


BACKENDS: dict[str, type[QuantizeConfig]] = {
    "onnxruntime": OnnxRuntimeQuantize,
    "openvino": OpenVinoQuantize,
    "bitsandbytes": BitsAndBytesQuantize,
    "executorch": ExecuTorchLower,
    "torch": TorchCast,
}


def _calibration_dataset(ctx: StageContext, tokenizer, n: int):
    from datasets import Dataset

    enc = encode(ctx.task.splits["train"][:n], tokenizer, ctx.task, ctx.max_seq_len)
    return Dataset.from_dict(
        {
            "input_ids": enc.input_ids,
            "token_type_ids": enc.token_type_ids,
            "attention_mask": [[1] * len(ids) for ids in enc.input_ids],
        }
    )


def quantize_onnx(cfg: OnnxRuntimeQuantize, src: Path, ctx: StageContext, out: Path):
    """int8 with optimum's ORTQuantizer, checked against the fp32 ONNX model on dev examples."""
    preset, chosen = cfg.resolved_target()
    tokenizer = load_tokenizer(src.parent)
    calibration = None
    if cfg.mode == "static":
        data = _calibration_dataset(ctx, tokenizer, cfg.calibration_examples)
        calibration = Calibration(data, cfg.calibration, cfg.percentile)
    quantized = ort_quantize(
        src, out, preset=preset, per_channel=cfg.per_channel, calibration=calibration
    )
    copy_side_files(src.parent, out)
    log.info("ONNX Runtime %s int8 for %s (%s)", cfg.mode, preset, chosen)
    if preset != cpu_preset():
        log.info(
            "this machine is %s, not the target %s: the validation below ran here, not there",
            cpu_preset(),
            preset,
        )
    batches = validation_batches(ctx.task, tokenizer, ctx.max_seq_len, 64)
    check = compare_logits(onnx_reference(src), quantized, batches, ctx.task.type == "qa")
    log.info(
        "int8 vs fp32: max |diff| %.3f, argmax agreement %.4f",
        check["max_abs_diff"],
        check["argmax_agreement"],
    )
    details = {
        "preset": preset,
        "target": preset,
        "target_source": chosen,
        "built_on": cpu_preset(),
        "mode": cfg.mode,
        "per_channel": cfg.per_channel,
        "validation": check,
    }
    return quantized, details


def quantize_openvino(cfg: OpenVinoQuantize, src: Path, ctx: StageContext, out: Path):
    """The ONNX model converted to OpenVINO IR (and NNCF int8), checked against the ONNX model
    on dev examples like the ONNX Runtime path."""
    from compress import openvino as ov

    tokenizer = load_tokenizer(src.parent)
    model = ov.convert_onnx(src)
    if cfg.precision == "int8":
        enc = encode(
            ctx.task.splits["train"][: cfg.calibration_examples],
            tokenizer,
            ctx.task,
            ctx.max_seq_len,
        )
        examples = [
            {k: v.numpy() for k, v in collate(enc, [i], with_labels=False).items()}
            for i in range(len(enc.input_ids))
        ]
        model = ov.nncf_int8(model, examples, cfg.preset)
    produced = ov.save_ir(model, out)
    copy_side_files(src.parent, out)
    batches = validation_batches(ctx.task, tokenizer, ctx.max_seq_len, 64)
    check = compare_logits(
        onnx_reference(src), ov.ov_forward(produced), batches, ctx.task.type == "qa"
    )
    log.info(
        "OpenVINO %s vs ONNX fp32: max |diff| %.3g, argmax agreement %.4f",
        cfg.precision,
        check["max_abs_diff"],
        check["argmax_agreement"],
    )
    details = {"precision": cfg.precision, "validation": check}
    if cfg.precision == "int8":
        details |= {"preset": cfg.preset, "calibration_examples": len(examples)}
    else:
        _within_atol(check, cfg.atol, "the OpenVINO IR's", "the ONNX model's", details)
    return produced, details


def _within_atol(check: dict, atol: float, produced: str, reference: str, details: dict) -> None:
    """A full-precision conversion whose logits stray from its reference's by more than
    ``atol`` is refused (an int8 one is judged by its argmax agreement instead)."""
    if check["max_abs_diff"] > atol:
        raise ValidationError(
            f"{produced} logits differ from {reference} by {check['max_abs_diff']:.2e} > atol "
            f"{atol:g}; raise atol if this is expected",
            details,
        )


def quantize_bnb(cfg: BitsAndBytesQuantize, src: Path, ctx: StageContext, out: Path):
    import torch
    from transformers import BitsAndBytesConfig

    if cfg.bits == "int8":
        qconfig = BitsAndBytesConfig(load_in_8bit=True)
    else:
        qconfig = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=cfg.bits, bnb_4bit_compute_dtype=torch.float32
        )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model_class(ctx.task.type).from_pretrained(
        src, quantization_config=qconfig, device_map={"": device}
    )
    model.save_pretrained(out)
    load_tokenizer(src).save_pretrained(out)
    saved = json.loads((out / "config.json").read_text())["quantization_config"]
    return out, {"bits": cfg.bits, "device": device, "config": saved}


def lower_executorch(cfg: ExecuTorchLower, src: Path, ctx: StageContext, out: Path):
    """The .pte program, checked against the PyTorch model on dev examples."""
    from compress import executorch as et

    et.require_executorch()
    model, tokenizer = load_model(src, ctx.task.type), load_tokenizer(src)
    calibration = None
    if cfg.precision == "int8":
        enc = encode(
            ctx.task.splits["train"][: cfg.calibration_examples],
            tokenizer,
            ctx.task,
            ctx.max_seq_len,
        )
        calibration = [
            collate(enc, list(range(i, min(i + 16, len(enc)))), with_labels=False)
            for i in range(0, len(enc), 16)
        ]
    log.info("lowering to ExecuTorch (%s, XNNPACK); this takes a minute or two", cfg.precision)
    program, details = et.lower(model, cfg.precision, ctx.max_seq_len, cfg.max_batch, calibration)
    produced = out / "model.pte"
    produced.write_bytes(program)
    copy_side_files(src, out)
    batches = validation_batches(ctx.task, tokenizer, ctx.max_seq_len, 64, min(16, cfg.max_batch))
    check = compare_logits(
        torch_reference(model), et.pte_forward(produced), batches, ctx.task.type == "qa"
    )
    details |= {
        "validation": check,
        "params": sum(p.numel() for p in model.parameters()),
    }
    if cfg.precision == "int8":
        details["calibration_examples"] = len(enc)
    (out / et.DETAILS).write_text(json.dumps(details, indent=1), encoding="utf-8")
    log.info(
        "ExecuTorch %s vs PyTorch: max |diff| %.3g, argmax agreement %.4f; %d nodes delegated "
        "to XNNPACK, %d left to portable kernels",
        cfg.precision,
        check["max_abs_diff"],
        check["argmax_agreement"],
        details["delegated_nodes"],
        details["portable_nodes"],
    )
    if cfg.precision == "fp32":
        _within_atol(check, cfg.atol, "the ExecuTorch program's", "PyTorch's", details)
    return produced, details


def cast_torch(cfg: TorchCast, src: Path, ctx: StageContext, out: Path):
    import torch

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[cfg.dtype]
    model = load_model(src, ctx.task.type).to(dtype)
    model.save_pretrained(out, safe_serialization=True)
    load_tokenizer(src).save_pretrained(out)
    return out, {"dtype": cfg.dtype}


@stage("quantize", QuantizeConfig, variants=BACKENDS, discriminator="backend")
def quantize(cfg: QuantizeConfig, src: Path | None, ctx: StageContext) -> StageResult:
    assert src is not None  # its kind was checked against cfg.accepts() at validation
    out = ctx.step_dir / "model"
    out.mkdir(parents=True)
    if isinstance(cfg, OnnxRuntimeQuantize):
        produced, details = quantize_onnx(cfg, src, ctx, out)
    elif isinstance(cfg, OpenVinoQuantize):
        produced, details = quantize_openvino(cfg, src, ctx, out)
    elif isinstance(cfg, BitsAndBytesQuantize):
        produced, details = quantize_bnb(cfg, src, ctx, out)
    elif isinstance(cfg, ExecuTorchLower):
        produced, details = lower_executorch(cfg, src, ctx, out)
    else:
        assert isinstance(cfg, TorchCast)
        produced, details = cast_torch(cfg, src, ctx, out)
    extra = {}
    if isinstance(cfg, OnnxRuntimeQuantize) and cfg.ort_format:
        batches = validation_batches(ctx.task, load_tokenizer(out), ctx.max_seq_len, 64)
        extra, details["ort_format"] = ort_format_variant(
            produced, details["target"], batches, ctx.task.type == "qa"
        )
    return StageResult(produced, details, extra)
