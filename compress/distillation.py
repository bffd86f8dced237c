"""Knowledge distillation with TextBrewer: configs, layer maps, adaptors and the KD loss, run by
the shared training loop (``compress.trainer``). Used by the distill stage and KD recovery."""

from __future__ import annotations

import logging
import math
import random
import shutil
import time
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tqdm.auto import tqdm

from compress import dist
from compress.data import IGNORE
from compress.trainer import (
    BatchSource,
    TrainConfig,
    dev_check,
    device,
    mixed_precision,
    shuffled_batches,
    train,
)

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
    kd_loss_scale: Literal["t2", "none"] = Field(
        "t2",
        description="t2: the KD loss is multiplied by temperature squared (Hinton et al.), as "
        "TextBrewer's kd_ce_loss does not; its gradient then keeps the hard-label loss's scale "
        "whatever the temperature. none: TextBrewer's loss as is (at T=8 its gradient is about "
        "1/64 of that)",
    )
    hard_label_weight: float = Field(0.0, ge=0)
    # "uniform": hidden_mse on a uniform layer map; "none": logits only; or a list of matches.
    matches: Literal["uniform", "none"] | list[HiddenMatch] = "uniform"
    match_weight: float = Field(1.0, ge=0, description="weight of each uniform match")
    cache_teacher_logits: bool = True

    @model_validator(mode="after")
    def _one_meaning(self) -> KDConfig:
        matched = self.matches != "none" and self.matches != []
        if (
            matched
            and self.cache_teacher_logits
            and "cache_teacher_logits" in self.model_fields_set
        ):
            raise ValueError(
                "cache_teacher_logits: true caches logits only, but matches: also needs the "
                "teacher's hidden states on every batch; set matches: none or drop "
                "cache_teacher_logits"
            )
        if self.kd_loss_weight == 0 and self.hard_label_weight == 0 and not matched:
            raise ValueError(
                "kd_loss_weight and hard_label_weight are both 0 and nothing is matched: the "
                "student would learn nothing; give one a weight"
            )
        return self


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


# what a masked position's logit becomes: far below any real one, yet finite, so that a
# softmax at any temperature gives it zero weight without 0 * inf = NaN in the KD loss
MASKED_LOGIT = -1e4


def answer_positions(batch) -> torch.Tensor:
    """Where a QA answer can start or end: the context's real tokens, and [CLS] (a window
    without the answer points there); not the question, its [SEP] or the padding."""
    keep = batch["attention_mask"].bool() & (batch["token_type_ids"] == 1)
    keep[:, 0] = True
    return keep


def make_adaptor(task_type: str):
    """TextBrewer adaptor: logits, hidden states, masks; NER masks padding and special tokens,
    QA distils its start and end logits over the positions an answer can take, a masked LM
    (``mlm``, general distillation) its logits at the masked positions."""

    def adaptor(batch, outputs):
        if task_type == "qa":
            # TextBrewer's logits_mask has no effect on 2-D logits (select_logits_with_mask),
            # so the positions are masked in the logits themselves, for teacher and student
            keep = answer_positions(batch)
            out = {
                "logits": [
                    outputs.start_logits.masked_fill(~keep, MASKED_LOGIT),
                    outputs.end_logits.masked_fill(~keep, MASKED_LOGIT),
                ],
                "inputs_mask": batch["attention_mask"],
            }
        else:
            out = {"logits": [outputs.logits], "inputs_mask": batch["attention_mask"]}
        if outputs.hidden_states is not None:
            out["hidden"] = list(outputs.hidden_states)
        if task_type in ("ner", "mlm"):
            out["logits_mask"] = [batch["labels"] != IGNORE]
        if getattr(outputs, "loss", None) is not None:
            out["losses"] = [outputs.loss]
        return out

    return adaptor


def effective_kd_weight(cfg: KDConfig) -> float:
    """The weight TextBrewer gets for the KD loss: with ``kd_loss_scale: t2``, times T²."""
    return cfg.kd_loss_weight * (cfg.temperature**2 if cfg.kd_loss_scale == "t2" else 1.0)


def build_distiller(cfg: KDConfig, teacher, student, task_type: str, out_dir: Path):
    """A TextBrewer distiller: BasicDistiller with a logits cache when only logits are matched
    and caching is on, else GeneralDistiller with the intermediate matches. TensorBoard logs go
    to ``out_dir/logs``."""
    from textbrewer import BasicDistiller, DistillationConfig, GeneralDistiller, TrainingConfig

    matches = textbrewer_matches(cfg, teacher.config, student.config)
    cache = cfg.cache_teacher_logits and not matches
    for model in (teacher, student):
        model.config.output_hidden_states = bool(matches)
    # TextBrewer's own DDP switch stays off (local_rank -1): it would wrap the frozen teacher
    # too (a teacher-sized gradient buffer and a broadcast per forward); ``training_hooks``
    # wraps the student and its projections alone. So each process is TextBrewer's "rank 0":
    # only the first writes TensorBoard logs.
    train_cfg = TrainingConfig(
        log_dir=str(out_dir / "logs") if dist.is_main() else None,
        # TextBrewer creates it (the loop saves nothing there); one per process, no race
        output_dir=str(out_dir / "checkpoints" / f"rank-{dist.rank()}"),
        # where the student is: a CPU test on a GPU host, or the run's device
        device=next(student.parameters()).device,
        local_rank=-1,
    )
    distill_cfg = DistillationConfig(
        temperature=cfg.temperature,
        kd_loss_type=cfg.kd_loss_type,
        kd_loss_weight=effective_kd_weight(cfg),
        hard_label_weight=cfg.hard_label_weight,
        intermediate_matches=matches,
        is_caching_logits=cache,
    )
    adaptor = make_adaptor(task_type)
    cls = BasicDistiller if cache else GeneralDistiller
    return cls(train_cfg, distill_cfg, teacher, student, adaptor, adaptor), matches, cache


