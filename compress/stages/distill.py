"""Stage ``distill``: the input model teaches a smaller student with TextBrewer."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from compress.arch import Arch, arch_of_source
from compress.data import encode_splits
from compress.distillation import KDConfig, distil
from compress.models import ModelSource, count_parameters, load_model, load_tokenizer, save_model
from compress.registry import StageConfig, StageContext, StageResult, stage
from compress.students import StudentConfig, build_student


class DistillConfig(KDConfig, StageConfig):
    """Distil the input model into a student (TextBrewer), keeping the best dev checkpoint."""

    student: StudentConfig
    model_key: ClassVar[str | None] = "student.init"

    def out_arch(self, in_arch: Arch | None, archs: Mapping) -> Arch | None:
        if self.student.init == "teacher":
            return in_arch.with_(layers=len(self.student.layers or [])) if in_arch else None
        if self.student.shape is not None:
            return arch_of_source(ModelSource(shape=self.student.shape))
        return arch_of_source(self.student.init)

    def model_sources(self) -> list[str]:
        init = self.student.init
        return [init] if init and init != "teacher" else []


@stage("distill", DistillConfig)
def distill(cfg: DistillConfig, src: Path | None, ctx: StageContext) -> StageResult:
    assert src is not None
    teacher, tokenizer = load_model(src, ctx.task.type), load_tokenizer(src)
    student, tokenizer = build_student(cfg.student, teacher, tokenizer, ctx.task)
    enc = encode_splits(ctx.task, tokenizer, ctx.max_seq_len)
    result = distil(cfg, teacher, student, ctx.task, enc, ctx.seed, ctx.step_name, ctx.step_dir)
    details = {
        **result,
        "params": count_parameters(student),
        "teacher_params": count_parameters(teacher),
    }
    return StageResult(save_model(student, tokenizer, ctx.step_dir / "model"), details)
