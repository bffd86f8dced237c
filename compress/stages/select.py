"""Stage ``select``: the better of earlier steps' models on the dev split, for later steps.

``best_of: [student, student-no-kd]`` scores each candidate on dev (never test) with the task
metric and passes the winner on, so that a KD student worse than its no-KD twin is not pruned
and shipped unknowingly. The step's output is a copy of the winner; which one won, and by how
much, is recorded in its details (the report and the cards of later steps say so).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from compress.arch import Arch
from compress.data import encode_splits
from compress.models import load_model, load_tokenizer
from compress.registry import StageConfig, StageContext, StageResult, stage
from compress.scoring import evaluate_torch

log = logging.getLogger(__name__)


class SelectConfig(StageConfig):
    """Pass on the candidate with the best dev score (the first wins a tie)."""

    # a copy of a model the report already has a row for
    evaluated: ClassVar[bool] = False

    best_of: list[str] = Field(
        min_length=2, description="earlier steps that write PyTorch models of the same task"
    )

    def default_input(self, previous, inputs) -> str | None:
        return self.best_of[0]

    def references(self) -> list[str]:
        return self.best_of[1:]

    def check(self, configs: Mapping[str, StageConfig]) -> list[str]:
        missing = [name for name in self.best_of if name not in configs]
        if missing:
            return [f"best_of: {missing[0]!r} is not an earlier step (earlier: {list(configs)})"]
        if len(set(self.best_of)) < len(self.best_of):
            return [f"best_of: {self.best_of} names a step twice"]
        return []

    def out_arch(self, in_arch: Arch | None, archs: Mapping) -> Arch | None:
        shapes = {archs.get(name) for name in self.best_of}
        return shapes.pop() if len(shapes) == 1 else None


@stage("select", SelectConfig)
def select(cfg: SelectConfig, src: Path | None, ctx: StageContext) -> StageResult:
    scores: dict[str, float] = {}
    for name in cfg.best_of:
        path = ctx.outputs[name]
        model, tokenizer = load_model(path, ctx.task.type), load_tokenizer(path)
        enc = encode_splits(ctx.task, tokenizer, ctx.max_seq_len, splits=("dev",))
        scores[name] = round(evaluate_torch(model, ctx.task, ctx.task.splits["dev"], enc["dev"]), 5)
        del model
    chosen = max(cfg.best_of, key=lambda n: scores[n])  # max keeps the first of equal scores
    runner_up = max((n for n in cfg.best_of if n != chosen), key=lambda n: scores[n])
    margin = scores[chosen] - scores[runner_up]
    why = (
        f"{chosen} scored {scores[chosen] * 100:.2f} on dev ({ctx.task.metric}), "
        f"{margin * 100:+.2f} points over {runner_up}"
    )
    first = cfg.best_of[0]
    if chosen != first:
        log.warning("%s: %s took %s, not %s: %s", ctx.step_name, ctx.step_name, chosen, first, why)
    else:
        log.info("%s: took %s: %s", ctx.step_name, chosen, why)
    out = ctx.step_dir / "model"
    shutil.copytree(ctx.outputs[chosen], out)
    (out / "README.md").unlink(missing_ok=True)  # the chosen step's card describes that step
    details = {"chosen": chosen, "dev_scores": scores, "split": "dev", "why": why}
    return StageResult(out, details)
