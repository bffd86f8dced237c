"""Runs a recipe's steps in order: resolved recipe first, a manifest, atomic step directories,
resume by config hash, and a lock against two runs on one artifacts directory."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import time
from importlib import metadata
from pathlib import Path

import yaml

from compress.errors import LockError, ModelSourceError
from compress.recipe import Recipe
from compress.registry import StageContext, load_stages

log = logging.getLogger(__name__)

VERSIONED = [
    "lert-compress",
    "torch",
    "transformers",
    "textbrewer",
    "textpruner",
    "optimum",
    "optimum-onnx",
    "onnxruntime",
    "bitsandbytes",
]


def package_versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_json(path: Path, data: object) -> None:
    """Write JSON atomically: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)


class Manifest:
    """``manifest.json``: per step its input, output, hashes, versions, seconds and status."""

    def __init__(self, root: Path):
        self.path = root / "manifest.json"
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {"steps": {}}

    def steps(self) -> dict[str, dict]:
        return self.data["steps"]

    def update(self, name: str, **entry: object) -> None:
        self.data["steps"].setdefault(name, {}).update(entry)
        write_json(self.path, self.data)


@contextlib.contextmanager
def artifacts_lock(root: Path):
    """Refuse a second concurrent run; take over a lock whose process is gone."""
    root.mkdir(parents=True, exist_ok=True)
    lock = root / ".lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            owner = _lock_owner(lock)
            if (
                owner is not None
                and owner.get("host") == socket.gethostname()
                and not _alive(owner.get("pid", -1))
            ):
                log.warning("removing stale lock of finished process %s", owner.get("pid"))
                lock.unlink(missing_ok=True)
                continue
            raise LockError(
                f"{root} is in use by another run ({owner or 'unknown owner'}). Wait for it to "
                f"finish, use --out for another artifacts root, or delete {lock} if no run is left."
            ) from None
    else:
        raise LockError(f"could not take the lock {lock}")
    with os.fdopen(fd, "w") as fh:
        json.dump({"pid": os.getpid(), "host": socket.gethostname()}, fh)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _lock_owner(lock: Path) -> dict | None:
    try:
        return json.loads(lock.read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        dirname = f"{index:02d}_{step.name}"
        entry = manifest.steps().get(step.name, {})
        done = entry.get("status") == "done" and entry.get("hash") == step_hash
        if done and entry.get("dir") == dirname and (root / entry["output"]).exists():
            log.info("step %d %s: unchanged, skipped (%s)", index, step.name, entry["output"])
        else:
            entry = _run_one(
                stages[step.stage],
                step,
                index,
                dirname,
                root,
                outputs.get(source) if source else None,
                source,
                step_hash,
                manifest,
                recipe,
                task,
                outputs,
            )
        hashes[step.name] = step_hash
        outputs[step.name] = root / entry["output"]
    return manifest


def _run_one(
    stage, step, index, dirname, root, src, source, step_hash, manifest, recipe, task, outputs
) -> dict:
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
        outputs=dict(outputs),
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
