"""Evaluate every step output of an artifacts directory: score, size, latency, memory."""

from __future__ import annotations

import gc
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from compress.eval.end_to_end import measure_end_to_end, text_sample
from compress.eval.hardware import default_threads, hardware
from compress.eval.history import keep_previous
from compress.eval.latency import interleaved_timings, latency_batch, summarize, timed_call
from compress.eval.memory import peak_rss_mb
from compress.eval.runtimes import (
    ProviderFallback,
    Runtime,
    artifact_kind,
    load_runtime,
    onnx_is_quantized,
    size_mb,
    torch_precision,
)
from compress.eval.schema import Baseline, Latency, MetricRow, Metrics
from compress.eval.seeds import seed_summary
from compress.eval.stats import paired_delta, score_interval, within_noise
from tqdm.auto import tqdm

from compress.data import encode
from compress.lineage import current_steps, repeat_dir
from compress.manifest import Manifest, package_versions, write_json
from compress.models import load_tokenizer
from compress.recipe import EvaluateConfig, Recipe
from compress.scoring import (
    example_counts,
    majority_prediction,
    other_scores,
    per_class,
    predict,
    predicted_labels,
    score_counts,
)
from compress.tasks import TaskData

log = logging.getLogger(__name__)


@dataclass
class Variant:
    name: str
    step: str
    stage: str
    path: Path
    target: str | None = None  # the instruction set it was quantized for, where it says

    @property
    def tokenizer_dir(self) -> Path:
        return self.path.parent if self.path.is_file() else self.path


def variants(manifest: Manifest, steps: list[str] | None = None) -> list[Variant]:
    """The finished steps of a run in order (only ``steps`` when given), each followed by its
    extra variants."""
    root = manifest.path.parent
    done = sorted(
        (
            (name, e)
            for name, e in manifest.steps.items()
            if e.status == "done" and e.output and e.evaluated and (steps is None or name in steps)
        ),
        key=lambda item: item[1].index,
    )
    out = []
    for name, entry in done:
        assert entry.output is not None
        target = (entry.details or {}).get("target")
        out.append(Variant(name, name, entry.stage, root / entry.output, target))
        for label, relative in entry.extra_variants.items():
            out.append(Variant(f"{name} ({label})", name, entry.stage, root / relative, target))
    return out


U8S8 = {"avx512", "avx512_vnni", "arm64"}  # optimum's presets with signed int8 weights


def target_notes(target: str | None, host: str) -> list[str]:
    """What a reader must know when an artifact built for ``target`` is measured on a
    ``host`` CPU (both optimum preset names, as ``compress.onnx.cpu_preset`` gives)."""
    if target is None or target == host:
        return []
    note = (
        f"quantized for {target}, measured on this {host} CPU: its latency is this machine's, "
        f"not the target's"
    )
    if target in U8S8 and host in ("avx2", "avx512"):
        # ONNX Runtime's quantization guide: u8s8 on x86 without VNNI can saturate
        note += (
            "; its u8s8 products can saturate without VNNI, so its score here may be lower "
            "than on the target"
        )
    return [note + "."]


def usable_devices(wanted: list[str]) -> list[str]:
    devices = [d for d in wanted if d == "cpu" or torch.cuda.is_available()]
    if len(devices) < len(wanted):
        log.info("no CUDA device: GPU rows skipped")
    return devices


def runs_for(variant: Variant, device: str, gpu_precisions: list[str]) -> list[str | None]:
    """The precisions to run ``variant`` at on ``device`` (None: as saved); [] when unsupported.

    ORT int8 and OpenVINO are CPU paths (an fp32 IR also runs at bf16 where the CPU has it);
    fp16 weights are not run on CPU; an fp32 PyTorch model also gets the recipe's GPU
    precisions on CUDA.
    """
    kind = artifact_kind(variant.path)
    if kind == "openvino":
        from compress.openvino import cpu_has_bf16, ir_is_int8

        if device != "cpu":
            return []
        return [None, "bf16"] if cpu_has_bf16() and not ir_is_int8(variant.path) else [None]
    if kind == "onnx":
        if device == "cpu":
            return [None]
        if variant.path.suffix == ".ort":  # ONNX Runtime Mobile's format: a CPU row
            return []
        import onnxruntime as ort

        gpu_ok = "CUDAExecutionProvider" in ort.get_available_providers()
        return [None] if gpu_ok and not onnx_is_quantized(variant.path) else []
    if kind == "executorch":  # a CPU path (XNNPACK), as on the phones it is for
        return [None] if device == "cpu" else []
    if kind == "bnb":
        return [None]
    saved = torch_precision(variant.path)
    if device == "cpu":
        return [] if saved == "fp16" else [None]
    return [None] if saved != "fp32" else list(dict.fromkeys(["fp32", *gpu_precisions]))


