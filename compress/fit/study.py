"""The search: one Optuna study (a multi-objective TPE sampler, dev score up, latency down)
stored in SQLite beside the step (or in a database machines share: compress/fit/shared.py), so
that a killed search resumes with its finished trials and several workers share it. Each ask
hands out one untrained candidate that fits the budget; a worker trains it
(compress/fit/training.py) and tells the study its score and latency."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from compress.fit.shared import (
    artifact_store,
    fail_stale,
    heartbeats,
    open_storage,
    upload_trial,
    worker_name,
)
from compress.fit.space import Candidate, FitConfig, Plan, Space
from compress.fit.training import train_candidate
from compress.registry import StageContext

log = logging.getLogger(__name__)


def open_study(plan: Plan, index: int = 0, storage=None):
    """The plan's study: SQLite in the step's folder, or the shared database (``storage``: an
    opened one, for its heartbeats)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage is None:
        storage = open_storage(plan.cfg) if plan.shared else f"sqlite:///{plan.db}"
    sampler = optuna.samplers.TPESampler(seed=plan.ctx.seed + index, multivariate=True)
    return optuna.create_study(
        study_name=plan.study_name,
        storage=storage,
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


def snapshot(study) -> list:
    """The study's trials read once: every judgement below (what is running, claimed, done)
    is made on one reading, since workers change the study between two."""
    return study.get_trials(deepcopy=False)


def claimed_keys(trials) -> dict[str, str]:
    """Candidate key -> state of every trial that trained (or is training) one."""
    from optuna.trial import TrialState

    return {
        t.user_attrs["key"]: t.state.name
        for t in trials
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


def next_trial(plan: Plan, study, dists, on_ask=None):
    """Ask the study for the next candidate to train (None: the search is over). A proposal
    outside the fitting set, or one already claimed, is failed at once and the best untried
    candidate is queued in its place, so every ask makes progress."""
    from optuna.trial import TrialState

    fitting = {c.key: c for c in plan.fitting}
    if plan.shared:
        fail_stale(study)
    for _ in range(4 * len(plan.cfg.space.shapes()) * len(plan.cfg.space.runtimes) + 4):
        trials = snapshot(study)
        claimed = claimed_keys(trials)
        if len(claimed) >= plan.wanted() or settled(plan, trials):
            return None
        trial = study.ask(fixed_distributions=dists)
        if on_ask is not None:
            on_ask(trial)
        candidate = Candidate.from_params(trial.params)
        if candidate.key in fitting and candidate.key not in claimed:
            trial.set_user_attr("key", candidate.key)
            trial.set_user_attr("worker", worker_name())
            if not plan.shared or _first_claim(plan, study, trial, candidate):
                return trial, candidate
            why = "claimed by another worker at the same moment"
        else:
            why = "already trained" if candidate.key in claimed else "over the budget when probed"
        trial.set_user_attr("skipped", f"{candidate.key}: {why}")
        study.tell(trial, state=TrialState.FAIL)
        untried = [c for c in plan.fitting if c.key not in claimed]
        if not untried:
            return None
        study.enqueue_trial(untried[0].params())
    return None


def _first_claim(plan: Plan, study, trial, candidate: Candidate) -> bool:
    """Whether ``trial`` holds its candidate and a place within max_trials. Workers on other
    machines share no lock: each writes its claim, then reads every claim; of two claims of
    one candidate (or past max_trials) the lower trial number wins, so each one that wrote
    before the other read sees it, and exactly one trains."""
    from optuna.trial import TrialState

    first: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE)):
        if "key" in t.user_attrs:
            key = t.user_attrs["key"]
            first[key] = min(first.get(key, t.number), t.number)
    if first.get(candidate.key) != trial.number:
        return False
    return sorted(first.values()).index(trial.number) < plan.wanted()


def running_elsewhere(trials) -> list[str]:
    """``key@worker`` of every trial being trained now."""
    from optuna.trial import TrialState

    return [
        f"{t.user_attrs['key']}@{t.user_attrs.get('worker', '?')}"
        for t in trials
        if t.state == TrialState.RUNNING and "key" in t.user_attrs
    ]


def settled(plan: Plan, trials) -> bool:
    """objective fast: a candidate within the accuracy budget is known, and every untried one
    is slower (it cannot win)."""
    if plan.cfg.objective != "fast":
        return False
    results = trial_results(trials)
    met = [p50(plan.probes, k, r) for k, r in results.items() if is_eligible(r)]
    if not met:
        return False
    claimed = claimed_keys(trials)
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


