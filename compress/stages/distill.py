"""Stage ``distill``: the input model teaches a smaller student with TextBrewer."""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import shutil
from pathlib import Path
from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from compress.data import IGNORE, batch_indices, collate
from compress.models import ModelSource, count_parameters, load_tokenizer
from compress.registry import StageContext, stage
from compress.students import StudentConfig, build_student
from compress.training import (
    TrainConfig,
    device,
    encode_splits,
    load_model,
    param_groups,
    save_model,
)
from eval.accuracy import evaluate_torch

log = logging.getLogger(__name__)


class HiddenMatch(BaseModel):
    """One intermediate match: teacher hidden state ``layer_T`` against student ``layer_S``
    (0 is the embedding output). A linear projection is added when the widths differ."""

    model_config = ConfigDict(extra="forbid")

    layer_T: int = Field(ge=0)
    layer_S: int = Field(ge=0)
    loss: Literal["hidden_mse", "cos"] = "hidden_mse"
    weight: float = Field(1.0, ge=0)


class KDConfig(TrainConfig):
    """Knowledge-distillation settings (TextBrewer), whatever the student is."""

    lr: float = Field(1e-4, gt=0)
    temperature: float = Field(8.0, gt=0)
    kd_loss_type: Literal["ce", "mse"] = "ce"
    kd_loss_weight: float = Field(1.0, ge=0)
    hard_label_weight: float = Field(0.0, ge=0)
    # "uniform": hidden_mse on a uniform layer map; "none": logits only; or a list of matches.
    matches: Literal["uniform", "none"] | list[HiddenMatch] = "uniform"
    match_weight: float = Field(1.0, ge=0, description="weight of each uniform match")
    cache_teacher_logits: bool = True


class DistillConfig(KDConfig):
    """Distil the input model into a student (TextBrewer GeneralDistiller)."""

    student: StudentConfig
    model_key: ClassVar[str] = "student.init"

    def out_arch(self, in_arch, archs):
        from compress.arch import arch_of_source

        if self.student.init == "teacher":
            return in_arch.with_(layers=len(self.student.layers or [])) if in_arch else None
        if self.student.shape is not None:
            return arch_of_source(ModelSource(shape=self.student.shape))
        return arch_of_source(self.student.init)


def uniform_layer_map(teacher_layers: int, student_layers: int) -> list[tuple[int, int]]:
    """(teacher, student) hidden-state pairs, embeddings included: 24 -> 12 gives (0,0),(2,1),...
    (24,12)."""
    return [(round(i * teacher_layers / student_layers), i) for i in range(student_layers + 1)]


def textbrewer_matches(cfg: KDConfig, teacher_cfg, student_cfg) -> list[dict]:
    if cfg.matches == "none":
        return []
    if cfg.matches == "uniform":
        pairs = uniform_layer_map(teacher_cfg.num_hidden_layers, student_cfg.num_hidden_layers)
        chosen = [HiddenMatch(layer_T=t, layer_S=s, weight=cfg.match_weight) for t, s in pairs]
    else:
        chosen = cfg.matches
    width_T, width_S = teacher_cfg.hidden_size, student_cfg.hidden_size
    out = []
    for m in chosen:
        if m.layer_T > teacher_cfg.num_hidden_layers or m.layer_S > student_cfg.num_hidden_layers:
            raise ValueError(
                f"match {m.layer_T}->{m.layer_S} is outside the models' depths "
                f"({teacher_cfg.num_hidden_layers}, {student_cfg.num_hidden_layers})"
            )
        match = {
            "layer_T": m.layer_T,
            "layer_S": m.layer_S,
            "feature": "hidden",
            "loss": m.loss,
            "weight": m.weight,
        }
        if width_S != width_T:
            match["proj"] = ["linear", width_S, width_T, {}]
        out.append(match)
    return out


def make_adaptor(task_type: str):
    """TextBrewer adaptor: logits, hidden states, masks; NER masks padding and special tokens."""

    def adaptor(batch, outputs):
        out = {"logits": [outputs.logits], "inputs_mask": batch["attention_mask"]}
        if outputs.hidden_states is not None:
            out["hidden"] = list(outputs.hidden_states)
        if task_type == "ner":
            out["logits_mask"] = [batch["labels"] != IGNORE]
        if getattr(outputs, "loss", None) is not None:
            out["losses"] = [outputs.loss]
        return out

    return adaptor


class EpochBatches:
    """Length-bucketed batches, reshuffled at every pass (each epoch)."""

    def __init__(self, enc, batch_size: int, seed: int):
        self.enc, self.batch_size, self.seed, self.epoch = enc, batch_size, seed, 0
        self.n = len(batch_indices(enc, batch_size, shuffle=True, seed=seed))

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        self.epoch += 1
        for idx in batch_indices(self.enc, self.batch_size, True, self.seed + self.epoch):
            yield collate(self.enc, idx)


