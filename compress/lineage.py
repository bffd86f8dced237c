"""Which step outputs belong to the current recipe: planned hashes, output digests, and the
manifest's current entries. Both the runner (resume, pruning) and the evaluator (what to
report) ask here, so they never disagree."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from compress.manifest import Manifest
from compress.recipe import Recipe


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def step_hashes(recipe: Recipe) -> dict[str, str]:
    """Each step's hash: its config, its input's hash, the task, the seed and its references,
    so a change anywhere upstream changes every hash downstream."""
    task_hash = _digest(recipe.task.model_dump(mode="json", exclude_defaults=True))
    hashes: dict[str, str] = {}
    for step in recipe.steps:
        hashes[step.name] = _digest(
            step.config_hash(),
            hashes.get(step.input) if step.input else None,
            task_hash,
            recipe.seed,
            [hashes.get(r) for r in step.config.references()],
        )
    return hashes


def repeat_dir(root: Path, seed: int) -> Path:
    """Where the run repeated with ``seed`` (a recipe's ``seeds:`` beyond the first) lives."""
    return root / "seeds" / f"seed-{seed}"


def output_digest(step_dir: Path) -> str:
    """SHA-256 over every file of a finished step directory (names and contents)."""
    total = hashlib.sha256()
    for path in sorted(p for p in step_dir.rglob("*") if p.is_file() and p.name != "README.md"):
        total.update(str(path.relative_to(step_dir)).encode() + b"\0")
        with path.open("rb") as fh:
            total.update(hashlib.file_digest(fh, "sha256").digest())
    return total.hexdigest()


def current_steps(root: Path, recipe: Recipe, manifest: Manifest | None = None) -> list[str]:
    """The recipe's steps whose finished output is the one the recipe describes now (same
    hash, made from the input that is there now, output on disk), in recipe order; a step
    downstream of a stale one is stale too."""
    manifest = manifest or Manifest(root)
    planned = step_hashes(recipe)
    out: list[str] = []
    for step in recipe.steps:
        entry = manifest.steps.get(step.name)
        upstream = manifest.steps.get(step.input) if step.input else None
        if (
            entry is not None
            and entry.status == "done"
            and entry.hash == planned[step.name]
            and (step.input is None or (step.input in out and upstream is not None))
            and (upstream is None or entry.input_digest == upstream.digest)
            and entry.output is not None
            and (root / entry.output).exists()
        ):
            out.append(step.name)
    return out