def score_variant(
    variant: Variant,
    device: str,
    task: TaskData,
    split: str,
    max_len: int,
    threads: int,
    max_examples: int | None,
    precision: str | None = None,
) -> tuple[MetricRow, Runtime, np.ndarray]:
    """One row, its runtime (for latency) and its per-example counts (for intervals)."""
    examples = task.splits[split][:max_examples] if max_examples else task.splits[split]
    enc = encode(examples, load_tokenizer(variant.tokenizer_dir), task, max_len)
    gc.collect()
    if device == "cuda":
        # the peak restarts from what is allocated now: the runtimes scored before stay loaded
        # for the timing, so their memory is taken off this row's peak
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    rt = load_runtime(variant.path, task.type, device, threads, precision)
    logits = predict(rt.forward, enc, rt.scoring_batch, desc=f"score {variant.name} {device}")
    predicted = predicted_labels(task, enc, logits)
    counts = example_counts(task, examples, predicted)
    value = score_counts(task.type, counts)
    # GPU: peak allocated while loading and scoring; CPU rows get a fresh-process measurement
    memory = (torch.cuda.max_memory_allocated() - before) / 2**20 if device == "cuda" else None
    row = MetricRow(
        variant=variant.name,
        step=variant.step,
        stage=variant.stage,
        runtime=rt.runtime,
        device=device,
        precision=rt.precision,
        params=rt.params,
        size_mb=round(size_mb(variant.path), 2),
        score=round(value, 5),
        seq_len=max_len,
        memory_mb=None if memory is None else round(memory, 1),
        path=str(variant.path),
        score_ci=[round(v, 5) for v in score_interval(task.type, counts)],
        per_class=per_class(task, examples, predicted),
        other_scores={k: round(v, 5) for k, v in other_scores(task.type, counts).items()},
        target=variant.target,
    )
    if device == "cpu" and variant.target is not None:
        from compress.onnx import cpu_preset

        row.notes += target_notes(variant.target, cpu_preset())
    log.info(
        "%s on %s (%s %s): %s %.4f",
        variant.name,
        device,
        rt.runtime,
        rt.precision,
        task.metric,
        value,
    )
    return row, rt, counts


def compare_with_reference(
    rows: list[tuple[MetricRow, np.ndarray]], reference: str, task_type: str
) -> None:
    """Each row's paired difference from the reference variant on the same examples (the
    reference's row on the same device, else its first row)."""
    refs = [(row, counts) for row, counts in rows if row.variant == reference]
    for row, counts in rows:
        ref = next((r for r in refs if r[0].device == row.device), refs[0] if refs else None)
        if ref is None:
            continue
        delta, interval = paired_delta(task_type, counts, ref[1])
        row.delta, row.delta_ci = round(delta, 5), [round(v, 5) for v in interval]
        row.within_noise = within_noise(interval)


def majority_baseline(task: TaskData, split: str, max_examples: int | None, ref_counts):
    """The trivial predictor's score and interval, and its distance from the reference."""
    examples = task.splits[split][:max_examples] if max_examples else task.splits[split]
    described, predicted = majority_prediction(task, examples)
    counts = example_counts(task, examples, predicted)
    baseline = Baseline(
        prediction=described,
        score=round(score_counts(task.type, counts), 5),
        score_ci=[round(v, 5) for v in score_interval(task.type, counts)],
    )
    if ref_counts is not None:
        delta, interval = paired_delta(task.type, counts, ref_counts)
        baseline.delta, baseline.delta_ci = round(delta, 5), [round(v, 5) for v in interval]
    return baseline


