"""The one training loop, shared by fine-tuning, no-KD baselines, recovery and distillation.

What differs between them is only the loss of a batch (hard labels, or TextBrewer's distillation
loss) and where the batches come from. Step counting, the optimiser and schedule, the dev checks
(at the end of every epoch and at the last step) and keeping the best weights are done here once,
so that a KD student and its no-KD twin take exactly the same optimizer steps.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from compress import dist
from compress.errors import CompressError

log = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]


class TrainConfig(BaseModel):
    """Optimiser and schedule: AdamW with linear warm-up and decay."""

    model_config = ConfigDict(extra="forbid")

    epochs: float = Field(3.0, gt=0, description="passes over the train split; may be fractional")
    max_steps: int | None = Field(
        None, ge=1, description="the run's length in optimizer steps; replaces epochs when set"
    )
    batch_size: int = Field(
        32,
        ge=1,
        description="examples per optimizer step and process: with N processes (torchrun) a "
        "step sees N x batch_size",
    )
    lr: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    eval_batch_size: int = Field(64, ge=1)
    log_every: int = Field(
        25,
        ge=1,
        description="steps between loss readings (progress bar, TensorBoard): each reading "
        "waits for the device",
    )
    gradient_checkpointing: bool = Field(
        False,
        description="keep only each layer's input and recompute the rest in the backward pass "
        "(transformers' gradient checkpointing): a fraction of the activation memory for about "
        "a third more compute; what a large teacher at a long max_seq_len needs on a small "
        "machine",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="CUDA mixed precision: forward passes (teacher and student) under "
        "torch.autocast in bf16 or fp16, weights and optimizer state in fp32 (fp16 adds a "
        "gradient scaler)",
    )

    def train_options(self) -> dict:
        """These options alone, to build another ``TrainConfig`` with the same schedule."""
        return {k: getattr(self, k) for k in TrainConfig.model_fields}


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def mixed_precision(precision: str):
    """The autocast context of ``precision`` (nothing for fp32); mixed precision is CUDA-only."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if not torch.cuda.is_available():
        from compress.errors import CompressError

        raise CompressError(
            f"precision {precision}: mixed precision needs a CUDA device; use precision: fp32 "
            "on the CPU"
        )
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast("cuda", dtype=dtype)


def total_steps(cfg: TrainConfig, batches_per_epoch: int) -> int:
    """Optimizer steps of a run: ``max_steps``, else ``ceil(epochs x batches per epoch)``; at
    most the rehearsal's cap while one runs."""
    steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * batches_per_epoch))
    return steps if REHEARSAL.cap is None else min(steps, REHEARSAL.cap)


@dataclass
class Runs:
    """A rehearsal's cap on every training run, and what each run did: its optimizer steps,
    their seconds and tokens, the steps it would take uncapped, and what it trained."""

    cap: int | None = None
    runs: list[dict] = field(default_factory=list)

    def start(self, desc: str, cfg: TrainConfig, per_epoch: int, model, frozen=None):
        if self.cap is None:
            return None
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        forward_only = list(frozen.named_parameters()) if frozen is not None else []
        run = {
            "run": desc,
            "per_epoch": per_epoch,
            "epochs": cfg.epochs,
            "max_steps": cfg.max_steps,
            "batch_size": getattr(cfg, "batch_size", None),
            "precision": cfg.precision,
            "uncapped_steps": cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch)),
            # weights a step multiplies by (embedding lookups are not matrix products)
            "matmul_params": sum(p.numel() for n, p in trainable if "embeddings" not in n),
            "frozen_matmul_params": sum(
                p.numel() for n, p in forward_only if "embeddings" not in n
            ),
            "step_seconds": [],
            "step_tokens": [],
        }
        self.runs.append(run)
        return run


REHEARSAL = Runs()


@contextlib.contextmanager
def capped(steps: int):
    """Every training run inside takes at most ``steps`` optimizer steps, and is recorded in
    ``REHEARSAL.runs``."""
    REHEARSAL.cap, REHEARSAL.runs = steps, []
    try:
        yield REHEARSAL
    finally:
        REHEARSAL.cap = None


