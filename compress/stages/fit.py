"""Stage ``fit``: the best model under a latency, size and accuracy budget, chosen by
measurement on this machine and on the task's dev split.

1. Every candidate of ``space:`` (layers x heads x FFN x vocabulary x runtime) is built from
   random weights of its exact shape, converted to its runtime (int8 included), timed and sized
   here: latency and size depend on the shape and runtime, not on the weights. Those over the
   latency or size budget are rejected before any training.
2. The rest are searched with Optuna (a multi-objective TPE sampler: dev score up, latency
   down) in a study stored in SQLite beside the step, so that a killed search resumes with its
   finished trials and several workers share it (or in a database that fit-workers on other
   machines join: compress/fit/shared.py). A trial prunes the input to the candidate's
   shape with TextPruner, recovers it (KD from the input), converts it and scores it on dev
   against the reference, with the paired bootstrap interval the evaluator uses.
3. The winner (the most accurate within the budget, or the fastest within the accuracy budget)
   is the step's output, as the kind of artifact it is, and its trained copy is timed beside its
   probe to check the shortcut. Its folder also holds the pruned PyTorch model it was trained
   as (safetensors, config, tokenizer), for further fine-tuning, a GPU, or plain transformers.

The rooms it goes through, in order, are in compress/fit/ (its __init__ lists them); this file
is the story of one fit.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import numpy as np

from compress.database import shown
from compress.errors import CompressError, RecipeError
from compress.fit.probing import over_budget, priority, probe_all, probe_check
from compress.fit.shared import artifact_store, fetch_trial, publish_plan
from compress.fit.space import STUDY, Budget, Candidate, FitConfig, Plan, Probing, Space
from compress.fit.study import (
    choose_winner,
    open_study,
    release_interrupted,
    run_worker,
    snapshot,
    trial_artifacts,
    trial_results,
    wait_for_workers,
    worker_main,
)
from compress.fit.training import trained_dir
from compress.registry import StageContext, StageResult, stage

__all__ = ["Budget", "FitConfig", "NoFit", "Probing", "Space", "fit"]

log = logging.getLogger(__name__)


class NoFit(CompressError):
    """No candidate meets the budget."""

    def __init__(self, message: str, details: dict):
        super().__init__(message)
        self.details = details


@stage("fit", FitConfig)
def fit(cfg: FitConfig, src: Path | None, ctx: StageContext) -> StageResult:
    from compress.eval.runtimes import artifact_kind
    from compress.models import load_model
    from compress.signal import trivial_dev

    assert src is not None
    if getattr(load_model(src, ctx.task.type).config, "pruned_heads", None):
        raise RecipeError(
            f"fit: {src} has pruned heads already; give the fit step an unpruned model (the "
            "step before a prune step) and let it choose the heads"
        )
    work = ctx.resume_dir or ctx.step_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # 1. every candidate probed from random weights; those over budget never train
    probes, meta = probe_all(cfg, src, ctx, work)
    candidates = [Candidate(s, r) for s in cfg.space.shapes() for r in cfg.space.runtimes]
    status = {c.key: over_budget(cfg, probes[c.key]) for c in candidates}
    fitting = priority(cfg, [c for c in candidates if status[c.key] is None], probes)
    log.info(
        "fit: %d of %d candidates fit the latency and size budget when probed (%.0f s)",
        len(fitting),
        len(candidates),
        meta["seconds"],
    )
    # 2. the reference's dev counts, then the search over the rest
    _reference_counts(cfg, src, ctx, work)
    plan = Plan(cfg, src, ctx, fitting, probes)
    study = _search(plan)
    # 3. the winner, the table of every candidate, and what ships
    trials = snapshot(study)
    results = trial_results(trials)
    winner = choose_winner(cfg, results, probes)
    details = {
        "budget": cfg.budget.model_dump(mode="json"),
        "objective": cfg.objective,
        "probe": meta,
        "candidates": _table(candidates, probes, results, status, winner),
        "probed": len(candidates),
        "trained": len(results),
        "workers": cfg.workers,
        "search_seconds": round(time.perf_counter() - start, 1),
        "winner": winner,
        "trivial": trivial_dev(ctx.task)[0],
    }
    if winner is None:
        reasons = (
            "no candidate fits the latency and size budget"
            if not fitting
            else ("no trained candidate is within the accuracy budget")
        )
        raise NoFit(f"fit: {reasons}; see the step's details in manifest.json", details)
    if not results[winner].get("left_baseline", True):
        log.warning(
            "fit: the winner %s is within noise of the trivial predictor on dev (%s): no "
            "signal; train the input longer before fitting it",
            winner,
            details["trivial"]["description"],
        )
    chosen = next(c for c in candidates if c.key == winner)
    if not (work / results[winner]["path"]).exists():  # trained on another machine
        fetch_trial(plan, trial_artifacts(trials)[winner])
    produced, details["pytorch"] = _ship(work / results[winner]["path"], chosen, work, ctx)
    details["probe_check"] = probe_check(
        produced, work / probes[winner]["path"], probes[winner], cfg, ctx.task.type, meta["seq_len"]
    )
    if plan.shared:
        details["study"] = {"storage": shown(cfg.storage or ""), "name": plan.study_name}
    else:
        shutil.copy(plan.db, ctx.step_dir / STUDY)
    (ctx.step_dir / "fit.json").write_text(json.dumps(details, indent=1), encoding="utf-8")
    log.info("fit: chose %s (%d probed, %d trained)", winner, len(candidates), len(results))
    return StageResult(produced, details, kind=artifact_kind(produced))  # type: ignore[arg-type]


def _reference_counts(cfg: FitConfig, src: Path, ctx: StageContext, work: Path) -> None:
    """The reference's per-example dev counts, once (every candidate is judged against them)."""
    reference = work / "reference_dev_counts.npy"
    if reference.exists():
        return
    from compress.fit.artifacts import dev_counts

    path = src if cfg.budget.reference is None else ctx.outputs[cfg.budget.reference]
    counts = dev_counts(path, ctx.task, ctx.max_seq_len, cfg.budget.threads)
    np.save(work / "reference_dev_counts.partial.npy", counts)
    os.replace(work / "reference_dev_counts.partial.npy", reference)


