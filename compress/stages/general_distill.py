"""Stage ``general-distill``: a student of any shape learns a pre-trained teacher's masked-LM
outputs and hidden states on plain text, with no task labels (TextBrewer's GeneralDistiller), as
TinyBERT's and MiniRBT's general distillation do before task distillation. A later ``distill``
step starts from it with ``student: {init: STEP}``."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import torch
from pydantic import Field
from tqdm.auto import tqdm

from compress.arch import Arch, arch_of_source
from compress.corpus import CorpusConfig, build_corpus
from compress.distillation import KDConfig, build_distiller, training_hooks
from compress.models import ModelSource, count_parameters
from compress.pretraining import LinguisticMLM, MaskingConfig, fixed_batches, masked_batches
from compress.registry import StageConfig, StageContext, StageResult, stage
from compress.students import StudentConfig
from compress.trainer import BatchSource, Resume, device, train

log = logging.getLogger(__name__)


class GeneralDistillConfig(KDConfig, StageConfig):
    """Distil a pre-trained masked LM into a student of any shape on plain text (TextBrewer:
    masked-LM logits plus hidden-state matches with projections); no task labels."""

    data_parallel: ClassVar[bool] = True
    evaluated: ClassVar[bool] = False
    model_key: ClassVar[str | None] = "teacher"

    teacher: ModelSource | None = Field(
        None, description="hub id or directory of a masked LM; default: the input step"
    )
    student: StudentConfig
    text: CorpusConfig
    max_seq_len: int = Field(128, ge=8, le=512)
    masking: MaskingConfig = MaskingConfig()
    temperature: float = Field(1.0, gt=0)
    lr: float = Field(5e-4, gt=0)
    epochs: float = Field(1.0, gt=0)
    save_every: int = Field(
        200,
        ge=1,
        description="steps between saves of the training state (to continue a killed run)",
    )
    cache_teacher_logits: bool = Field(
        False, description="never: masking differs every epoch, and vocabulary-wide logits"
    )

    def needs_input(self) -> bool:
        return self.teacher is None

    def default_input(self, previous, inputs) -> str | None:
        return None if self.teacher is not None else previous

    def out_arch(self, in_arch: Arch | None, archs: Mapping) -> Arch | None:
        if self.student.shape is not None:
            return arch_of_source(ModelSource(shape=self.student.shape))
        if self.student.init == "teacher":
            return in_arch.with_(layers=len(self.student.layers or [])) if in_arch else None
        return arch_of_source(self.student.init)

    def model_sources(self) -> list[str]:
        teacher = [self.teacher.source] if self.teacher and self.teacher.source else []
        init = self.student.init
        return teacher + ([init] if init and init != "teacher" else [])


def mlm_student(cfg: StudentConfig, teacher, tokenizer):
    """A BertForMaskedLM student sharing the teacher's vocabulary."""
    from transformers import BertForMaskedLM

    from compress.models import bert_config
    from compress.stages.pretrain import masked_lm
    from compress.students import cut_from_teacher

    if cfg.shape is not None:
        spec = ModelSource(shape=cfg.shape).spec()
        return BertForMaskedLM(
            bert_config(spec.model_copy(update={"vocab_size": None}), len(tokenizer), [])
        )
    if cfg.init == "teacher":
        return cut_from_teacher(teacher, cfg.layers or [])
    assert cfg.init is not None
    student, student_tokenizer = masked_lm(ModelSource(source=cfg.init), None)
    if student_tokenizer.get_vocab() != tokenizer.get_vocab():
        from compress.errors import RecipeError

        raise RecipeError(
            f"student {cfg.init!r} has a different vocabulary from the teacher; distillation "
            "feeds both the same ids"
        )
    return cut_from_teacher(student, cfg.layers) if cfg.layers else student


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear centred kernel alignment of two sets of vectors (rows: the same tokens), which
    compares representations of different widths without a learnt projection (Kornblith et al.,
    2019, eq. 5). Written here: no dependency of the project provides it."""
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    cross = (y.T @ x).norm() ** 2
    return float(cross / ((x.T @ x).norm() * (y.T @ y).norm()))


@torch.no_grad()
def closeness(teacher, student, batches: list[dict], pairs: list[tuple[int, int]]) -> dict:
    """How close the student is to the teacher on held-out masked batches: the KL divergence of
    their masked-LM distributions at the masked positions, and the linear CKA of each matched
    pair of hidden states over the real tokens."""
    teacher.eval()
    student.eval()
    kl, masked = 0.0, 0
    hidden_t: dict[int, list] = {t: [] for t, _ in pairs}
    hidden_s: dict[int, list] = {s: [] for _, s in pairs}
    for batch in tqdm(batches, desc="held-out closeness", unit="batch", leave=False):
        inputs = {
            k: batch[k].to(device()) for k in ("input_ids", "attention_mask", "token_type_ids")
        }
        out_t = teacher(**inputs, output_hidden_states=True)
        out_s = student(**inputs, output_hidden_states=True)
        where = batch["labels"].to(device()) != -100
        log_t = out_t.logits[where].log_softmax(-1)
        log_s = out_s.logits[where].log_softmax(-1)
        kl += float((log_t.exp() * (log_t - log_s)).sum())
        masked += int(where.sum())
        real = inputs["attention_mask"].bool()
        for t, s in pairs:
            hidden_t[t].append(out_t.hidden_states[t][real].float().cpu())
            hidden_s[s].append(out_s.hidden_states[s][real].float().cpu())
    cka = {
        f"{t}->{s}": round(linear_cka(torch.cat(hidden_t[t]), torch.cat(hidden_s[s])), 4)
        for t, s in pairs
    }
    return {
        "mlm_kl": round(kl / max(1, masked), 4),
        "hidden_cka": cka,
        "hidden_cka_mean": round(sum(cka.values()) / max(1, len(cka)), 4),
    }


@stage("general-distill", GeneralDistillConfig)
def general_distill(cfg: GeneralDistillConfig, src: Path | None, ctx: StageContext) -> StageResult:
    from compress.distillation import uniform_layer_map
    from compress.pretraining import mlm_check
    from compress.stages.pretrain import masked_lm, write_card

    source = cfg.teacher if cfg.teacher is not None else src
    assert source is not None
    teacher, tokenizer = masked_lm(source, None)
    student = mlm_student(cfg.student, teacher, tokenizer)
    torch.manual_seed(ctx.seed)
    with tempfile.TemporaryDirectory(dir=ctx.step_dir.parent, prefix=".general-") as tmp:
        work = Path(tmp)
        text = cfg.text.model_copy(update={"tags": "none"})  # words for masking, no tags
        train_rows, heldout = build_corpus(text, tokenizer, cfg.max_seq_len, work)
        source_batches = masked_batches(
            train_rows, cfg.batch_size, cfg.masking, tokenizer, ctx.seed
        )
        held = fixed_batches(heldout, cfg.eval_batch_size, cfg.masking, tokenizer, ctx.seed + 1)
        teacher.to(device())
        student.to(device())
        pairs = uniform_layer_map(
            teacher.config.num_hidden_layers, student.config.num_hidden_layers
        )
        before = closeness(teacher, student, held, pairs)
        distiller, matches, _ = build_distiller(cfg, teacher, student, "mlm", ctx.step_dir)
        check = mlm_check(LinguisticMLM(student, []), held, device())
        teacher_check = mlm_check(LinguisticMLM(teacher, []), held, device())
        teacher_check()
        loss_fn, add_projections = training_hooks(distiller, cfg.log_every)
        resume = Resume(ctx.resume_dir, cfg.save_every) if ctx.resume_dir else None

        def prepare(optimizer):
            optimizer = add_projections(optimizer)
            if resume is not None:  # the projections are trained too: saved with the student
                resume.modules = [p for p in getattr(distiller, "projs", None) or [] if p]
            return optimizer

        with distiller:
            result = train(
                student,
                loss_fn,
                BatchSource(source_batches.batches, source_batches.per_epoch),
                cfg,
                check,
                desc=ctx.step_name,
                metric="masked-LM acc",
                prepare=prepare,
                resume=resume,
                frozen=teacher,  # its forward pass on every batch (a rehearsal's FLOPs count it)
            )
        if hasattr(distiller.tb_writer, "close"):
            distiller.tb_writer.close()
        shutil.rmtree(ctx.step_dir / "checkpoints", ignore_errors=True)
        after = closeness(teacher, student, held, pairs)
        check()
    for model in (teacher, student):
        model.config.output_hidden_states = False
    details = {
        "train": result,
        "matches": matches,
        "teacher_heldout": {k: round(v, 4) for k, v in teacher_check.last.items()},  # type: ignore[attr-defined]
        "heldout": {k: round(v, 4) for k, v in check.last.items()},  # type: ignore[attr-defined]
        "closeness_before": before,
        "closeness_after": after,
        "data": {
            "sources": cfg.text.sources(),
            "train_rows": len(train_rows),
            "heldout_rows": len(heldout),
        },
        "params": count_parameters(student),
        "teacher_params": count_parameters(teacher),
        "vocab_size": len(tokenizer),
    }
    from compress.models import save_model

    out = save_model(student, tokenizer, ctx.step_dir / "model")
    write_card(out, "general-distill", details, ctx)
    return StageResult(out, details)
