"""Stage ``finetune``: train a classifier or tagger on the task's hard labels."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from compress.errors import RecipeError
from compress.models import ModelSource, count_parameters, load_tokenizer, model_for_task
from compress.registry import StageContext, stage
from compress.training import (
    TrainConfig,
    encode_splits,
    fit,
    load_model,
    save_model,
)


class FinetuneConfig(TrainConfig):
    """Train a classifier or tagger on the task's hard labels."""

    model: ModelSource | None = None  # default: the input step's model
    model_key: ClassVar[str] = "model"  # where a recipe names the model (for error hints)

    def out_arch(self, in_arch, archs):
        from compress.arch import arch_of_source

        return arch_of_source(self.model) if self.model is not None else in_arch


@stage("finetune", FinetuneConfig, needs_input=False)
def finetune(cfg: FinetuneConfig, src: Path | None, ctx: StageContext) -> Path:
    out = ctx.step_dir / "model"
    if cfg.model is not None:
        model, tokenizer = model_for_task(cfg.model, ctx.task, out)
    elif src is not None:
        model, tokenizer = load_model(src, ctx.task.type), load_tokenizer(src)
    else:
        raise RecipeError(f"step {ctx.step_name}: give model: (hub id, directory or shape)")
    enc = encode_splits(ctx.task, tokenizer, ctx.recipe.task.max_seq_len)
    result = fit(model, ctx.task, enc, cfg, ctx.seed, desc=ctx.step_name)
    ctx.record.update(train=result, params=count_parameters(model), vocab_size=len(tokenizer))
    return save_model(model, tokenizer, out)
