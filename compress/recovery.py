"""Recovery after pruning: a few epochs of fine-tuning, or KD from the unpruned input (its
vocabulary cut to the same ids). Shared by the prune stage and the fit's candidates."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import Field

from compress.data import encode_splits
from compress.models import load_model
from compress.pruning import select_vocabulary
from compress.registry import StageContext
from compress.scoring import evaluate_torch
from compress.trainer import TrainConfig, fit

log = logging.getLogger(__name__)


class Recovery(TrainConfig):
    """A few epochs after pruning: hard labels (finetune) or KD from the unpruned input."""

    method: Literal["finetune", "distill"] = "finetune"
    epochs: float = Field(1.0, gt=0)
    temperature: float = Field(8.0, gt=0)


def recover(model, tokenizer, cfg: Recovery, src: Path, kept_ids, ctx: StageContext) -> dict:
    """Fine-tune, or distil from the unpruned input (its vocabulary cut to the same ids)."""
    enc = encode_splits(ctx.task, tokenizer, ctx.max_seq_len)
    dev_before = evaluate_torch(model, ctx.task, ctx.task.splits["dev"], enc["dev"])
    desc = f"{ctx.step_name} recovery"
    if cfg.method == "finetune":
        result = fit(model, ctx.task, enc, cfg, ctx.seed, desc=desc)
    else:
        from compress.distillation import KDConfig, distil

        teacher = load_model(src, ctx.task.type)
        if kept_ids is not None:
            select_vocabulary(teacher, kept_ids)
        kd = KDConfig(matches="none", temperature=cfg.temperature, **cfg.train_options())
        result = distil(
            kd, teacher, model, ctx.task, enc, ctx.seed, desc, ctx.step_dir / "recovery"
        )
    result["dev_before_recovery"] = dev_before
    log.info("recovery (%s): dev %.4f -> %.4f", cfg.method, dev_before, result["best_dev"])
    return result
