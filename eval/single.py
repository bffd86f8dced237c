"""Evaluate one model a user brings (HF directory or ONNX file) on a registered task."""

from __future__ import annotations

from pathlib import Path

import yaml
from compress.eval.evaluate import evaluate_artifacts
from compress.eval.report import render_report

from compress.errors import RecipeError
from compress.lock import artifacts_lock
from compress.manifest import Manifest, StepEntry
from compress.recipe import EvaluateConfig, apply_override
from compress.tasks import load_task
from compress.tasks.config import TaskConfig


def evaluate_single(model: Path, task_name: str, out_root: Path, overrides: list[str]) -> Path:
    model = model.resolve()
    if not model.exists():
        raise RecipeError(f"--model {model} does not exist")
    raw: dict = {
        "name": f"eval-{model.stem if model.is_file() else model.name}",
        "task": {"name": task_name},
        "evaluate": {},
    }
    for item in overrides:
        apply_override(raw, item)
    task_cfg, cfg = TaskConfig(**raw["task"]), EvaluateConfig(**raw["evaluate"])
    task = load_task(task_cfg)
    root = out_root / raw["name"]
    with artifacts_lock(root):
        _write_run(root, raw, model)
        evaluate_artifacts(root, cfg, task, name=raw["name"], max_seq_len=task_cfg.max_seq_len)
        render_report(root)
    return root


def _write_run(root: Path, raw: dict, model: Path) -> None:
    """The resolved recipe and manifest of a one-model run, as a recipe run would have them."""
    (root / "recipe.resolved.yaml").write_text(
        yaml.safe_dump(
            {**raw, "steps": [{"name": "model", "stage": "external", "model": str(model)}]},
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    manifest = Manifest(root)
    manifest.set(
        "model",
        StepEntry(
            index=1,
            stage="external",
            dir="-",
            status="done",
            hash="-",
            config_hash="-",
            output=str(model),
            kind="onnx" if model.suffix == ".onnx" else "torch",
            sources=[str(model)],
        ),
    )
