"""Stage ``baseline``: a distill step's student trained on hard labels only (no KD), with the
same initialisation, data, optimiser and number of optimizer steps, so the report shows what KD
buys."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from compress.arch import Arch
from compress.data import encode_splits
from compress.models import count_parameters, load_model, load_tokenizer, save_model
from compress.registry import StageConfig, StageContext, StageResult, stage
from compress.students import build_student
from compress.trainer import TrainConfig, fit


class BaselineConfig(StageConfig):
    """Train the student of distill step ``like`` on hard labels only (the no-KD twin)."""

    data_parallel: ClassVar[bool] = True

    like: str = Field(description="the distill step whose student and schedule to copy")

    def default_input(self, previous, inputs) -> str | None:
        return inputs.get(self.like)  # the teacher of the distill step it copies

    def references(self) -> list[str]:
        return [self.like]

    def check(self, configs: Mapping[str, StageConfig]) -> list[str]:
        from compress.stages.distill import DistillConfig

        if not isinstance(configs.get(self.like), DistillConfig):
            distills = [n for n, c in configs.items() if isinstance(c, DistillConfig)]
            return [
                f"like: {self.like!r} is not a distill step of this recipe "
                f"(distill steps: {distills})"
            ]
        return []

    def out_arch(self, in_arch: Arch | None, archs: Mapping) -> Arch | None:
        return archs.get(self.like)


@stage("baseline", BaselineConfig)
def baseline(cfg: BaselineConfig, src: Path | None, ctx: StageContext) -> StageResult:
    assert src is not None
    twin = ctx.configs[cfg.like]
    teacher, tokenizer = load_model(src, ctx.task.type), load_tokenizer(src)
    student, tokenizer = build_student(twin.student, teacher, tokenizer, ctx.task, ctx.outputs)
    del teacher
    train_cfg = TrainConfig(**twin.train_options())
    from compress.stages.distill import labelled_subset

    # the labelled rows its twin learns from (the same seeded draw), no more
    task, _ = labelled_subset(ctx.task, twin.labelled_rows, ctx.seed, ctx.step_name)
    enc = encode_splits(task, tokenizer, ctx.max_seq_len)
    result = fit(student, task, enc, train_cfg, ctx.seed, desc=ctx.step_name)
    details = {"train": result, "params": count_parameters(student), "like": cfg.like}
    if twin.labelled_rows is not None:
        details["data"] = {"labelled_rows": len(enc["train"]), "transfer_rows": 0}
    return StageResult(save_model(student, tokenizer, ctx.step_dir / "model"), details)