def _local_rank() -> int:
    """TextBrewer's DDP switch: the torchrun rank once a process group is up, else -1."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return int(os.environ.get("LOCAL_RANK", 0)) if distributed else -1


def build_distiller(
    cfg: KDConfig,
    teacher,
    student,
    task_type: str,
    log_dir: Path,
    work_dir: Path,
    ckpt_steps: int | None = None,
):
    """A TextBrewer distiller: BasicDistiller with a logits cache when only logits are matched
    and caching is on, else GeneralDistiller with the intermediate matches. ``ckpt_steps``:
    evaluate every so many steps when training for ``max_steps`` (else once per epoch)."""
    from textbrewer import BasicDistiller, DistillationConfig, GeneralDistiller, TrainingConfig

    matches = textbrewer_matches(cfg, teacher.config, student.config)
    cache = cfg.cache_teacher_logits and not matches and cfg.max_steps is None
    for model in (teacher, student):
        model.config.output_hidden_states = bool(matches)
    train_cfg = TrainingConfig(
        output_dir=str(work_dir),
        log_dir=str(log_dir),
        device=device(),
        ckpt_frequency=1,
        ckpt_steps=ckpt_steps,
        local_rank=_local_rank(),
    )
    distill_cfg = DistillationConfig(
        temperature=cfg.temperature,
        kd_loss_type=cfg.kd_loss_type,
        kd_loss_weight=cfg.kd_loss_weight,
        hard_label_weight=cfg.hard_label_weight,
        intermediate_matches=matches,
        is_caching_logits=cache,
    )
    adaptor = make_adaptor(task_type)
    cls = BasicDistiller if cache else GeneralDistiller
    return cls(train_cfg, distill_cfg, teacher, student, adaptor, adaptor), matches, cache


def distil_into(
    cfg: KDConfig, teacher, student, enc: dict, ctx: StageContext, out_dir: Path
) -> dict:
    """Train ``student`` from ``teacher`` on the encoded train split; keep the best dev weights.

    TensorBoard logs go to ``out_dir/logs``; per-epoch checkpoints are removed afterwards.
    """
    from transformers import get_linear_schedule_with_warmup

    task = ctx.task
    torch.manual_seed(ctx.seed)
    random.seed(ctx.seed)  # TextBrewer shuffles cached batches with the global generator
    work = out_dir / "checkpoints"
    loader = EpochBatches(enc["train"], cfg.batch_size, ctx.seed)
    distiller, matches, cached = build_distiller(
        cfg,
        teacher.to(device()),
        student.to(device()),
        task.type,
        out_dir / "logs",
        work,
        ckpt_steps=min(len(loader), cfg.max_steps or len(loader)),
    )
    epochs = math.ceil(cfg.epochs)
    steps = cfg.max_steps or epochs * len(loader)
    optimizer = torch.optim.AdamW(param_groups(student, cfg.weight_decay), lr=cfg.lr)
    best = {"dev": -1.0, "state": None, "step": 0}
    history = []

    def on_checkpoint(model, step):
        score = evaluate_torch(model, task, task.splits["dev"], enc["dev"], cfg.eval_batch_size)
        history.append({"step": step, "dev": score})
        log.info("%s: step %d dev %s %.4f", ctx.step_name, step, task.metric, score)
        if score > best["dev"]:
            best.update(dev=score, state=copy.deepcopy(model.state_dict()), step=step)

    with distiller:
        distiller.train(
            optimizer,
            loader,
            num_epochs=epochs if not cfg.max_steps else None,
            num_steps=cfg.max_steps,
            max_grad_norm=cfg.max_grad_norm,
            callback=on_checkpoint,
            scheduler_class=get_linear_schedule_with_warmup,
            scheduler_args={
                "num_warmup_steps": int(cfg.warmup_ratio * steps),
                "num_training_steps": steps,
            },
        )
    shutil.rmtree(work, ignore_errors=True)
    student.load_state_dict(best["state"])
    for model in (teacher, student):
        model.config.output_hidden_states = False
    return {
        "best_dev": best["dev"],
        "best_step": best["step"],
        "history": history,
        "matches": matches,
        "teacher_logits_cached": cached,
    }


@stage("distill", DistillConfig)
def distill(cfg: DistillConfig, src: Path | None, ctx: StageContext) -> Path:
    assert src is not None
    teacher, tokenizer = load_model(src, ctx.task.type), load_tokenizer(src)
    student, tokenizer = build_student(cfg.student, teacher, tokenizer, ctx.task)
    enc = encode_splits(ctx.task, tokenizer, ctx.recipe.task.max_seq_len)
    result = distil_into(cfg, teacher, student, enc, ctx, ctx.step_dir)
    ctx.record.update(
        result, params=count_parameters(student), teacher_params=count_parameters(teacher)
    )
    return save_model(student, tokenizer, ctx.step_dir / "model")
