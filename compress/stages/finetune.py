"""Stage ``finetune``: train a classifier or tagger on the task's hard labels."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from compress.arch import Arch, arch_of_source
from compress.data import encode_splits
from compress.models import (
    ModelSource,
    count_parameters,
    load_pretrained,
    load_tokenizer,
    model_for_task,
    save_model,
)
from compress.registry import StageConfig, StageContext, StageResult, stage
from compress.trainer import TrainConfig, fit


class ModelOrInput(StageConfig):
    """Options of a stage that trains ``model:`` when given, else its input step's model."""

    model: ModelSource | None = Field(
        None, description="hub id, local directory or {shape: ...}; default: the input step"
    )
    model_key: ClassVar[str | None] = "model"

    def needs_input(self) -> bool:
        return self.model is None

    def default_input(self, previous, inputs) -> str | None:
        return None if self.model is not None else previous

    def out_arch(self, in_arch: Arch | None, archs: Mapping) -> Arch | None:
        return arch_of_source(self.model) if self.model is not None else in_arch

    def model_sources(self) -> list[str]:
        return [self.model.source] if self.model is not None and self.model.source else []


class FinetuneConfig(TrainConfig, ModelOrInput):
    """Train a classifier or tagger on the task's hard labels."""

    data_parallel: ClassVar[bool] = True


@stage("finetune", FinetuneConfig)
def finetune(cfg: FinetuneConfig, src: Path | None, ctx: StageContext) -> StageResult:
    out = ctx.step_dir / "model"
    if cfg.model is not None:
        model, tokenizer = model_for_task(cfg.model, ctx.task, ctx.step_dir)
    else:
        assert src is not None  # the recipe guarantees an input when no model is given
        # a task head for the task's labels (new when the input has none, e.g. a pretrain step)
        source = ModelSource(source=str(src))
        model = load_pretrained(source, ctx.task.type, ctx.task.labels)
        tokenizer = load_tokenizer(src)
    enc = encode_splits(ctx.task, tokenizer, ctx.max_seq_len)
    result = fit(model, ctx.task, enc, cfg, ctx.seed, desc=ctx.step_name)
    details = {"train": result, "params": count_parameters(model), "vocab_size": len(tokenizer)}
    return StageResult(save_model(model, tokenizer, out), details)
