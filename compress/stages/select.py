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
from compress.scoring import score_counts

log = logging.getLogger(__name__)


class SelectConfig(StageConfig):
    """Pass on the candidate with the best dev score (the first wins a tie); when none of them
    leaves the trivial predictor on dev by its paired interval, the first of ``best_of``, with
    "no signal" recorded."""

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
    from compress.signal import NO_SIGNAL, against_trivial, outcome, torch_dev_counts, trivial_dev

    kind = ctx.task.type
    trivial, trivial_counts = trivial_dev(ctx.task)
    scores: dict[str, float] = {}
    against: dict[str, dict] = {}
    counts = {}
    for name in cfg.best_of:
        path = ctx.outputs[name]
        model, tokenizer = load_model(path, kind), load_tokenizer(path)
        enc = encode_splits(ctx.task, tokenizer, ctx.max_seq_len, splits=("dev",))
        counts[name] = torch_dev_counts(model, ctx.task, enc)
        scores[name] = round(score_counts(kind, counts[name]), 5)
        against[name] = against_trivial(kind, counts[name], trivial_counts, ctx.seed)
        del model
    best = max(cfg.best_of, key=lambda n: scores[n])  # max keeps the first of equal scores
    runner_up = max((n for n in cfg.best_of if n != best), key=lambda n: scores[n])
    verdict, interval = outcome(
        kind, counts[best], counts[runner_up], against[best]["left_baseline"], ctx.seed
    )
    margin = scores[best] - scores[runner_up]
    first = cfg.best_of[0]
    if verdict == NO_SIGNAL:  # nothing to choose by: the first named, as listed
        chosen = first
        why = (
            f"no signal: none left the {trivial['name']} baseline ({trivial['description']}, "
            f"{trivial['dev'] * 100:.2f} on dev; best {best} {scores[best] * 100:.2f}), so the "
            f"first of best_of, {first}, is passed on"
        )
    else:
        chosen = best
        lead = f"[{interval[0] * 100:+.2f}, {interval[1] * 100:+.2f}]"
        why = (
            f"{chosen} scored {scores[chosen] * 100:.2f} on dev ({ctx.task.metric}), "
            f"{margin * 100:+.2f} points over {runner_up} (paired 95% {lead}: "
            f"{'a finding' if verdict == 'finding' else 'within noise'})"
        )
    if chosen != first:
        log.warning("%s: %s took %s, not %s: %s", ctx.step_name, ctx.step_name, chosen, first, why)
    else:
        log.info("%s: took %s: %s", ctx.step_name, chosen, why)
    out = ctx.step_dir / "model"
    shutil.copytree(ctx.outputs[chosen], out)
    (out / "README.md").unlink(missing_ok=True)  # the chosen step's card describes that step
    details = {
        "chosen": chosen,
        "dev_scores": scores,
        "split": "dev",
        "why": why,
        "outcome": verdict,
        "trivial": trivial,
        "vs_trivial": against,
    }
    return StageResult(out, details)