def _search(plan: Plan):
    """The study opened (or resumed: trials a killed worker left running are queued again),
    seeded with the best candidates, and worked through by this process and ``workers - 1``
    spawned ones; in a shared database, by the fit-workers on other machines too (its plan
    published for them first). Returns the study once the search is over."""
    import torch

    cfg, ctx = plan.cfg, plan.ctx
    study = open_study(plan)
    if plan.shared:  # live workers elsewhere may hold running trials: heartbeats judge them
        publish_plan(plan, study, artifact_store(cfg))
    else:
        interrupted = release_interrupted(study)
        if interrupted:
            log.info("fit: resuming; %s were interrupted and run again", ", ".join(interrupted))
    if not study.trials and plan.fitting:
        # exhaustive when everything that fits can be trained (nothing to search); otherwise
        # the best candidate first, and the sampler proposes the rest
        first = plan.fitting if len(plan.fitting) <= cfg.max_trials else plan.fitting[:1]
        for c in first:
            study.enqueue_trial(c.params())
    extra = []
    if cfg.workers > 1 and plan.fitting:
        spawn = multiprocessing.get_context("spawn")
        ready = [spawn.Event() for _ in range(1, cfg.workers)]
        extra = [
            spawn.Process(
                target=worker_main,
                args=(cfg, str(plan.src), _picklable(ctx), plan.fitting, plan.probes, i, r),
            )
            for i, r in enumerate(ready, 1)
        ]
        for p in extra:
            p.start()
        for r in ready:
            r.wait(timeout=300)
    threads = cfg.budget.threads
    torch.set_num_threads(max(1, threads // max(1, cfg.workers)))
    try:
        if plan.fitting and cfg.workers:
            run_worker(plan)
        elif plan.fitting:
            wait_for_workers(plan, study)
    finally:
        for p in extra:
            p.join()
        torch.set_num_threads(threads)
    if any(p.exitcode for p in extra):
        raise CompressError("fit: a worker process failed; run the step again to resume")
    return study


def _table(candidates, probes: dict, results: dict, status: dict, winner) -> list[dict]:
    """One row per candidate: its probe, and for those trained their dev score, its interval
    against the reference and the trivial predictor, and what became of it."""
    table = []
    for c in candidates:
        row = {
            "key": c.key,
            **c.params(),
            **{k: probes[c.key][k] for k in ("size_mb", "vocab_size")},
        }
        row["latency"] = probes[c.key]["latency"]
        if c.key in results:
            r = results[c.key]
            if r.get("revert"):
                row["revert"] = r["revert"]
                if r["revert"].get("fp32"):  # what ships: the partly reverted model
                    row["latency"] = r["revert"]["latency"]
                    row["size_mb"] = r["revert"]["size_mb"]
            row |= {k: r[k] for k in ("dev_score", "dev_delta", "dev_delta_interval", "seconds")}
            trivial_keys = ("vs_trivial", "vs_trivial_interval", "left_baseline")
            row |= {k: r[k] for k in trivial_keys if k in r}
            row["status"] = (
                "chosen"
                if c.key == winner
                else (
                    r.get("over")
                    or ("within budget" if r["meets_accuracy"] else "over the accuracy budget")
                )
            )
        else:
            row["status"] = status[c.key] or "not reached"
        table.append(row)
    return table


def _ship(trained: Path, chosen: Candidate, work: Path, ctx: StageContext) -> tuple[Path, dict]:
    """The step's model folder: the winner's runtime file as trained, and beside it the pruned
    PyTorch model it was converted from (safetensors, config, tokenizer), so that the folder
    also reloads in plain transformers. Returns the runtime file and what the PyTorch copy is."""
    from compress.eval.runtimes import size_mb

    out = ctx.step_dir / "model"
    shutil.copytree(trained.parent, out, ignore=shutil.ignore_patterns(".done", "*.lock"))
    torch_dir = trained_dir(work, chosen.shape)
    copied = []
    for f in sorted(torch_dir.iterdir()):
        if f.is_file() and not f.name.startswith("."):
            shutil.copy(f, out / f.name)  # config.json: the one transformers wrote
            copied.append(f.name)
    weights = [n for n in copied if n.endswith(".safetensors")]
    return out / trained.name, {
        "files": weights,
        "size_mb": round(sum(size_mb(out / n) for n in weights), 3),
        "loads_with": "transformers AutoModelFor* .from_pretrained(this folder)",
    }


def _picklable(ctx: StageContext) -> StageContext:
    """The context a spawned worker gets (the recipe's configs stay behind)."""
    import dataclasses

    return dataclasses.replace(ctx, configs={}, inputs={}, outputs={})
