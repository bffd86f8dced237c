"""Evaluate one model a user brings (HF directory or ONNX file) on a registered task."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import yaml

from compress.errors import RecipeError
from compress.manifest import write_json
from compress.recipe import EvaluateConfig, apply_override
from compress.tasks import load_task
from compress.tasks.config import TaskConfig
from eval.evaluate import evaluate_artifacts
from eval.report import render_report


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
    recipe = SimpleNamespace(
        name=raw["name"], task=TaskConfig(**raw["task"]), evaluate=EvaluateConfig(**raw["evaluate"])
    )
    root = out_root / recipe.name
    root.mkdir(parents=True, exist_ok=True)
    (root / "recipe.resolved.yaml").write_text(
        yaml.safe_dump(
            {**raw, "steps": [{"name": "model", "stage": "external", "model": str(model)}]},
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    write_json(
        root / "manifest.json",
        {
            "steps": {
                "model": {
                    "index": 1,
                    "stage": "external",
                    "status": "done",
                    "output": str(model),
                    "config_hash": "-",
                    "input_step": None,
                }
            }
        },
    )
    evaluate_artifacts(root, recipe, load_task(recipe.task))
    render_report(root)
    return root
