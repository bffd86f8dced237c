"""``lert-compress fit-worker RECIPE --storage URL --artifacts DIR``: a machine that joins a fit
step's search in a shared database and trains candidates until none is left (the driver,
``lert-compress run``, probes, publishes the plan, waits, and ships the winner)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from compress.errors import CompressError, RecipeError

log = logging.getLogger(__name__)


def fit_step(recipe, name: str | None):
    fits = [s for s in recipe.steps if s.stage == "fit"]
    if name is not None:
        found = [s for s in fits if s.name == name]
        if not found:
            names = ", ".join(s.name for s in fits) or "none"
            raise RecipeError(
                f"--step {name}: not a fit step of {recipe.name} (its fit steps: {names})"
            )
        return found[0]
    if not fits:
        raise RecipeError(f"{recipe.name} has no fit step: a fit-worker joins a fit step's search")
    if len(fits) > 1:
        names = ", ".join(s.name for s in fits)
        raise RecipeError(f"{recipe.name} has {len(fits)} fit steps ({names}): give --step NAME")
    return fits[0]


def placed(cfg, storage: str | None, artifacts: str | None):
    """The step's config with the command line's database and folder (they win over the
    recipe's), checked as the driver checks them."""
    update = {"workers": 1}
    if storage is not None:
        update["storage"] = storage
    if artifacts is not None:
        update["artifacts"] = artifacts
    cfg = cfg.model_copy(update=update)
    if cfg.storage is None:
        raise RecipeError(
            "fit-worker: give --storage URL (the database the driver's fit step names in "
            "storage:); a search in SQLite is shared by one machine's workers only"
        )
    problems = cfg._placement_problems()
    if problems:
        raise RecipeError("fit-worker: " + "; ".join(problems))
    return cfg


def find_study(storage, cfg, recipe, step, name: str, wait: float):
    """The driver's study with its plan, once it is there: a study of this recipe and step
    from another version of it is one line at once; none at all, one line after ``wait``."""
    import optuna

    from compress.database import shown

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    deadline = time.monotonic() + wait
    said = False
    while True:
        names = optuna.study.get_all_study_names(storage)
        if name in names:
            study = optuna.load_study(study_name=name, storage=storage)
            if "plan" in study.user_attrs:
                return study
        else:
            others = [n for n in names if n.startswith(f"{recipe.name}.{step.name}.")]
            if others:
                raise RecipeError(
                    f"fit-worker: the study of {recipe.name}'s step {step.name} in "
                    f"{shown(cfg.storage)} is {others[-1]}, made by another version of the "
                    f"recipe (this recipe and its overrides make {name}): run the worker with "
                    "the driver's recipe and overrides"
                )
        if time.monotonic() >= deadline:
            held = ", ".join(names) or "no study"
            raise CompressError(
                f"fit-worker: no study {name} with a plan in {shown(cfg.storage)} after "
                f"{wait:.0f} s (it holds {held}): start the driver first (lert-compress run "
                f"{recipe.name} with this storage), or give --wait longer"
            )
        if not said:
            log.info("fit-worker: waiting for the driver to publish %s", name)
            said = True
        time.sleep(2)


def fit_worker(
    recipe,
    step_name: str | None,
    storage: str | None,
    artifacts: str | None,
    out: Path,
    wait: float,
) -> int:
    """Join the search and train until it is over; returns how many candidates this trained."""
    import torch

    from compress.fit.shared import artifact_store, join_plan, open_storage
    from compress.fit.space import study_name
    from compress.fit.study import run_worker
    from compress.lineage import step_hashes
    from compress.registry import StageContext
    from compress.tasks import load_task

    step = fit_step(recipe, step_name)
    cfg = placed(step.config, storage, artifacts)
    step_hash = step_hashes(recipe)[step.name]
    name = study_name(recipe.name, step.name, step_hash)
    db = open_storage(cfg)
    study = find_study(db, cfg, recipe, step, name, wait)
    folder = out / recipe.name / f"fit-worker-{step.name}-{step_hash}"
    ctx = StageContext(
        task=load_task(recipe.task),
        max_seq_len=recipe.task.max_seq_len,
        seed=recipe.seed,
        step_dir=folder,
        step_name=step.name,
        recipe_name=recipe.name,
        step_hash=step_hash,
    )
    plan = join_plan(cfg, ctx, study, artifact_store(cfg))
    torch.set_num_threads(cfg.budget.threads)
    log.info(
        "fit-worker: joined %s (%d candidates fit); working in %s", name, len(plan.fitting), folder
    )
    return run_worker(plan)