def cached_batches(distiller, source: BatchSource, seed: int) -> BatchSource:
    """One teacher pass over epoch 1's batches, kept with their logits; later epochs replay
    them in a new seeded order (TextBrewer's logits cache)."""
    # each process caches the logits of its own share of the batches: one teacher pass in all
    batches = tqdm(
        source.batches(1), total=source.per_epoch, desc="teacher logits", disable=not dist.is_main()
    )
    for batch in batches:
        distiller.cache_logits(batch, {}, None)
        # TextBrewer keeps the batch it moved to the device (its logits it moves to the CPU):
        # keep the host copy instead, so the cache does not hold every batch on the GPU
        distiller.logits_cache[-1][0] = batch
    cache, rng = distiller.logits_cache, random.Random(seed)

    def batches(epoch: int):
        rng.shuffle(cache)
        yield from list(cache)

    return BatchSource(batches, len(cache))


def with_transfer(source: BatchSource, transfer, rows_per_epoch: int, batch_size: int, seed: int):
    """The labelled batches of each epoch and ``rows_per_epoch`` transfer rows (in batches of
    their own, so the hard-label loss only ever sees labelled rows), interleaved at random."""
    from compress.transfer import epoch_batches

    n_transfer = len(
        dist.shard(list(range(math.ceil(min(rows_per_epoch, len(transfer)) / batch_size))))
    )

    def batches(epoch: int):
        labelled = iter(source.batches(epoch))
        unlabelled = epoch_batches(transfer, rows_per_epoch, batch_size, seed, epoch)
        order = [True] * source.per_epoch + [False] * n_transfer
        random.Random(seed + 7919 * epoch).shuffle(order)
        for is_labelled in order:
            yield next(labelled) if is_labelled else next(unlabelled)

    return BatchSource(batches, source.per_epoch + n_transfer)


def training_hooks(distiller, log_every: int = 1):
    """``(loss_fn, prepare)`` for the shared loop: a batch's TextBrewer loss (logged to
    TensorBoard every ``log_every`` batches: each reading waits for the device), and the
    optimizer with TextBrewer's projections added (and, under torchrun, the student and
    projections wrapped for gradient averaging; the teacher is never wrapped)."""
    written = 0

    def loss_fn(batch) -> torch.Tensor:
        nonlocal written
        loss, parts = distiller.train_on_batch(batch, {})
        if written % log_every == 0:
            distiller.write_loss(loss, written, parts)
        written += 1
        return loss

    def prepare(optimizer):
        optimizer = distiller.initialize_training(optimizer, None, None, None)[0]
        if dist.active():
            distiller.model_S = dist.wrap(distiller.model_S)
            for i, proj in enumerate(getattr(distiller, "projs", []) or []):
                if proj is not None:
                    distiller.projs[i] = dist.wrap(proj)
        return optimizer

    return loss_fn, prepare


def distil(
    cfg: KDConfig,
    teacher,
    student,
    task,
    enc: dict,
    seed: int,
    desc: str,
    out_dir: Path,
    transfer=None,
    transfer_rows: int = 0,
):
    """Train ``student`` from ``teacher`` on the encoded train split with the shared loop; the
    best dev weights stay in ``student``. TensorBoard logs go to ``out_dir/logs``. With a
    ``transfer`` set (``compress.transfer``), ``transfer_rows`` of its rows join each epoch."""
    torch.manual_seed(seed)
    teacher.to(device())
    student.to(device())
    distiller, matches, cached = build_distiller(cfg, teacher, student, task.type, out_dir)
    source = shuffled_batches(enc["train"], cfg.batch_size, seed)
    loss_fn, prepare = training_hooks(distiller, cfg.log_every)
    cache_seconds = 0.0
    with distiller:
        if cached:
            started = time.perf_counter()
            with mixed_precision(cfg.precision):  # the teacher's pass in the run's precision
                source = cached_batches(distiller, source, seed)
            cache_seconds = round(time.perf_counter() - started, 2)
        if transfer is not None:
            source = with_transfer(source, transfer, transfer_rows, cfg.batch_size, seed)
        result = train(
            student,
            loss_fn,
            source,
            cfg,
            dev_check(student, task, enc, cfg.eval_batch_size),
            desc=desc,
            metric=task.metric,
            prepare=prepare,
            frozen=None if cached else teacher,
        )
    if hasattr(distiller.tb_writer, "close"):
        distiller.tb_writer.close()
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    for model in (teacher, student):
        model.config.output_hidden_states = False
    return {
        **result,
        "matches": matches,
        "teacher_logits_cached": cached,
        "teacher_cache_seconds": cache_seconds,
    }
