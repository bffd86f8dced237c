"""The search: one Optuna study (a multi-objective TPE sampler, dev score up, latency down)
stored in SQLite beside the step, so that a killed search resumes with its finished trials and
several workers share it. Each ask hands out one untrained candidate that fits the budget; a
worker trains it (compress/fit/training.py) and tells the study its score and latency."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from compress.fit.space import Candidate, FitConfig, Plan, Space
from compress.fit.training import train_candidate
from compress.registry import StageContext

log = logging.getLogger(__name__)


def open_study(db: Path, seed: int):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
    return optuna.create_study(
        study_name="fit",
        storage=f"sqlite:///{db}",
        directions=["maximize", "minimize"],
        sampler=sampler,
        load_if_exists=True,
    )


def distributions(space: Space) -> dict:
    from optuna.distributions import CategoricalDistribution

    return {
        "layers": CategoricalDistribution(space.layers),
        "heads": CategoricalDistribution(space.heads),
        "ffn": CategoricalDistribution(space.ffn),
        "vocabulary": CategoricalDistribution(
            ["full" if v is None else v for v in space.vocabulary]
        ),
        "runtime": CategoricalDistribution(space.runtimes),
    }


def claimed_keys(study) -> dict[str, str]:
    """Candidate key -> state of every trial that trained (or is training) one."""
    from optuna.trial import TrialState

    return {
        t.user_attrs["key"]: t.state.name
        for t in study.get_trials(deepcopy=False)
        if "key" in t.user_attrs and t.state in (TrialState.COMPLETE, TrialState.RUNNING)
    }


def release_interrupted(study) -> list[str]:
    """Trials a killed worker left running: failed, and their candidates queued again."""
    from optuna.trial import TrialState

    again = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)
        if "key" in t.user_attrs:
            study.enqueue_trial(Candidate.from_params(t.params).params())
            again.append(t.user_attrs["key"])
    return again


def next_trial(plan: Plan, study, dists):
    """Ask the study for the next candidate to train (None: the search is over). A proposal
    outside the fitting set, or one already claimed, is failed at once and the best untried
    candidate is queued in its place, so every ask makes progress."""
    from optuna.trial import TrialState

    fitting = {c.key: c for c in plan.fitting}
    for _ in range(4 * len(plan.cfg.space.shapes()) * len(plan.cfg.space.runtimes) + 4):
        claimed = claimed_keys(study)
        if len(claimed) >= plan.wanted() or settled(plan, study):
            return None
        trial = study.ask(fixed_distributions=dists)
        candidate = Candidate.from_params(trial.params)
        if candidate.key in fitting and candidate.key not in claimed:
            trial.set_user_attr("key", candidate.key)
            trial.set_user_attr("worker", os.getpid())
            return trial, candidate
        why = "already trained" if candidate.key in claimed else "over the budget when probed"
        trial.set_user_attr("skipped", f"{candidate.key}: {why}")
        study.tell(trial, state=TrialState.FAIL)
        untried = [c for c in plan.fitting if c.key not in claimed]
        if not untried:
            return None
        study.enqueue_trial(untried[0].params())
    return None


def settled(plan: Plan, study) -> bool:
    """objective fast: a candidate within the accuracy budget is known, and every untried one
    is slower (it cannot win)."""
    if plan.cfg.objective != "fast":
        return False
    results = trial_results(study)
    met = [p50(plan.probes, k, r) for k, r in results.items() if is_eligible(r)]
    if not met:
        return False
    claimed = claimed_keys(study)
    return all(
        plan.probes[c.key]["latency"]["p50"] >= min(met)
        for c in plan.fitting
        if c.key not in claimed
    )


def p50(probes: dict, key: str, result: dict | None = None) -> float:
    """A candidate's p50 for the budget: its probe's, or its reverted model's once part of an
    int8 model was kept in fp32."""
    reverted = (result or {}).get("revert") or {}
    return (reverted.get("latency") or probes[key]["latency"])["p50"]


def is_eligible(result: dict) -> bool:
    return result["meets_accuracy"] and not result.get("over")


def trial_results(study) -> dict[str, dict]:
    from optuna.trial import TrialState

    return {
        t.user_attrs["key"]: t.user_attrs["result"]
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if "result" in t.user_attrs
    }


def run_worker(plan: Plan, index: int = 0) -> int:
    """One worker: train, convert and score candidates until the search is over; returns how
    many it trained. The ask is serialised across local workers by a file lock beside the
    study (Optuna's SQLite storage hands each waiting trial out once, but a proposal and its
    claim must be one step)."""
    from filelock import FileLock

    study = open_study(plan.db, plan.ctx.seed + index)
    dists = distributions(plan.cfg.space)
    lock = FileLock(str(plan.db) + ".lock")
    trained = 0
    while True:
        with lock:
            got = next_trial(plan, study, dists)
        if got is None:
            return trained
        trial, candidate = got
        log.info("fit: training %s (worker %d)", candidate.key, os.getpid())
        result = train_candidate(plan, candidate)
        with lock:
            trial.set_user_attr("result", result)
            study.tell(trial, [result["dev_score"], p50(plan.probes, candidate.key, result)])
        trained += 1


def worker_main(cfg: FitConfig, src: str, ctx: StageContext, fitting, probes, index: int, ready):
    """An extra local worker (a spawned process); ``ready`` is set once it has loaded what
    training needs, so that the first worker does not take every trial while it starts."""
    import torch

    import compress.fit.training  # noqa: F401  (the training code, before saying ready)

    torch.set_num_threads(max(1, cfg.budget.threads // cfg.workers))
    ready.set()
    run_worker(Plan(cfg, Path(src), ctx, fitting, probes), index)


def choose_winner(cfg: FitConfig, results: dict, probes: dict) -> str | None:
    eligible = [k for k, r in results.items() if is_eligible(r)]
    if not eligible:
        return None
    if cfg.objective == "fast":
        return min(eligible, key=lambda k: (p50(probes, k, results[k]), -results[k]["dev_score"]))
    return max(eligible, key=lambda k: (results[k]["dev_score"], -p50(probes, k, results[k])))