def param_groups(model, weight_decay: float) -> list[dict]:
    """Weight decay on weights, none on biases and LayerNorm."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in named if not _no_decay(n)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if _no_decay(n)], "weight_decay": 0.0},
    ]


def _no_decay(name: str) -> bool:
    return name.endswith("bias") or "LayerNorm" in name


@dataclass
class BatchSource:
    """The batches of each epoch: ``batches(epoch)`` for epoch 1, 2, ...; ``per_epoch`` of them."""

    batches: Callable[[int], Iterable]
    per_epoch: int


class KeepBest:
    """The best dev score seen so far and a copy of the weights that reached it."""

    def __init__(self) -> None:
        self.score, self.step, self.epoch, self.state = -1.0, 0, 0, None
        self.history: list[dict] = []

    def offer(self, model, score: float, step: int, epoch: int, seconds: float) -> None:
        self.history.append({"epoch": epoch, "step": step, "dev": score, "seconds": seconds})
        if score > self.score:
            self.score, self.step, self.epoch = score, step, epoch
            self.state = copy.deepcopy(model.state_dict())

    def restore(self, model) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


@dataclass
class Resume:
    """Where a long training run saves its whole state every ``every`` steps (the first process
    only, replacing the file atomically), so that a killed run continues from there instead of
    from the start. ``extra`` is the caller's own state, restored in place; ``modules`` are
    trained besides the model (TextBrewer's projections)."""

    directory: Path
    every: int
    extra: dict = field(default_factory=dict)
    modules: list = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.directory / "train-state.pt"

    def save(self, model, optimizer, schedule, scaler, best: KeepBest, position: dict) -> None:
        if not dist.is_main():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        state = {
            "model": model.state_dict(),
            "modules": [m.state_dict() for m in self.modules],
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "scaler": scaler.state_dict(),
            "best": {k: getattr(best, k) for k in ("score", "step", "epoch", "state", "history")},
            "position": position,
            "extra": copy.deepcopy(self.extra),
            "rng": torch.get_rng_state(),
            # a resumed GPU run draws the same dropout masks as an uninterrupted one
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    def load(self, model, optimizer, schedule, scaler, best: KeepBest) -> dict | None:
        """The position (step, epoch, batches into it, seconds) to continue from, or None."""
        if not self.path.is_file():
            return None
        # on the CPU: torch.set_rng_state takes a CPU ByteTensor only; load_state_dict copies
        # the weights, and the optimizer moves its state, to wherever the model lives
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        for module, saved in zip(self.modules, state["modules"], strict=True):
            module.load_state_dict(saved)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        scaler.load_state_dict(state["scaler"])
        for key, value in state["best"].items():
            setattr(best, key, value)
        self.extra.clear()
        self.extra.update(state["extra"])
        torch.set_rng_state(state["rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        log.info("continuing a killed run from step %d (%s)", state["position"]["step"], self.path)
        return state["position"]


def train(
    model,
    loss_fn: Callable[[object], torch.Tensor],
    source: BatchSource,
    cfg: TrainConfig,
    evaluate: Callable[[], float],
    *,
    desc: str,
    metric: str = "dev",
    prepare: Callable[[torch.optim.Optimizer], torch.optim.Optimizer] | None = None,
    resume: Resume | None = None,
    frozen=None,
) -> dict:
    """Train ``model`` on ``loss_fn(batch)``; check dev at each epoch end and at the last step,
    and leave the best weights in ``model``.

    ``prepare(optimizer)`` may add parameter groups (e.g. TextBrewer's projections) before the
    schedule is built; ``frozen`` is a model ``loss_fn`` runs forward on every batch besides
    ``model`` (a teacher without a logits cache), for a rehearsal's cost record. With
    ``resume``, the state is saved every ``resume.every`` steps and a saved state is continued
    from (the batches of its epoch already seen are skipped).
    """
    from transformers import get_linear_schedule_with_warmup

    autocast = mixed_precision(cfg.precision)  # refuses before any work where it cannot run
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16")
    steps = total_steps(cfg, source.per_epoch)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    if prepare is not None:
        optimizer = prepare(optimizer)
    schedule = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * steps), steps)
    record = REHEARSAL.start(desc, cfg, source.per_epoch, model, frozen)
    if cfg.gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise CompressError(
                f"{desc}: gradient_checkpointing: {type(model).__name__} cannot recompute its "
                "layers; leave it off for this step"
            )
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    best = KeepBest()
    step, epoch = 0, 0
    spent = 0.0  # training seconds, dev checks excluded
    skip = 0  # batches of the first epoch already trained on before a kill
    skipped = 0  # batches whose fp16 gradients overflowed (no optimizer step)
    position = resume.load(model, optimizer, schedule, scaler, best) if resume else None
    if position:
        step, epoch, skip, spent = (position[k] for k in ("step", "epoch", "in_epoch", "spent"))
        epoch -= 1  # the loop below enters that epoch again
    model.train()
    with tqdm(total=steps, initial=step, desc=desc, unit="step", disable=not dist.is_main()) as bar:
        while step < steps:
            epoch += 1
            started = time.perf_counter()
            for in_epoch, batch in enumerate(source.batches(epoch), 1):
                if in_epoch <= skip:
                    continue
                began = time.perf_counter()
                with autocast:
                    loss = loss_fn(batch)
                if not optimizer_step(loss, model, optimizer, scaler, cfg.max_grad_norm):
                    skipped += 1  # fp16 overflow: the scaler skipped it; not a step
                    continue
                if record is not None:
                    record["step_seconds"].append(round(time.perf_counter() - began, 4))
                    record["step_tokens"].append(_tokens(batch))
                schedule.step()
                step += 1
                bar.update(1)
                if step % cfg.log_every == 0 or step == steps:
                    bar.set_postfix(epoch=epoch, loss=f"{loss.item():.4f}")
                if resume and step % resume.every == 0 and step < steps:
                    here = {"step": step, "epoch": epoch, "in_epoch": in_epoch}
                    spent_now = spent + time.perf_counter() - started
                    resume.save(
                        model, optimizer, schedule, scaler, best, {**here, "spent": spent_now}
                    )
                if step >= steps:
                    break
            skip = 0
            spent += time.perf_counter() - started
            score = evaluate()
            model.train()
            best.offer(model, score, step, epoch, round(spent, 2))
            log.info("%s: epoch %d step %d dev %s %.4f", desc, epoch, step, metric, score)
    best.restore(model)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_disable()
    result = {
        "precision": cfg.precision,
        "best_dev": best.score,
        "best_epoch": best.epoch,
        "best_step": best.step,
        "steps": step,
        "history": best.history,
    }
    if scaler.is_enabled():
        result["overflow_skipped_batches"] = skipped
    if dist.active():
        result["processes"] = {
            "world_size": dist.world_size(),
            "backend": dist.backend(),
            # a checksum of the final weights on each process: they must all agree
            "weight_checksums": dist.gather(weight_checksum(model)),
        }
    return result


def _tokens(batch) -> int:
    """Token positions in a batch (padding included: the model computes them too); a cached
    batch is ``[batch, logits]``."""
    if isinstance(batch, (list, tuple)) and batch:
        return _tokens(batch[0])
    ids = batch.get("input_ids") if isinstance(batch, dict) else None
    return int(ids.numel()) if ids is not None else 0


def optimizer_step(loss, model, optimizer, scaler, max_grad_norm: float) -> bool:
    """Backward, clip and step; False when the fp16 scaler found inf/NaN gradients and skipped
    the optimizer (its scale then drops): such a batch must not advance the schedule or count
    as a step."""
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    before = scaler.get_scale() if scaler.is_enabled() else None
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return before is None or scaler.get_scale() >= before


def weight_checksum(model) -> str:
    """A short digest of every parameter's bytes."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def shuffled_batches(enc, batch_size: int, seed: int) -> BatchSource:
    """Length-bucketed batches of ``enc``, reshuffled with ``seed + epoch`` at every epoch; with
    several processes, each takes its own share of every epoch's batches (``batch_size`` is per
    process)."""
    from compress.data import batch_indices, collate

    def batches(epoch: int):
        for idx in dist.shard(batch_indices(enc, batch_size, shuffle=True, seed=seed + epoch)):
            yield collate(enc, idx)

    per_epoch = len(dist.shard(batch_indices(enc, batch_size, shuffle=True, seed=seed)))
    return BatchSource(batches, per_epoch)


def dev_check(model, task, enc, batch_size: int) -> Callable[[], float]:
    """The task metric of ``model`` on the dev split, as a ``train`` evaluation callback."""
    from compress.scoring import evaluate_torch

    return lambda: evaluate_torch(model, task, task.splits["dev"], enc["dev"], batch_size)


def fit(model, task, enc: dict, cfg: TrainConfig, seed: int, desc: str = "train") -> dict:
    """Train on the task's hard labels (fine-tuning, no-KD baselines, recovery)."""
    torch.manual_seed(seed)
    dev = device()
    model.to(dev)
    parallel = dist.wrap(model)  # gradients averaged across processes, if there are several

    def loss_fn(batch: Batch) -> torch.Tensor:
        return parallel(**{k: v.to(dev) for k, v in batch.items()}).loss

    return train(
        model,
        loss_fn,
        shuffled_batches(enc["train"], cfg.batch_size, seed),
        cfg,
        dev_check(model, task, enc, cfg.eval_batch_size),
        desc=desc,
        metric=task.metric,
    )