def measure_memory(rows: list[MetricRow], cfg: EvaluateConfig, task_type: str, threads: int):
    """Fill ``memory_mb`` of CPU rows, each from its own fresh process; as many processes at a
    time as the CPUs this process may use (a peak resident set does not depend on what else
    runs, and most of each process's time is spent importing libraries)."""
    parallel = max(1, min(len(os.sched_getaffinity(0)), 4))

    def measure(row: MetricRow) -> float | None:
        return peak_rss_mb(Path(row.path), task_type, max(cfg.batch_sizes), cfg.seq_len, threads)

    with ThreadPoolExecutor(parallel) as pool:
        for row, peak in zip(rows, pool.map(measure, rows), strict=True):
            row.memory_mb = peak


def fits(rt: Runtime, batch_size: int, seq_len: int) -> bool:
    """Whether ``rt`` takes a batch of this shape (an ExecuTorch program has a largest one)."""
    if (rt.max_batch or batch_size) < batch_size or (rt.max_len or seq_len) < seq_len:
        log.info(
            "b%d x %d left out of a %s row: it takes %s x %s at most",
            batch_size,
            seq_len,
            rt.runtime,
            rt.max_batch,
            rt.max_len,
        )
        return False
    return True


def measure_latency(
    loaded: list[tuple[MetricRow, Runtime]],
    cfg: EvaluateConfig,
    reference: str,
) -> None:
    """Fill ``latency_ms`` and ``speedup`` of each row; rows of one device are interleaved.
    Speedups are over the ``reference`` variant's first row on the same device."""
    for device in sorted({row.device for row, _ in loaded}):
        group = [(row, rt) for row, rt in loaded if row.device == device]
        bar = tqdm(total=len(cfg.batch_sizes) * cfg.repeats, desc=f"latency {device}", unit="round")
        for bs in cfg.batch_sizes:
            calls = {
                str(i): timed_call(
                    rt.forward,
                    latency_batch(bs, cfg.seq_len, rt.vocab_size),
                    rt.device,
                    rt.host_inputs,
                )
                for i, (_, rt) in enumerate(group)
                if fits(rt, bs, cfg.seq_len)
            }
            times = interleaved_timings(calls, cfg.warmup, cfg.repeats, progress=bar.update)
            for i, (row, _) in enumerate(group):
                if str(i) in times:
                    row.latency_ms[f"b{bs}"] = Latency(**summarize(times[str(i)], bs))
        bar.close()
        ref = next((row for row, _ in group if row.variant == reference), group[0][0])
        for row, _ in group:
            row.speedup = {
                b: round(ref.latency_ms[b].p50 / lat.p50, 3) for b, lat in row.latency_ms.items()
            }


def end_to_end(
    loaded: list[tuple[MetricRow, Runtime]], cfg: EvaluateConfig, task: TaskData, max_len: int
) -> dict | None:
    """The CPU rows timed as an app runs them, on ``cfg.end_to_end`` texts of the scored split."""
    cpu = [(row, rt) for row, rt in loaded if row.device == "cpu"]
    if not cpu:
        return None
    split = task.splits[cfg.split][: cfg.max_examples or None]
    examples = [split[i] for i in text_sample(len(split), cfg.end_to_end)]
    with_tokenizers = []
    for row, rt in cpu:
        path = Path(row.path)
        with_tokenizers.append((row, rt, load_tokenizer(path.parent if path.is_file() else path)))
    bar = tqdm(total=len(examples), desc="end to end cpu", unit="text")
    lengths = measure_end_to_end(
        with_tokenizers, task, examples, max_len, cfg.batch_sizes, cfg.warmup, progress=bar.update
    )
    bar.close()
    lengths["split"] = cfg.split
    return lengths


