"""Evaluate every step output of an artifacts directory: score, size, latency, memory."""

from __future__ import annotations

import gc
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from compress.data import encode
from compress.manifest import package_versions, write_json
from compress.models import load_tokenizer
from compress.tasks import TaskData
from eval.accuracy import predict, score
from eval.hardware import hardware
from eval.latency import interleaved_timings, latency_batch, summarize, timed_call
from eval.memory import peak_rss_mb
from eval.runtimes import Runtime, artifact_kind, load_runtime, size_mb, torch_precision

log = logging.getLogger(__name__)


@dataclass
class Variant:
    name: str
    stage: str
    path: Path

    @property
    def tokenizer_dir(self) -> Path:
        return self.path.parent if self.path.is_file() else self.path


def variants(root: Path) -> list[Variant]:
    """The finished steps of a run, in order."""
    manifest = json.loads((root / "manifest.json").read_text())
    done = sorted(
        (e for e in manifest["steps"].items() if e[1].get("status") == "done"),
        key=lambda item: item[1]["index"],
    )
    out = []
    for name, entry in done:
        out.append(Variant(name, entry["stage"], root / entry["output"]))
        step_dir = root / entry["output"].split("/")[0]
        for label, relative in entry.get("details", {}).get("extra_variants", {}).items():
            out.append(Variant(f"{name} ({label})", entry["stage"], step_dir / relative))
    return out


def usable_devices(wanted: list[str]) -> list[str]:
    devices = [d for d in wanted if d == "cpu" or torch.cuda.is_available()]
    if len(devices) < len(wanted):
        log.info("no CUDA device: GPU rows skipped")
    return devices


def runs_for(variant: Variant, device: str, gpu_precisions: list[str]) -> list[str | None]:
    """The precisions to run ``variant`` at on ``device`` (None: as saved); [] when unsupported.

    ORT int8 is a CPU path; fp16 weights are not run on CPU; an fp32 PyTorch model also gets the
    recipe's GPU precisions on CUDA.
    """
    kind = artifact_kind(variant.path)
    if kind == "onnx":
        if device == "cpu":
            return [None]
        import onnxruntime as ort

        gpu_ok = "CUDAExecutionProvider" in ort.get_available_providers()
        return [None] if gpu_ok and "quantized" not in variant.path.name else []
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
) -> tuple[dict, Runtime]:
    examples = task.splits[split][:max_examples] if max_examples else task.splits[split]
    enc = encode(examples, load_tokenizer(variant.tokenizer_dir), task, max_len)
    gc.collect()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rt = load_runtime(variant.path, task.type, device, threads, precision)
    value = score(task, examples, enc, predict(rt.forward, enc))
    # GPU: peak allocated while scoring; CPU rows get a fresh-process measurement later
    memory = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    row = {
        "variant": variant.name,
        "stage": variant.stage,
        "runtime": rt.runtime,
        "device": device,
        "precision": rt.precision,
        "params": rt.params,
        "size_mb": round(size_mb(variant.path), 2),
        "score": round(value, 5),
        "seq_len": max_len,
        "memory_mb": None if memory is None else round(memory, 1),
        "path": str(variant.path),
    }
    log.info(
        "%s on %s (%s %s): %s %.4f",
        variant.name,
        device,
        rt.runtime,
        rt.precision,
        task.metric,
        value,
    )
    return row, rt


def measure_latency(
    loaded: list[tuple[dict, Runtime]],
    batch_sizes: list[int],
    seq_len: int,
    warmup: int,
    repeats: int,
) -> None:
    """Fill ``latency_ms`` and ``speedup`` of each row; rows of one device are interleaved."""
    for device in sorted({row["device"] for row, _ in loaded}):
        group = [(row, rt) for row, rt in loaded if row["device"] == device]
        reference = group[0][0]
        bar = tqdm(total=len(batch_sizes) * repeats, desc=f"latency {device}", unit="round")
        for bs in batch_sizes:
            calls = {
                str(i): timed_call(rt.forward, latency_batch(bs, seq_len, rt.vocab_size), rt.device)
                for i, (_, rt) in enumerate(group)
            }
            times = interleaved_timings(calls, warmup, repeats, progress=bar.update)
            for i, (row, _) in enumerate(group):
                row.setdefault("latency_ms", {})[f"b{bs}"] = summarize(times[str(i)], bs)
        bar.close()
        for row, _ in group:
            row["speedup"] = {
                b: round(reference["latency_ms"][b]["p50"] / row["latency_ms"][b]["p50"], 3)
                for b in row["latency_ms"]
            }
            row["reference"] = reference["variant"]


def evaluate_artifacts(root: Path, recipe, task: TaskData) -> dict:
    """Score and time every variant; write ``eval/metrics.json`` and return it."""
    cfg = recipe.evaluate
    threads = cfg.threads or os.cpu_count() or 1
    loaded = []
    for variant in variants(root):
        for device in usable_devices(cfg.devices):
            for precision in runs_for(variant, device, cfg.gpu_precisions):
                loaded.append(
                    score_variant(
                        variant,
                        device,
                        task,
                        cfg.split,
                        recipe.task.max_seq_len,
                        threads,
                        cfg.max_examples,
                        precision,
                    )
                )
    for row, _ in loaded:
        if row["device"] == "cpu" and cfg.memory:
            row["memory_mb"] = peak_rss_mb(
                Path(row["path"]), task.type, max(cfg.batch_sizes), cfg.seq_len, threads
            )
    if cfg.latency:
        measure_latency(loaded, cfg.batch_sizes, cfg.seq_len, cfg.warmup, cfg.repeats)
    metrics = {
        "recipe": recipe.name,
        "task": task.name,
        "metric": task.metric,
        "split": cfg.split,
        "examples": len(task.splits[cfg.split][: cfg.max_examples or None]),
        "hardware": hardware(threads),
        "versions": package_versions(),
        "rows": [row for row, _ in loaded],
    }
    (root / "eval").mkdir(exist_ok=True)
    write_json(root / "eval" / "metrics.json", metrics)
    return metrics
