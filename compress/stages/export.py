"""Stage ``export``: ONNX export with optimum, checked against PyTorch on real examples."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import Field

from compress.models import load_model, load_tokenizer
from compress.onnx import (
    ValidationError,
    compare_logits,
    onnx_export,
    ort_format_variant,
    torch_reference,
    validation_batches,
)
from compress.registry import ArtifactKind, StageConfig, StageContext, StageResult, stage

log = logging.getLogger(__name__)


class ExportConfig(StageConfig):
    """Export the input model to ONNX (dynamic batch and sequence axes) and validate it."""

    opset: int = Field(18, ge=11, description="ONNX opset")
    optimize: Literal["none", "O1", "O2"] = Field(
        "none", description="ORTOptimizer level; O2 adds BERT fusions"
    )
    atol: float = Field(1e-4, gt=0, description="largest allowed logit difference")
    validation_examples: int = Field(64, ge=1, description="dev examples compared with PyTorch")
    ort_format: bool = Field(
        False,
        description="also write it in ONNX Runtime's ORT format (.ort, for ONNX Runtime Mobile "
        "and minimal builds) with its required_operators.config; checked against the .onnx "
        "and evaluated as a row of its own",
    )

    def produces(self, input_kind: ArtifactKind | None) -> ArtifactKind:
        return "onnx"


def optimize_onnx(directory: Path, level: str) -> Path:
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import OptimizationConfig

    optimizer = ORTOptimizer.from_pretrained(directory)
    level_number = {"O1": 1, "O2": 2}[level]
    optimizer.optimize(
        OptimizationConfig(optimization_level=level_number, optimize_for_gpu=False),
        save_dir=directory,
    )
    return directory / "model_optimized.onnx"


@stage("export", ExportConfig)
def export(cfg: ExportConfig, src: Path | None, ctx: StageContext) -> StageResult:
    assert src is not None
    out = ctx.step_dir / "model"
    onnx_path = onnx_export(src, out, ctx.task.type, cfg.opset)
    if cfg.optimize != "none":
        onnx_path = optimize_onnx(out, cfg.optimize)
    model, tokenizer = load_model(src, ctx.task.type), load_tokenizer(src)
    batches = validation_batches(ctx.task, tokenizer, ctx.max_seq_len, cfg.validation_examples)
    check = compare_logits(torch_reference(model), onnx_path, batches, spans=ctx.task.type == "qa")
    details = {"validation": check, "opset": cfg.opset, "optimize": cfg.optimize}
    log.info(
        "ONNX vs PyTorch: max |diff| %.2e, argmax agreement %.4f",
        check["max_abs_diff"],
        check["argmax_agreement"],
    )
    if check["max_abs_diff"] > cfg.atol:
        raise ValidationError(
            f"ONNX logits differ from PyTorch by {check['max_abs_diff']:.2e} > atol {cfg.atol:g}; "
            "raise export.atol if this is expected (e.g. with optimize: O2), or report a bug",
            details,
        )
    extra = {}
    if cfg.ort_format:
        extra, details["ort_format"] = ort_format_variant(
            onnx_path, None, batches, ctx.task.type == "qa"
        )
    return StageResult(onnx_path, details, extra)
