"""Stage ``baseline``: a distill step's student trained on hard labels only (no KD), with the
same initialisation, data, optimiser and number of steps, so the report shows what KD buys."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from compress.models import count_parameters, load_tokenizer
from compress.registry import StageContext, stage
from compress.students import build_student
from compress.training import (
    TrainConfig,
    encode_splits,
    fit,
    load_model,
    save_model,
)


class BaselineConfig(BaseModel):
    """Train the student of distill step ``like`` on hard labels only."""

    model_config = ConfigDict(extra="forbid")

    like: str

    def references(self) -> list[str]:
        return [self.like]

    def out_arch(self, in_arch, archs):
        return archs.get(self.like)

    def check_recipe(self, recipe) -> list[str]:
        names = {s.name: s.stage for s in recipe.steps}
        if names.get(self.like) != "distill":
            return [
                f"baseline.like: {self.like!r} is not a distill step of this recipe "
                f"(distill steps: {[n for n, st in names.items() if st == 'distill']})"
            ]
        return []


def _teacher_step(cfg: BaselineConfig, recipe) -> str | None:
    return recipe.source_of(cfg.like)


@stage("baseline", BaselineConfig, input_for=_teacher_step)
def baseline(cfg: BaselineConfig, src: Path | None, ctx: StageContext) -> Path:
    assert src is not None
    distill_cfg = ctx.recipe.step(cfg.like).config
    teacher, tokenizer = load_model(src, ctx.task.type), load_tokenizer(src)
    student, tokenizer = build_student(distill_cfg.student, teacher, tokenizer, ctx.task)
    del teacher
    train_cfg = TrainConfig(**{k: getattr(distill_cfg, k) for k in TrainConfig.model_fields})
    enc = encode_splits(ctx.task, tokenizer, ctx.recipe.task.max_seq_len)
    result = fit(student, ctx.task, enc, train_cfg, ctx.seed, desc=ctx.step_name)
    ctx.record.update(train=result, params=count_parameters(student), like=cfg.like)
    return save_model(student, tokenizer, ctx.step_dir / "model")
