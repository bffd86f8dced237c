"""``lert-compress bench``: a folder to time a fit step's candidates on the device they ship to.

The folder holds every candidate of the fit step's space as the artifact it would ship as
(random weights of its exact shape, converted to its runtime: latency does not depend on the
weights), a few hundred of the task's dev texts, the tokenizer, and ``run_bench.py``, which
needs only onnxruntime, numpy and tokenizers (openvino for OpenVINO candidates). Copied to the
target and run there, it writes ``profile.json``; a fit step given it as ``budget.device``
searches with the target's latencies and quantizes for the target's instruction set.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from compress.errors import CompressError, RecipeError

log = logging.getLogger(__name__)

RUNNER = Path(__file__).with_name("device_runner.py")
# what run_bench.py imports, pinned to what this project tests it with (requirements.txt)
RUNNER_PACKAGES = ("onnxruntime", "numpy", "tokenizers")


def fit_step(recipe, name: str | None):
    fits = [s for s in recipe.steps if s.stage == "fit"]
    if name is not None:
        step = next((s for s in recipe.steps if s.name == name), None)
        if step is None or step.stage != "fit":
            known = ", ".join(s.name for s in fits) or "none"
            raise RecipeError(
                f"bench --step {name}: not a fit step of {recipe.name} (fit steps: {known})"
            )
        return step
    if not fits:
        raise RecipeError(
            f"bench: {recipe.name} has no fit step; bench times the candidates of a fit step's "
            "space (add one: lert-compress stages fit)"
        )
    if len(fits) > 1:
        names = ", ".join(s.name for s in fits)
        raise RecipeError(
            f"bench: {recipe.name} has {len(fits)} fit steps ({names}); name one with --step"
        )
    return fits[0]


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def write_bench(
    recipe,
    run_root: Path,
    out: Path,
    step_name: str | None = None,
    texts: int = 300,
    target: str | None = None,
    batch_sizes: list[int] | None = None,
) -> Path:
    """Write the bench folder for the recipe's fit step, from its input in ``run_root``."""
    from compress.fit.artifacts import probe_artifacts, shape_vocab_sizes
    from compress.fit.space import Candidate
    from compress.hardware import cpu_flags, cpu_name
    from compress.manifest import Manifest
    from compress.onnx import cpu_preset
    from compress.tasks import load_task

    step = fit_step(recipe, step_name)
    cfg = step.config
    root = run_root / recipe.name
    entry = Manifest(root).steps.get(step.input) if (root / "manifest.json").exists() else None
    if entry is None or entry.status != "done" or not entry.output:
        raise CompressError(
            f"bench: the fit step's input `{step.input}` has not run in {root}: run the recipe "
            f"first (lert-compress run {recipe.name} --out {run_root})"
        )
    src = root / entry.output
    task = load_task(recipe.task)
    seq_len = cfg.budget.seq_len or recipe.task.max_seq_len
    preset = target or (cpu_preset() if cfg.target == "build-host" else cfg.target)
    if out.exists() and any(out.iterdir()):
        raise CompressError(f"bench: {out} is not empty; give a new folder")
    start = time.perf_counter()
    build = out / ".build"
    shapes = cfg.space.shapes()
    sizes = shape_vocab_sizes(shapes, src, task.type, task.texts("train"), build / "vocab")
    log.info("bench: building %d candidates", len(shapes) * len(cfg.space.runtimes))
    paths = probe_artifacts(
        shapes, cfg.space.runtimes, sizes, src, task.type, build / "probes", preset, seq_len
    )
    from compress.eval.runtimes import size_mb

    candidates = {}
    for shape in shapes:
        for runtime in cfg.space.runtimes:
            key = Candidate(shape, runtime).key
            path = paths[key]
            dest = out / "models" / key
            dest.mkdir(parents=True)
            for f in path.parent.iterdir():  # the model file and its weights beside it
                if (
                    f.is_file()
                    and f.name.startswith(path.stem)
                    and f.suffix in (".onnx", ".xml", ".bin", ".data")
                ):
                    shutil.copy(f, dest / f.name)
            candidates[key] = {
                "file": f"models/{key}/{path.name}",
                "runtime": runtime,
                "vocab_size": sizes[shape],
                "size_mb": round(size_mb(path), 3),
            }
    shutil.copy(src / "tokenizer.json", out / "tokenizer.json")
    dev = task.texts("dev")
    step_by = max(1, len(dev) // texts)
    chosen = [t.replace("\n", " ") for t in dev[::step_by][:texts]]
    (out / "texts.txt").write_text("\n".join(chosen) + "\n", encoding="utf-8")
    spec = {
        "name": f"{recipe.name}/{step.name}",
        "seq_len": seq_len,
        "batch_sizes": batch_sizes or [cfg.budget.batch_size or 1],
        "preset": preset,
        "tokenizer": "tokenizer.json",
        "texts_from": f"{recipe.task.name} dev split, every {step_by}th text",
        "candidates": candidates,
        "built_on": {"cpu": cpu_name(), "flags": sorted(cpu_flags())},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (out / "bench.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
    shutil.copy(RUNNER, out / "run_bench.py")
    pins = [f"{p}=={_version(p)}" for p in RUNNER_PACKAGES]
    ov = _version("openvino")
    (out / "requirements.txt").write_text(
        "\n".join(pins) + (f"\n# for OpenVINO candidates: openvino=={ov}" if ov else "") + "\n",
        encoding="utf-8",
    )
    (out / "README.txt").write_text(_readme(spec, pins), encoding="utf-8")
    shutil.rmtree(build)
    log.info("bench: %s written in %.0f s", out, time.perf_counter() - start)
    return out


def _readme(spec: dict, pins: list[str]) -> str:
    n, preset = len(spec["candidates"]), spec["preset"]
    shape = f"batch sizes {spec['batch_sizes']} x {spec['seq_len']} tokens"
    return f"""Bench folder for {spec["name"]}: {n} candidates, int8 quantized for {preset}.

On the target (a board, a phone under Termux, a customer's machine), with Python 3.9+:

    python -m venv venv && . venv/bin/activate
    pip install -r requirements.txt      # {", ".join(pins)}
    python run_bench.py --threads 2      # the threads the app will use

It writes profile.json: the CPU, its instruction sets, the threads, fixed-shape latency
(p50/p90/IQR) per candidate at {shape}, and end-to-end latency on texts.txt
(tokenizer + model, batch 1, each text at its own length). Bring it back and give it to the
fit step:  budget: {{device: profile.json, ...}}

The models hold random weights of each candidate's exact shape: they time the shape and the
runtime, not a trained model. A cut vocabulary's candidate folds the tokenizer's ids into its
range (the tokenizer costs the same).
"""


def load_profile(path: Path) -> dict:
    """A device profile written by run_bench.py, checked enough to name what is wrong."""
    from compress.device_runner import PROFILE_VERSION

    try:
        profile = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RecipeError(f"budget.device: cannot read {path}: {err}") from err
    if not isinstance(profile, dict) or profile.get("profile_version") != PROFILE_VERSION:
        raise RecipeError(
            f"budget.device: {path} is not a device profile of version {PROFILE_VERSION} "
            "(write one with a bench folder's run_bench.py)"
        )
    return profile


def profile_preset(profile: dict) -> str:
    """The int8 preset the device's instruction set calls for."""
    from compress.onnx import preset_for

    cpu = profile["cpu"]
    return preset_for(cpu.get("machine", ""), set(cpu.get("isa", [])))
