"""Stage ``quantize``: ONNX Runtime int8 (dynamic or static), bitsandbytes int8/nf4/fp4, or a
half-precision cast. The input artifact stays; the quantized one is a new step output."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from compress.errors import RecipeError
from compress.models import load_tokenizer
from compress.onnx import (
    Calibration,
    compare_logits,
    cpu_preset,
    onnx_reference,
    ort_quantize,
    validation_batches,
)
from compress.registry import StageContext, stage
from compress.training import load_model

log = logging.getLogger(__name__)

SIDE_FILES = (
    "config.json",
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


class QuantizeConfig(BaseModel):
    """Quantize the input: onnxruntime int8 (needs an export step), bitsandbytes or torch."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["onnxruntime", "bitsandbytes", "torch"] = "onnxruntime"
    # onnxruntime
    mode: Literal["dynamic", "static"] = "dynamic"
    preset: Literal["auto", "avx512_vnni", "avx512", "avx2", "arm64"] = "auto"
    per_channel: bool = False
    calibration: Literal["minmax", "percentile"] = "minmax"
    calibration_examples: int = Field(128, ge=1)
    percentile: float = Field(99.999, gt=50, le=100)
    # bitsandbytes
    bits: Literal["int8", "nf4", "fp4"] = "int8"
    # torch
    dtype: Literal["fp16", "bf16"] = "fp16"


def _onnx_input(src: Path) -> Path:
    if src.suffix != ".onnx":
        raise RecipeError(
            f"quantize backend onnxruntime needs an ONNX input (an export step), "
            f"got {src}; add `- stage: export` before this step"
        )
    return src


def _calibration_dataset(ctx: StageContext, tokenizer, n: int):
    from datasets import Dataset

    from compress.data import encode

    examples = ctx.task.splits["train"][:n]
    enc = encode(examples, tokenizer, ctx.task, ctx.recipe.task.max_seq_len)
    return Dataset.from_dict(
        {
            "input_ids": enc.input_ids,
            "token_type_ids": enc.token_type_ids,
            "attention_mask": [[1] * len(ids) for ids in enc.input_ids],
        }
    )


def quantize_onnx(cfg: QuantizeConfig, src: Path, ctx: StageContext, out: Path) -> Path:
    preset = cpu_preset() if cfg.preset == "auto" else cfg.preset
    calibration = None
    if cfg.mode == "static":
        data = _calibration_dataset(ctx, load_tokenizer(src.parent), cfg.calibration_examples)
        calibration = Calibration(data, cfg.calibration, cfg.percentile)
    quantized = ort_quantize(
        src, out, preset=preset, per_channel=cfg.per_channel, calibration=calibration
    )
    for name in SIDE_FILES:
        if (src.parent / name).exists() and not (out / name).exists():
            shutil.copy(src.parent / name, out / name)
    chosen = "chosen from this CPU" if cfg.preset == "auto" else "from the recipe"
    ctx.record.update(
        preset=preset, preset_source=chosen, mode=cfg.mode, per_channel=cfg.per_channel
    )
    log.info("ONNX Runtime %s int8 with preset %s (%s)", cfg.mode, preset, chosen)
    return quantized


def quantize_bnb(cfg: QuantizeConfig, src: Path, ctx: StageContext, out: Path) -> Path:
    import torch
    from transformers import BitsAndBytesConfig

    from compress.models import model_class

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
    ctx.record.update(bits=cfg.bits, device=device)
    return out


def cast_torch(cfg: QuantizeConfig, src: Path, ctx: StageContext, out: Path) -> Path:
    import torch

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[cfg.dtype]
    model = load_model(src, ctx.task.type).to(dtype)
    model.save_pretrained(out, safe_serialization=True)
    load_tokenizer(src).save_pretrained(out)
    ctx.record.update(dtype=cfg.dtype)
    return out


@stage("quantize", QuantizeConfig)
def quantize(cfg: QuantizeConfig, src: Path | None, ctx: StageContext) -> Path:
    assert src is not None
    out = ctx.step_dir / "model"
    out.mkdir(parents=True)
    if cfg.backend == "onnxruntime":
        onnx_src = _onnx_input(src)
        produced = quantize_onnx(cfg, onnx_src, ctx, out)
        batches = validation_batches(
            ctx.task, load_tokenizer(src.parent), ctx.recipe.task.max_seq_len, 64
        )
        ctx.record["validation"] = compare_logits(onnx_reference(onnx_src), produced, batches)
        log.info(
            "int8 vs fp32: max |diff| %.3f, argmax agreement %.4f",
            ctx.record["validation"]["max_abs_diff"],
            ctx.record["validation"]["argmax_agreement"],
        )
        return produced
    if src.suffix == ".onnx":
        raise RecipeError(
            f"quantize backend {cfg.backend} needs a PyTorch model directory, "
            f"got the ONNX file {src}; set input: to an earlier step"
        )
    produced = (quantize_bnb if cfg.backend == "bitsandbytes" else cast_torch)(cfg, src, ctx, out)
    ctx.record["config"] = json.loads((produced / "config.json").read_text()).get(
        "quantization_config", {"dtype": cfg.dtype}
    )
    return produced
