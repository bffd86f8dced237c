"""Students for distillation and their no-KD baselines: pretrained, cut from the teacher, or new."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from compress.errors import RecipeError
from compress.models import NAMED_SHAPES, ModelSource, ShapeSpec, init_from_shape, load_pretrained
from compress.models import load_tokenizer as load_source_tokenizer


class StudentConfig(BaseModel):
    """``init: hfl/chinese-lert-small`` (hub id, directory, or an earlier step's name, e.g. a
    ``general-distill`` or ``pretrain`` step), ``init: teacher`` with ``layers`` (copy those
    teacher layers, as RBT3 did), or ``shape:`` (random init). ``layers`` also cuts a pretrained
    ``init`` to those of its layers."""

    model_config = ConfigDict(extra="forbid")

    init: str | None = None
    layers: list[int] | None = Field(None, min_length=1)
    shape: str | ShapeSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"init": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> StudentConfig:
        if (self.init is None) == (self.shape is None):
            raise ValueError("give exactly one of init (hub id, directory or 'teacher') and shape")
        if self.init == "teacher" and self.layers is None:
            raise ValueError("init: teacher needs layers: (which teacher layers to copy)")
        if self.layers is not None and self.init is None:
            raise ValueError("layers: goes with init: (which of its layers to keep), not shape:")
        if isinstance(self.shape, str) and self.shape not in NAMED_SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; named shapes: {sorted(NAMED_SHAPES)}")
        return self


def cut_from_teacher(teacher, layers: list[int]):
    """A shallower copy of the teacher keeping the chosen encoder layers (and all else)."""
    depth = teacher.config.num_hidden_layers
    bad = [i for i in layers if not 0 <= i < depth]
    if bad:
        raise RecipeError(
            f"student.layers {bad} out of range: the teacher has layers 0..{depth - 1}"
        )
    student = copy.deepcopy(teacher)
    kept = [student.bert.encoder.layer[i] for i in layers]
    student.bert.encoder.layer = type(student.bert.encoder.layer)(kept)
    student.config.num_hidden_layers = len(layers)
    return student


def build_student(cfg: StudentConfig, teacher, teacher_tokenizer, task, outputs=None):
    """(student, tokenizer). The student must share the teacher's vocabulary: KD feeds both the
    same token ids. ``outputs`` maps earlier steps to their outputs (``init: STEP``)."""
    if cfg.init == "teacher":
        return cut_from_teacher(teacher, cfg.layers or []), teacher_tokenizer
    if cfg.shape is not None:
        spec = ModelSource(shape=cfg.shape).spec()
        if spec.vocab_size and spec.vocab_size != len(teacher_tokenizer):
            spec = spec.model_copy(update={"vocab_size": len(teacher_tokenizer)})
        return init_from_shape(spec, teacher_tokenizer, task.type, task.labels), teacher_tokenizer
    assert cfg.init is not None
    init = str((outputs or {}).get(cfg.init, cfg.init))
    tokenizer = load_source_tokenizer(init)
    if tokenizer.get_vocab() != teacher_tokenizer.get_vocab():
        raise RecipeError(
            f"student {cfg.init!r} has a different vocabulary from the teacher "
            f"({len(tokenizer)} vs {len(teacher_tokenizer)} tokens); distillation feeds both the "
            "same ids, so use a student with the teacher's vocabulary (all LERT sizes share one)"
        )
    student = load_pretrained(ModelSource(source=init), task.type, task.labels)
    if cfg.layers is not None:
        student = cut_from_teacher(student, cfg.layers)
    return student, tokenizer
