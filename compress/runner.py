"""Runs a recipe's steps in order: resolved recipe first, a manifest, atomic step directories,
resume by config hash, and a lock against two runs on one artifacts directory."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import yaml
from transformers import set_seed

from compress import dist
from compress.errors import ModelSourceError
from compress.lineage import output_digest, repeat_dir, step_hashes
from compress.lock import artifacts_lock
from compress.manifest import Manifest, StepEntry, package_versions
from compress.recipe import Recipe, Step
from compress.registry import StageContext
from compress.stages import CATALOGUE

log = logging.getLogger(__name__)


def step_dir_name(index: int, name: str) -> str:
    return f"{index:02d}_{name}"


def prune_stale_entries(manifest: Manifest, recipe: Recipe) -> None:
    """Forget steps the recipe no longer has (renamed or removed), and delete their outputs,
    so nothing reports or resumes from them."""
    root = manifest.path.parent
    current = {step_dir_name(i, s.name) for i, s in enumerate(recipe.steps, 1)}
    names = {s.name for s in recipe.steps}
    for name in [n for n in manifest.steps if n not in names]:
        entry = manifest.steps.pop(name)
        if entry.dir not in current and (root / entry.dir).is_dir():
            shutil.rmtree(root / entry.dir)
        log.info("step %s is no longer in the recipe: its entry and outputs are removed", name)
    manifest.save()


def _reusable(
    entry: StepEntry | None, step_hash: str, dirname: str, root: Path, input_digest: str | None
) -> bool:
    """A finished output of this very step (same hash, same place, made from the input that
    is there now) whose files are intact."""
    if entry is None or entry.status != "done" or entry.hash != step_hash or entry.dir != dirname:
        return False
    if entry.input_digest != input_digest:
        log.info("step %s: its input was made again since; running it again", entry.dir)
        return False
    if entry.output is None or not (root / entry.output).exists():
        return False
    if entry.digest is not None and output_digest(root / dirname) != entry.digest:
        log.warning(
            "step %s: its output changed on disk since it finished; running it again", entry.dir
        )
        return False
    return True


def run_steps(
    recipe: Recipe, root: Path, task, ran: list[str] | None = None, observe=None
) -> Manifest:
    """Run (or skip, when unchanged and intact) each step; returns the manifest. The names of
    the steps that ran are appended to ``ran``; ``observe(step_name)``, a context manager,
    wraps each step that runs (a rehearsal measures its memory so)."""
    if dist.is_main():
        prune_stale_entries(Manifest(root), recipe)
    dist.barrier()
    manifest = Manifest(root)
    hashes = step_hashes(recipe)
    outputs: dict[str, Path] = {}
    for index, step in enumerate(recipe.steps, 1):
        dirname = step_dir_name(index, step.name)
        if not dist.is_main():  # what the first process has recorded up to this step
            manifest = Manifest(root)
        entry = manifest.steps.get(step.name)
        input_digest = manifest.steps[step.input].digest if step.input else None
        # the first process decides, so that every process runs (or skips) the same steps
        reuse = dist.broadcast(_reusable(entry, hashes[step.name], dirname, root, input_digest))
        if reuse:
            assert entry is not None and entry.output is not None
            log.info("step %d %s: unchanged, skipped (%s)", index, step.name, entry.output)
        else:
            src = outputs.get(step.input) if step.input else None
            with observe(step.name) if observe else contextlib.nullcontext():
                entry = _run_one(
                    step, index, src, hashes[step.name], manifest, recipe, task, dict(outputs)
                )
            if ran is not None:
                ran.append(step.name)
        assert entry.output is not None
        outputs[step.name] = root / entry.output
    return manifest


def _context(
    step: Step,
    recipe: Recipe,
    task,
    step_dir: Path,
    outputs: dict[str, Path],
    resume_dir: Path | None = None,
    step_hash: str = "",
) -> StageContext:
    return StageContext(
        task=task,
        max_seq_len=recipe.task.max_seq_len,
        seed=recipe.seed,
        step_dir=step_dir,
        step_name=step.name,
        configs=recipe.configs,
        inputs=recipe.inputs,
        outputs=outputs,
        command=recipe.command(),
        resume_dir=resume_dir,
        recipe_name=recipe.name,
        step_hash=step_hash,
    )


def _run_one(
    step: Step,
    index: int,
    src: Path | None,
    step_hash: str,
    manifest: Manifest,
    recipe,
    task,
    outputs: dict[str, Path],
) -> StepEntry:
    """Run one step into a temporary directory, renamed into place once it completes.

    With several processes, a data-parallel stage runs in every process (the others write into
    scratch directories that are then removed) and any other stage in the first alone; the
    first process alone writes the step's output and the manifest."""
    root = manifest.path.parent
    dirname = step_dir_name(index, step.name)
    resume_dir = root / ".resume" / f"{dirname}-{step_hash}"
    if not dist.is_main():
        if step.config.data_parallel:
            scratch = Path(tempfile.mkdtemp(prefix=f".{dirname}.rank{dist.rank()}.", dir=root))
            try:
                set_seed(recipe.seed)
                CATALOGUE[step.stage](
                    step.config,
                    src,
                    _context(step, recipe, task, scratch, outputs, resume_dir, step_hash),
                )
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        dist.barrier()  # the first process has written the output and the manifest
        return Manifest(root).steps[step.name]
    final = root / dirname
    tmp = root / f".{dirname}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for old in (root / ".resume").glob(f"{dirname}-*"):  # an attempt at another version
        if old != resume_dir:
            shutil.rmtree(old, ignore_errors=True)
    ctx = _context(step, recipe, task, tmp, outputs, resume_dir, step_hash)
    entry = StepEntry(
        index=index,
        stage=step.stage,
        dir=dirname,
        status="running",
        hash=step_hash,
        config_hash=step.config_hash(),
        input=str(src.relative_to(root)) if src else None,
        input_step=step.input,
        input_digest=manifest.steps[step.input].digest if step.input else None,
        kind=step.kind,
        sources=step.config.model_sources(),
        versions=package_versions(),
        processes=dist.world_size() if step.config.data_parallel else 1,
        nodes=dist.nodes() if step.config.data_parallel else 1,
        backend=dist.backend() if step.config.data_parallel else None,
        evaluated=step.config.evaluated,
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
            f"\nFor a local copy: {recipe.command(f'steps.{step.name}.{key}=/path/to/model')}"
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
    shutil.rmtree(resume_dir, ignore_errors=True)
    entry = entry.model_copy(
        update={
            "status": "done",
            "digest": output_digest(final),
            "output": output,
            "extra_variants": extra,
            "seconds": round(time.perf_counter() - start, 1),
            "details": result.details,
            "kind": result.kind or entry.kind,
        }
    )
    manifest.set(step.name, entry)
    log.info("step %d %s done in %.1f s -> %s", index, step.name, entry.seconds, root / output)
    dist.barrier()
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


def run_repeats(recipe: Recipe, root: Path, task) -> None:
    """Run the recipe again for each seed of ``seeds:`` beyond the first, each in its own
    directory with its own manifest (so each resumes on its own); repeats of seeds the recipe
    no longer lists are removed."""
    wanted = {repeat_dir(root, seed) for seed in recipe.repeat_seeds}
    for old in sorted((root / "seeds").glob("seed-*")) if dist.is_main() else []:
        if old not in wanted:
            shutil.rmtree(old)
            log.info("%s: its seed is no longer in the recipe's seeds; removed", old)
    for n, seed in enumerate(recipe.repeat_seeds, 2):
        log.info("run %d of %d: seed %d", n, len(recipe.seeds), seed)
        sub = repeat_dir(root, seed)
        sub.mkdir(parents=True, exist_ok=True)
        run_steps(recipe.with_seed(seed), sub, task)


def time_summary(
    manifest: Manifest, ran: list[str], steps_seconds: float, eval_seconds: float
) -> str:
    """Where this run's time went, step by step (a reused step cost nothing this time)."""
    parts = [
        f"{name} {entry.seconds or 0:.0f} s" if name in ran else f"{name} reused"
        for name, entry in sorted(manifest.steps.items(), key=lambda item: item[1].index)
    ]
    return (
        f"time: steps {steps_seconds:.0f} s ({', '.join(parts)}), evaluation and report "
        f"{eval_seconds:.0f} s"
    )


def machine_problems(recipe: Recipe) -> list[str]:
    """What this machine cannot do that the recipe asks for, found before any work: a training
    run over its memory, mixed precision without a CUDA device; either would otherwise fail
    when its step starts, perhaps hours in."""
    import torch

    from compress.plan import memory_problems

    problems = [p.message for p in memory_problems(recipe)]
    if torch.cuda.is_available():
        return problems
    for i, step in enumerate(recipe.steps):
        for where, config in (
            ("", step.config),
            (".recover", getattr(step.config, "recover", None)),
        ):
            precision = getattr(config, "precision", "fp32")
            if precision in ("fp16", "bf16"):
                problems.append(
                    f"steps[{i}]({step.name}){where}.precision: {precision} mixed precision needs "
                    "a CUDA device and this machine has none; use precision: fp32 here"
                )
    return problems


def refuse_machine_problems(recipe: Recipe) -> None:
    """One error listing what this machine cannot do of the recipe (see machine_problems)."""
    from compress.errors import RecipeError

    problems = machine_problems(recipe)
    if problems:
        raise RecipeError("this machine cannot run the recipe:\n  - " + "\n  - ".join(problems))


def run_recipe(recipe: Recipe, out_root: Path, evaluate: bool = True, observe=None) -> Path:
    """Resolve, run, evaluate and report; returns the artifacts directory (``observe``: see
    run_steps)."""
    from compress.tasks import load_task

    refuse_machine_problems(recipe)
    root = out_root / recipe.name
    dist.check_shared(out_root)
    main = dist.is_main()
    with dist.main_only(artifacts_lock(root)):
        dist.barrier()  # the others start once the first holds the lock
        handler = logging.NullHandler()
        if main:
            (root / "recipe.resolved.yaml").write_text(
                yaml.safe_dump(recipe.resolved(), allow_unicode=True, sort_keys=False),
                encoding="utf-8",
            )
            handler = logging.FileHandler(root / "run.log", encoding="utf-8")
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
        logging.getLogger().addHandler(handler)
        try:
            task = load_task(recipe.task)
            if evaluate and main:
                from compress.eval.report import mark_stale_report

                mark_stale_report(root, step_hashes(recipe))
            dist.barrier()
            start, ran = time.perf_counter(), []
            manifest = run_steps(recipe, root, task, ran, observe)
            run_repeats(recipe, root, task)
            steps_done = time.perf_counter()
            if not main:
                return root  # the first process evaluates and reports
            if evaluate:
                from compress.eval.evaluate import evaluate_recipe
                from compress.eval.report import render_report

                evaluate_recipe(root, recipe, task)
                render_report(root)
            log.info(
                "%s",
                time_summary(manifest, ran, steps_done - start, time.perf_counter() - steps_done),
            )
        finally:
            logging.getLogger().removeHandler(handler)
            handler.close()
    return root
