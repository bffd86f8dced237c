"""Stage ``distill``: the input model teaches a smaller student with TextBrewer."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from compress.arch import Arch, arch_of_source
from compress.data import encode_splits
from compress.distillation import KDConfig, distil
from compress.errors import DataError
from compress.models import ModelSource, count_parameters, load_model, load_tokenizer, save_model
from compress.registry import StageConfig, StageContext, StageResult, stage
from compress.students import StudentConfig, build_student
from compress.transfer import TransferConfig

log = logging.getLogger(__name__)


class DistillConfig(KDConfig, StageConfig):
    """Distil the input model into a student (TextBrewer), keeping the best dev checkpoint."""

    data_parallel: ClassVar[bool] = True

    student: StudentConfig
    transfer: TransferConfig | None = Field(
        None, description="unlabelled texts the teacher labels, mixed with the train split"
    )
    labelled_rows: int | None = Field(
        None,
        ge=1,
        description="learn from this many labelled train rows only (a draw seeded by the run's "
        "seed; its no-KD baseline gets the same rows), e.g. to measure KD with few labels",
    )
    model_key: ClassVar[str | None] = "student.init"

    def out_arch(self, in_arch: Arch | None, archs: Mapping) -> Arch | None:
        if self.student.init == "teacher":
            return in_arch.with_(layers=len(self.student.layers or [])) if in_arch else None
        if self.student.shape is not None:
            return arch_of_source(ModelSource(shape=self.student.shape))
        init = self.student.init
        arch = archs.get(init) if init in archs else arch_of_source(init)
        if arch is not None and self.student.layers:
            arch = arch.with_(layers=len(self.student.layers))
        return arch

    def check(self, configs) -> list[str]:
        if self.transfer is None:
            return []
        problems = [
            f"transfer.files: {f} does not exist"
            for f in self.transfer.files
            if not Path(f).is_file()
        ]
        if self.transfer.rest_of_train and self.labelled_rows is None:
            problems.append(
                "transfer.rest_of_train: the rest of what? set labelled_rows (the rows that "
                "keep their labels)"
            )
        return problems

    def check_arch(self, in_arch: Arch) -> list[str]:
        """Explicit matches must name layers the teacher and the student have."""
        if not isinstance(self.matches, list):
            return []
        student = self.out_arch(in_arch, {})
        problems = []
        for i, m in enumerate(self.matches):
            if m.layer_T > in_arch.layers:
                problems.append(
                    f"matches[{i}].layer_T {m.layer_T}: the teacher has {in_arch.layers} layers "
                    "(0 is the embeddings)"
                )
            if student is not None and m.layer_S > student.layers:
                problems.append(
                    f"matches[{i}].layer_S {m.layer_S}: the student has {student.layers} layers "
                    "(0 is the embeddings)"
                )
        return problems

    def references(self) -> list[str]:
        """An ``init:`` that names an earlier step (its hash joins this step's)."""
        init = self.student.init
        return [init] if init and init != "teacher" else []

    def model_sources(self) -> list[str]:
        init = self.student.init
        return [init] if init and init != "teacher" else []


@stage("distill", DistillConfig)
def distill(cfg: DistillConfig, src: Path | None, ctx: StageContext) -> StageResult:
    assert src is not None
    teacher, tokenizer = load_model(src, ctx.task.type), load_tokenizer(src)
    student, tokenizer = build_student(cfg.student, teacher, tokenizer, ctx.task, ctx.outputs)
    task, rest = labelled_subset(ctx.task, cfg.labelled_rows, ctx.seed, ctx.step_name)
    enc = encode_splits(task, tokenizer, ctx.max_seq_len)
    labelled = len(enc["train"])
    if cfg.transfer is None:
        result = distil(cfg, teacher, student, task, enc, ctx.seed, ctx.step_name, ctx.step_dir)
        result["data"] = {"labelled_rows": labelled, "transfer_rows": 0}
    else:
        if ctx.task.type != "classification":
            raise DataError(
                f"step {ctx.step_name}: transfer: data (a text or a text pair per row) is for "
                f"classification tasks; this task is {ctx.task.type}"
            )
        # Arrow files beside the step, not in it: they are working data, not the step's output
        extra = [{"text": ex.text, "text_pair": ex.text_pair} for ex in rest]
        if not cfg.transfer.rest_of_train:
            extra = []
        with tempfile.TemporaryDirectory(dir=ctx.step_dir.parent, prefix=".transfer-") as work:
            result = _distil_with_transfer(
                cfg, teacher, student, tokenizer, enc, ctx, Path(work), task, extra
            )
    details = {
        **result,
        "params": count_parameters(student),
        "teacher_params": count_parameters(teacher),
    }
    return StageResult(save_model(student, tokenizer, ctx.step_dir / "model"), details)


def labelled_subset(task, rows: int | None, seed: int, step: str):
    """``(task, rest)``: the task with ``rows`` of its train examples (a draw seeded by
    ``seed``, in their original order), and the others; all of them when ``rows`` is None."""
    import dataclasses
    import random

    train = task.splits["train"]
    if rows is None:
        return task, []
    if rows >= len(train):
        raise DataError(
            f"step {step}: labelled_rows {rows} is not below the {len(train)} train rows loaded"
        )
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    keep = set(order[:rows])
    kept = [ex for i, ex in enumerate(train) if i in keep]
    rest = [ex for i, ex in enumerate(train) if i not in keep]
    return dataclasses.replace(task, splits={**task.splits, "train": kept}), rest


def _distil_with_transfer(
    cfg: DistillConfig, teacher, student, tokenizer, enc, ctx, work: Path, task, extra
):
    from compress.distillation import textbrewer_matches
    from compress.scoring import torch_forward
    from compress.trainer import device, mixed_precision
    from compress.transfer import build_transfer, label_with_teacher

    assert cfg.transfer is not None
    started = time.perf_counter()
    data = build_transfer(cfg.transfer, tokenizer, ctx.max_seq_len, work, extra)
    # with a logits cache (logits-only KD) the teacher labels every row once, here; with
    # hidden-state matches it runs on each transfer batch during training, as on labelled ones
    cached = cfg.cache_teacher_logits and not textbrewer_matches(
        cfg, teacher.config, student.config
    )
    if cached:
        teacher.to(device()).eval()
        # in the run's precision, as the labelled rows' cached logits are (compress.distillation)
        with mixed_precision(cfg.precision):
            data = label_with_teacher(data, torch_forward(teacher, str(device())), 64, work)
    prepared = round(time.perf_counter() - started, 2)
    per_epoch = max(1, round(cfg.transfer.ratio * len(enc["train"])))
    result = distil(
        cfg, teacher, student, task, enc, ctx.seed, ctx.step_name, ctx.step_dir, data, per_epoch
    )
    result["data"] = {
        "labelled_rows": len(enc["train"]),
        "transfer_rows": len(data),
        "transfer_rows_per_epoch": min(per_epoch, len(data)),
        "transfer_sources": cfg.transfer.sources(),
        "transfer_labelled_once": cached,
        "transfer_seconds": prepared,
    }
    log.info(
        "%s: distilled on %d labelled rows and %d transfer rows (%d per epoch)",
        ctx.step_name,
        len(enc["train"]),
        len(data),
        min(per_epoch, len(data)),
    )
    return result
