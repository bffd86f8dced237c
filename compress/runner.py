"""Runs a recipe's steps in order: resolved recipe first, a manifest, atomic step directories,
resume by config hash, and a lock against two runs on one artifacts directory."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import yaml
from transformers import set_seed

from compress.errors import ModelSourceError
from compress.lock import artifacts_lock
from compress.manifest import Manifest, package_versions
from compress.recipe import Recipe
from compress.registry import StageContext, load_stages

log = logging.getLogger(__name__)


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def step_dir_name(index: int, name: str) -> str:
    return f"{index:02d}_{name}"


def run_steps(recipe: Recipe, root: Path, task) -> Manifest:
    """Run (or skip, when unchanged and complete) each step; returns the manifest."""
    stages = load_stages()
    manifest = Manifest(root)
    task_hash = _digest(recipe.task.model_dump(mode="json"))
    hashes: dict[str, str] = {}
    outputs: dict[str, Path] = {}
    for index, step in enumerate(recipe.steps, 1):
        source = recipe.source_of(step.name)
        refs = getattr(step.config, "references", lambda: [])()
        step_hash = _digest(
            step.config_hash(),
            hashes.get(source),
            task_hash,
            recipe.seed,
            [hashes.get(r) for r in refs],
        )
        dirname = step_dir_name(index, step.name)
        entry = manifest.steps().get(step.name, {})
        done = entry.get("status") == "done" and entry.get("hash") == step_hash
        if done and entry.get("dir") == dirname and (root / entry["output"]).exists():
            log.info("step %d %s: unchanged, skipped (%s)", index, step.name, entry["output"])
        else:
            src = outputs.get(source) if source else None
            entry = _run_one(
                stages[step.stage], step, index, src, source, step_hash, manifest, recipe, task
            )
        hashes[step.name] = step_hash
        outputs[step.name] = root / entry["output"]
    return manifest


def _run_one(stage, step, index, src, source, step_hash, manifest, recipe, task) -> dict:
    """Run one step into a temporary directory, renamed into place once it completes."""
    root = manifest.path.parent
    dirname = step_dir_name(index, step.name)
    final = root / dirname
    tmp = root / f".{dirname}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ctx = StageContext(
        task=task,
        recipe=recipe,
        step_dir=tmp,
        step_name=step.name,
        seed=recipe.seed,
    )
    manifest.update(
        step.name,
        index=index,
        stage=step.stage,
        dir=dirname,
        status="running",
        input=str(src.relative_to(root)) if src else None,
        input_step=source,
        config_hash=step.config_hash(),
        hash=step_hash,
        versions=package_versions(),
    )
    log.info("step %d %s (%s) from %s", index, step.name, step.stage, source or "its model source")
    start = time.perf_counter()
    set_seed(recipe.seed)  # model initialisation, dropout and shuffles repeat from run to run
    try:
        produced = stage.fn(step.config, src, ctx)
    except ModelSourceError as exc:
        _record_failure(manifest, step.name, ctx, exc, start, tmp)
        key = getattr(step.config, "model_key", None)
        hint = (
            f"\nFor a local copy: make recipe={recipe.name} "
            f"ARGS='steps.{step.name}.{key}=/path/to/model'"
            if key
            else ""
        )
        raise ModelSourceError(f"step {step.name!r} ({step.stage}): {exc}{hint}") from exc
    except BaseException as exc:
        _record_failure(manifest, step.name, ctx, exc, start, tmp)
        raise
    relative = Path(produced).resolve().relative_to(tmp.resolve())
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    seconds = round(time.perf_counter() - start, 1)
    manifest.update(
        step.name,
        status="done",
        output=str(Path(dirname) / relative),
        seconds=seconds,
        details=ctx.record,
    )
    log.info("step %d %s done in %.1f s -> %s", index, step.name, seconds, final / relative)
    return manifest.steps()[step.name]


def _record_failure(manifest, name, ctx, exc, start, tmp) -> None:
    manifest.update(
        name,
        status="failed",
        details=ctx.record,
        error=f"{type(exc).__name__}: {exc}",
        seconds=round(time.perf_counter() - start, 1),
    )
    shutil.rmtree(tmp, ignore_errors=True)


def run_recipe(recipe: Recipe, out_root: Path, evaluate: bool = True) -> Path:
    """Resolve, run, evaluate and report; returns the artifacts directory."""
    from compress.tasks import load_task

    root = out_root / recipe.name
    with artifacts_lock(root):
        (root / "recipe.resolved.yaml").write_text(
            yaml.safe_dump(recipe.resolved(), allow_unicode=True, sort_keys=False), encoding="utf-8"
        )
        handler = logging.FileHandler(root / "run.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        try:
            task = load_task(recipe.task)
            run_steps(recipe, root, task)
            if evaluate:
                from eval.evaluate import evaluate_artifacts
                from eval.report import render_report

                evaluate_artifacts(root, recipe, task)
                render_report(root)
        finally:
            logging.getLogger().removeHandler(handler)
            handler.close()
    return root