def evaluate_artifacts(
    root: Path,
    cfg: EvaluateConfig,
    task: TaskData,
    *,
    name: str,
    max_seq_len: int,
    steps: list[str] | None = None,
    reference: str | None = None,
) -> Metrics:
    """Score and time every variant of ``steps`` (default: all finished steps); write
    ``eval/metrics.json`` and return it. ``reference``: the variant rows are compared with
    (default: the first)."""
    threads = cfg.threads or default_threads()
    load_before = os.getloadavg()
    manifest = Manifest(root)
    found = variants(manifest, steps)
    devices = usable_devices(cfg.devices)
    scored = []
    for variant in found:
        for device in devices:
            for precision in runs_for(variant, device, cfg.gpu_precisions):
                try:
                    scored.append(
                        score_variant(
                            variant,
                            device,
                            task,
                            cfg.split,
                            max_seq_len,
                            threads,
                            cfg.max_examples,
                            precision,
                        )
                    )
                except ProviderFallback as exc:  # not a GPU row: leave it out, say why
                    log.warning("%s", exc)
    loaded = [(row, rt) for row, rt, _ in scored]
    reference = reference or (found[0].name if found else "")
    compare_with_reference([(row, counts) for row, _, counts in scored], reference, task.type)
    ref_counts = next((c for row, _, c in scored if row.variant == reference), None)
    if cfg.memory:
        measure_memory([row for row, _ in loaded if row.device == "cpu"], cfg, task.type, threads)
    lengths = None
    if cfg.latency:
        measure_latency(loaded, cfg, reference)
        if cfg.end_to_end:
            lengths = end_to_end(loaded, cfg, task, max_seq_len)
    metrics = Metrics(
        recipe=name,
        task=task.name,
        metric=task.metric,
        split=cfg.split,
        split_description=task.split_name(cfg.split),
        examples=len(task.splits[cfg.split][: cfg.max_examples or None]),
        labels=task.labels,
        split_sizes={name: len(examples) for name, examples in task.splits.items()},
        reference=reference,
        steps=list(dict.fromkeys(v.step for v in found)),
        computed_from={v.step: manifest.steps[v.step].hash for v in found},
        hardware=hardware(threads, load_before),
        versions=package_versions(),
        rows=[row for row, _ in loaded],
        majority=majority_baseline(task, cfg.split, cfg.max_examples, ref_counts),
        end_to_end=lengths,
        timed_seq_len=cfg.seq_len if cfg.latency else None,
    )
    (root / "eval").mkdir(exist_ok=True)
    metrics.changed_since_last = keep_previous(root / "eval" / "metrics.json", metrics)
    write_json(root / "eval" / "metrics.json", metrics.model_dump(mode="json"))
    return metrics


def evaluate_recipe(root: Path, recipe: Recipe, task: TaskData) -> Metrics:
    """Evaluate the steps of ``recipe`` whose outputs are current in ``root`` (a step whose
    config or input changed since it ran is left out until it runs again)."""
    steps = current_steps(root, recipe)
    stale = [s.name for s in recipe.steps if s.name not in steps]
    if stale:
        log.warning("not evaluated, not current (run the recipe again): %s", ", ".join(stale))
    metrics = evaluate_artifacts(
        root,
        recipe.evaluate,
        task,
        name=recipe.name,
        max_seq_len=recipe.task.max_seq_len,
        steps=steps,
        reference=recipe.reference,
    )
    if recipe.repeat_seeds:
        repeats = {seed: evaluate_repeat(root, recipe, seed, task) for seed in recipe.repeat_seeds}
        pairs = [(s.config.references()[0], s.name) for s in recipe.steps if s.stage == "baseline"]
        runs = {recipe.seed: metrics, **repeats}
        metrics.seed_rows, metrics.seed_pairs = seed_summary(runs, metrics.reference, pairs)
        write_json(root / "eval" / "metrics.json", metrics.model_dump(mode="json"))
    return metrics


def evaluate_repeat(root: Path, recipe: Recipe, seed: int, task: TaskData) -> Metrics:
    """Score (no timing: the shapes are the main run's) the run repeated with ``seed``."""
    sub, repeat = repeat_dir(root, seed), recipe.with_seed(seed)
    cfg = recipe.evaluate.model_copy(update={"latency": False, "memory": False, "devices": ["cpu"]})
    return evaluate_artifacts(
        sub,
        cfg,
        task,
        name=f"{recipe.name} (seed {seed})",
        max_seq_len=recipe.task.max_seq_len,
        steps=current_steps(sub, repeat),
        reference=recipe.reference,
    )