def trial_results(trials) -> dict[str, dict]:
    from optuna.trial import TrialState

    return {
        t.user_attrs["key"]: t.user_attrs["result"]
        for t in trials
        if t.state == TrialState.COMPLETE and "result" in t.user_attrs
    }


def trial_artifacts(trials) -> dict[str, str]:
    """Candidate key -> the artifact its worker uploaded (a shared study's trials)."""
    from optuna.trial import TrialState

    return {
        t.user_attrs["key"]: t.user_attrs["artifact"]
        for t in trials
        if t.state == TrialState.COMPLETE and "artifact" in t.user_attrs
    }


def run_worker(plan: Plan, index: int = 0) -> int:
    """One worker: train, convert and score candidates until the search is over; returns how
    many it trained. In SQLite the ask is serialised across local workers by a file lock
    beside the study (Optuna's storage hands each waiting trial out once, but a proposal and
    its claim must be one step); in a shared database claims are checked after they are
    written (_first_claim), trials beat while they train, and a worker with nothing left waits
    while others train, since a trial whose worker dies comes back to the queue."""
    from filelock import FileLock

    storage = open_storage(plan.cfg) if plan.shared else None
    study = open_study(plan, index, storage)
    store = artifact_store(plan.cfg) if plan.shared else None
    dists = distributions(plan.cfg.space)
    lock = contextlib.nullcontext() if plan.shared else FileLock(str(plan.db) + ".lock")
    trained, waiting = 0, None

    def first_beat(trial):  # Optuna never judges a trial stale before its first heartbeat
        if storage is not None:
            storage.record_heartbeat(trial._trial_id)

    while True:
        with lock:
            got = next_trial(plan, study, dists, first_beat)
        if got is None:
            others = running_elsewhere(snapshot(study)) if plan.shared else []
            if not others:
                return trained
            if others != waiting:
                log.info("fit: nothing left to take; waiting for %s", ", ".join(others))
                waiting = others
            time.sleep(min(5, plan.cfg.heartbeat))
            continue
        trial, candidate = got
        log.info("fit: training %s (worker %s)", candidate.key, worker_name())
        beating = (
            heartbeats(storage, trial, plan.cfg.heartbeat)
            if plan.shared
            else contextlib.nullcontext()
        )
        with beating:
            result = train_candidate(plan, candidate)
            if store is not None:
                trial.set_user_attr("artifact", upload_trial(plan, trial, candidate, result, store))
            with lock:
                trial.set_user_attr("result", result)
                study.tell(trial, [result["dev_score"], p50(plan.probes, candidate.key, result)])
        trained += 1


def wait_for_workers(plan: Plan, study) -> None:
    """The driver of a shared search that trains nothing itself: a bar over the trials until
    none is running and the search is over (what next_trial would end on)."""
    from tqdm import tqdm

    from compress.database import shown

    hint = f"lert-compress fit-worker RECIPE --storage {shown(plan.cfg.storage or '')}"
    with tqdm(total=plan.wanted(), desc="fit trials", unit="trial") as bar:
        while True:
            fail_stale(study)
            trials = snapshot(study)  # read apart, a trial claimed between two reads ends it
            running = running_elsewhere(trials)
            done = len(trial_results(trials))
            bar.n = done
            bar.set_postfix_str(", ".join(running) or f"waiting for workers: {hint}")
            bar.refresh()
            claimed = claimed_keys(trials)
            untried = [c for c in plan.fitting if c.key not in claimed]
            over = done >= plan.wanted() or not untried or settled(plan, trials)
            if over and not running:
                return
            time.sleep(min(5, plan.cfg.heartbeat))


def worker_main(cfg: FitConfig, src: str, ctx: StageContext, fitting, probes, index: int, ready):
    """An extra local worker (a spawned process); ``ready`` is set once it has loaded what
    training needs, so that the first worker does not take every trial while it starts."""
    import torch

    import compress.fit.training  # noqa: F401  (the training code, before saying ready)

    torch.set_num_threads(max(1, cfg.budget.threads // max(1, cfg.workers)))
    ready.set()
    run_worker(Plan(cfg, Path(src), ctx, fitting, probes), index)


def choose_winner(cfg: FitConfig, results: dict, probes: dict) -> str | None:
    eligible = [k for k, r in results.items() if is_eligible(r)]
    if not eligible:
        return None
    if cfg.objective == "fast":
        return min(eligible, key=lambda k: (p50(probes, k, results[k]), -results[k]["dev_score"]))
    return max(eligible, key=lambda k: (results[k]["dev_score"], -p50(probes, k, results[k])))
