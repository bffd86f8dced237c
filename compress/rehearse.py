"""``lert-compress run RECIPE --rehearse``: the recipe run at LERT's real shapes with random
weights (compress/rehearsal.py), each step's memory watched, and the cost plan of the real run
(compress/plan.py) written beside the rehearsal's report and printed."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path

from compress.errors import RecipeError

log = logging.getLogger(__name__)

# evaluation timed with fewer rounds: latency is not what a rehearsal is for (it times the
# real shapes once to show the evaluator runs on them, and what it costs)
EVALUATE_CAPS = {"evaluate.warmup": "1", "evaluate.repeats": "3", "evaluate.end_to_end": "20"}


class PeakMemory:
    """The largest resident memory of this process and its children while it is entered,
    sampled every ``every`` seconds."""

    def __init__(self, every: float = 0.2):
        import psutil

        self.process, self.every, self.peak = psutil.Process(), every, 0
        self._stop = threading.Event()

    def _rss(self) -> int:
        import psutil

        total = self.process.memory_info().rss
        for child in self.process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> PeakMemory:
        self.peak = self._rss()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def rehearse(check_recipe, name: str, overrides: list[str], out: Path, steps: int, evaluate=True):
    """Run recipe ``name`` as a rehearsal capped at ``steps`` optimizer steps per training run;
    returns its folder (``out/rehearsal/RECIPE``, with report.md, plan.md and plan.json)."""
    import psutil

    from compress import dist, models, trainer
    from compress.plan import cost_plan, memory_problems, plan_markdown
    from compress.rehearsal import prepare
    from compress.runner import run_recipe

    if steps < 1:
        raise RecipeError(f"--rehearse-steps {steps}: give at least 1 optimizer step")
    recipe = check_recipe(name, overrides)  # the recipe as the real run reads it, first
    given = {o.split("=", 1)[0] for o in overrides}
    base = out / "rehearsal"
    extra, record = prepare(recipe, overrides, base / "_inputs", steps)
    extra += [f"{k}={v}" for k, v in EVALUATE_CAPS.items() if k not in given]
    models.SUBSTITUTES.update(record.models)
    recipe = check_recipe(name, extra)
    # a training run the real run cannot fit here is said so, and rehearsed with the fix, so
    # that the steps after it are rehearsed too
    over = [m for m in memory_problems(recipe) if m.fix.split("=")[0] not in given]
    for problem in over:
        log.warning("rehearsal: %s; rehearsed with %s", problem.message, problem.fix)
    if over:
        extra += [m.fix for m in over]
        recipe = check_recipe(name, extra)
    root = base / recipe.name
    data = record.record() | {
        "evaluate": dict(EVALUATE_CAPS),
        "over_memory": [
            {"step": m.step, "problem": m.message, "rehearsed_with": m.fix} for m in over
        ],
    }
    if dist.is_main():
        root.mkdir(parents=True, exist_ok=True)
        (root / "rehearsal.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    observed: dict[str, dict] = {}
    runs_by_step: dict[str, list[dict]] = {}

    @contextlib.contextmanager
    def observe(step: str):
        first, start = len(trainer.REHEARSAL.runs), time.perf_counter()
        with PeakMemory() as memory:
            yield
        observed[step] = {
            "seconds": round(time.perf_counter() - start, 1),
            "peak_rss_mb": round(memory.peak / 2**20, 1),
        }
        runs_by_step[step] = trainer.REHEARSAL.runs[first:]

    with trainer.capped(steps):
        run_recipe(recipe, base, evaluate=evaluate, observe=observe)
    if not dist.is_main():
        return root
    memory_gb = psutil.virtual_memory().total / 2**30
    plan = cost_plan(data, runs_by_step, observed, memory_gb)
    plan["runs"] = runs_by_step  # every step's seconds and tokens, as measured
    (root / "plan.json").write_text(json.dumps(plan, indent=1), encoding="utf-8")
    threads = int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))
    text = plan_markdown(plan, recipe.name, threads)
    (root / "plan.md").write_text(text, encoding="utf-8")
    print(text)
    return root
