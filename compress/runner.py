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
from compress.manifest import Manifest, StepEntry, package_versions
from compress.recipe import Recipe, Step
from compress.registry import StageContext
from compress.stages import CATALOGUE

log = logging.getLogger(__name__)


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def step_dir_name(index: int, name: str) -> str:
    return f"{index:02d}_{name}"


def run_steps(recipe: Recipe, root: Path, task) -> Manifest:
    """Run (or skip, when unchanged and complete) each step; returns the manifest."""
    manifest = Manifest(root)
    task_hash = _digest(recipe.task.model_dump(mode="json"))
    hashes: dict[str, str] = {}
    outputs: dict[str, Path] = {}
    for index, step in enumerate(recipe.steps, 1):
        step_hash = _digest(
            step.config_hash(),
            hashes.get(step.input) if step.input else None,
            task_hash,
            recipe.seed,
            [hashes.get(r) for r in step.config.references()],
        )
        dirname = step_dir_name(index, step.name)
        entry = manifest.steps.get(step.name)
        if (
            entry is not None
            and entry.status == "done"
            and entry.hash == step_hash
            and entry.dir == dirname
            and entry.output is not None
            and (root / entry.output).exists()
        ):
            log.info("step %d %s: unchanged, skipped (%s)", index, step.name, entry.output)
        else:
            src = outputs.get(step.input) if step.input else None
            entry = _run_one(step, index, src, step_hash, manifest, recipe, task)
        hashes[step.name] = step_hash
        assert entry.output is not None
        outputs[step.name] = root / entry.output
    return manifest


def _run_one(
    step: Step, index: int, src: Path | None, step_hash: str, manifest: Manifest, recipe, task
) -> StepEntry:
    """Run one step into a temporary directory, renamed into place once it completes."""
    root = manifest.path.parent
    dirname = step_dir_name(index, step.name)
    final = root / dirname
    tmp = root / f".{dirname}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ctx = StageContext(
        task=task,
        max_seq_len=recipe.task.max_seq_len,
        seed=recipe.seed,
        step_dir=tmp,
        step_name=step.name,
        configs=recipe.configs,
        inputs=recipe.inputs,
    )
    entry = StepEntry(
        index=index,
        stage=step.stage,
        dir=dirname,
        status="running",
        hash=step_hash,
        config_hash=step.config_hash(),
        input=str(src.relative_to(root)) if src else None,
        input_step=step.input,
        kind=step.kind,
        sources=step.config.model_sources(),
        versions=package_versions(),
    )
    manifest.set(step.name, entry)
    log.info("step %d %s (%s) from %s", index, step.name, step.stage, step.input or "its source")
    start = time.perf_counter()
    set_seed(recipe.seed)  # model initialisation, dropout and shuffles repeat from run to run
    try:
        result = CATALOGUE[step.stage](step.config, src, ctx)
    except ModelSourceError as exc:
        _record_failure(manifest, step.name, entry, exc, start, tmp)
        key = step.config.model_key
        hint = (
            f"\nFor a local copy: make recipe={recipe.name} "
            f"ARGS='steps.{step.name}.{key}=/path/to/model'"
            if key
            else ""
        )
        raise ModelSourceError(f"step {step.name!r} ({step.stage}): {exc}{hint}") from exc
    except BaseException as exc:
        _record_failure(manifest, step.name, entry, exc, start, tmp)
        raise

    def relative(path: Path) -> str:
        return str(Path(dirname) / Path(path).resolve().relative_to(tmp.resolve()))

    shutil.rmtree(final, ignore_errors=True)
    output, extra = (
        relative(result.output),
        {k: relative(p) for k, p in result.extra_variants.items()},
    )
    os.replace(tmp, final)
    entry = entry.model_copy(
        update={
            "status": "done",
            "output": output,
            "extra_variants": extra,
            "seconds": round(time.perf_counter() - start, 1),
            "details": result.details,
        }
    )
    manifest.set(step.name, entry)
    log.info("step %d %s done in %.1f s -> %s", index, step.name, entry.seconds, root / output)
    return entry


def _record_failure(
    manifest: Manifest, name: str, entry: StepEntry, exc, start: float, tmp: Path
) -> None:
    failed = entry.model_copy(
        update={
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}",
            "details": getattr(exc, "details", None) or {},
            "seconds": round(time.perf_counter() - start, 1),
        }
    )
    manifest.set(name, failed)
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
                from eval.evaluate import evaluate_recipe
                from eval.report import render_report

                evaluate_recipe(root, recipe, task)
                render_report(root)
        finally:
            logging.getLogger().removeHandler(handler)
            handler.close()
    return root
