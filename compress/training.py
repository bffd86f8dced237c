"""The shared supervised training loop (fine-tuning, no-KD baselines, recovery after pruning)."""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from compress.data import Encoded, batches, encode
from compress.tasks import TaskData
from eval.accuracy import evaluate_torch

log = logging.getLogger(__name__)


class TrainConfig(BaseModel):
    """Optimiser and schedule: AdamW with linear warm-up and decay."""

    model_config = ConfigDict(extra="forbid")

    epochs: float = Field(3.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    eval_batch_size: int = Field(64, ge=1)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def encode_splits(task: TaskData, tokenizer, max_len: int, splits=("train", "dev")) -> dict:
    return {s: encode(task.splits[s], tokenizer, task, max_len) for s in splits}


def total_steps(cfg: TrainConfig, n_examples: int) -> int:
    per_epoch = math.ceil(n_examples / cfg.batch_size)
    return cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch))


def param_groups(model, weight_decay: float) -> list[dict]:
    """Weight decay on weights, none on biases and LayerNorm."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in named if not _no_decay(n)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if _no_decay(n)], "weight_decay": 0.0},
    ]


def optimizer_and_schedule(model, cfg: TrainConfig, steps: int):
    """AdamW (no decay on biases and LayerNorm) and a linear warm-up/decay schedule."""
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    schedule = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * steps), steps)
    return optimizer, schedule


def _no_decay(name: str) -> bool:
    return name.endswith("bias") or "LayerNorm" in name


def fit(
    model, task: TaskData, enc: dict[str, Encoded], cfg: TrainConfig, seed: int, desc: str = "train"
) -> dict:
    """Train on hard labels; evaluate on dev after each epoch and keep the best weights."""
    torch.manual_seed(seed)
    dev = device()
    model.to(dev).train()
    steps = total_steps(cfg, len(enc["train"]))
    optimizer, schedule = optimizer_and_schedule(model, cfg, steps)
    best = {"dev": -1.0, "state": None, "epoch": 0}
    history = []
    step, epoch = 0, 0
    with tqdm(total=steps, desc=desc, unit="step") as bar:
        while step < steps:
            epoch += 1
            for batch in batches(enc["train"], cfg.batch_size, shuffle=True, seed=seed + epoch):
                loss = model(**{k: v.to(dev) for k, v in batch.items()}).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss.item():.4f}")
                if step >= steps:
                    break
            score = evaluate_torch(model, task, task.splits["dev"], enc["dev"], cfg.eval_batch_size)
            history.append({"epoch": epoch, "step": step, "dev": score})
            log.info("%s: epoch %d step %d dev %s %.4f", desc, epoch, step, task.metric, score)
            if score > best["dev"]:
                best = {"dev": score, "state": copy.deepcopy(model.state_dict()), "epoch": epoch}
    model.load_state_dict(best["state"])
    return {"best_dev": best["dev"], "best_epoch": best["epoch"], "steps": step, "history": history}


def save_model(model, tokenizer, out: Path) -> Path:
    """A plain Hugging Face directory: safetensors weights, config with labels, tokenizer."""
    out.mkdir(parents=True, exist_ok=True)
    model.to("cpu").save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def load_model(path: Path, task_type: str):
    from compress.models import model_class

    return model_class(task_type).from_pretrained(path)
