"""Shape-first probing: every candidate of the space built from random weights of its exact
shape, converted to its runtime, timed side by side and sized on this machine (or its latency
read from the target's device profile), so that those over the latency or size budget are
rejected before any training; then the order the rest are tried in, and the check of the
trained winner against its probe."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from compress.errors import RecipeError
from compress.fit.space import Candidate, FitConfig
from compress.registry import StageContext

log = logging.getLogger(__name__)


def preset(cfg: FitConfig) -> str:
    """The int8 preset: the device profile's instruction set, else ``target`` (this machine's
    by default)."""
    from compress.onnx import cpu_preset

    if cfg.budget.device is not None:
        from compress.bench import load_profile, profile_preset

        return profile_preset(load_profile(cfg.budget.device))
    return cpu_preset() if cfg.target == "build-host" else cfg.target


def device_latency(cfg: FitConfig, keys: list[str], seq_len: int) -> tuple[dict, dict]:
    """The target's latency of every candidate, from the device profile, and what it says of
    the device; refused, naming what to do, when the profile is not of this space or shape."""
    from compress.bench import load_profile

    path, b = cfg.budget.device, cfg.budget
    assert path is not None
    profile = load_profile(path)
    batch = f"b{b.batch_size or 1}"
    problems = []
    if profile["seq_len"] != seq_len:
        problems.append(f"it timed {profile['seq_len']} tokens, the budget is for {seq_len}")
    if profile["quantized_for"] != preset(cfg):
        problems.append(
            f"its int8 candidates were quantized for {profile['quantized_for']} but the device's "
            f"instruction set calls for {preset(cfg)} (bench --target {preset(cfg)})"
        )
    timed = profile["candidates"]
    missing = [k for k in keys if k not in timed and k not in profile.get("skipped", {})]
    if missing:
        problems.append(
            f"it has no timing for {len(missing)} candidate(s) of this space, e.g. {missing[0]}"
        )
    if any(batch not in timed[k]["fixed"] for k in keys if k in timed):
        problems.append(f"it has no batch {b.batch_size or 1} timings")
    if problems:
        raise RecipeError(
            f"budget.device: {path}: " + "; ".join(problems) + ". Write a bench folder for this "
            "step again (lert-compress bench RECIPE --step NAME --out FOLDER) and run it on the "
            "target"
        )
    if b.latency_of == "end_to_end":
        latency = {k: timed[k]["end_to_end"] for k in keys if k in timed}
    else:
        latency = {k: timed[k]["fixed"][batch] for k in keys if k in timed}
    device = {
        "profile": str(path),
        "cpu": profile["cpu"].get("name"),
        "machine": profile["cpu"].get("machine"),
        "isa": profile["cpu"].get("isa", []),
        "threads": profile["threads"],
        "measured_at": profile.get("measured_at"),
        "skipped": profile.get("skipped", {}),
    }
    return latency, device


def probe_all(cfg: FitConfig, src: Path, ctx: StageContext, work: Path) -> tuple[dict, dict]:
    """Shape-first: every candidate's random-weight artifact, timed side by side and sized.
    Kept in the resume directory, so that a resumed search does not probe again."""
    from compress.eval.runtimes import size_mb
    from compress.fit.artifacts import probe_artifacts, shape_vocab_sizes

    saved = work / "probes.json"
    if saved.exists():
        data = json.loads(saved.read_text())
        return data["probes"], data["meta"]
    start = time.perf_counter()
    shapes = cfg.space.shapes()
    sizes = shape_vocab_sizes(shapes, src, ctx.task.type, ctx.task.texts("train"), work / "vocab")
    seq_len = cfg.budget.seq_len or ctx.max_seq_len
    log.info(
        "fit: probing %d candidates from random weights", len(shapes) * len(cfg.space.runtimes)
    )
    paths = probe_artifacts(
        shapes,
        cfg.space.runtimes,
        sizes,
        src,
        ctx.task.type,
        work / "probes",
        preset(cfg),
        seq_len,
    )
    from compress.fit.artifacts import time_artifacts

    keys_vocab = {Candidate(s, r).key: sizes[s] for s in shapes for r in cfg.space.runtimes}
    timed, timed_vocab = _with_beside(cfg, ctx, paths, keys_vocab)
    host = time_artifacts(
        timed,
        timed_vocab,
        ctx.task.type,
        cfg.budget.batch_size or 1,
        seq_len,
        cfg.budget.threads,
        cfg.probe.warmup,
        cfg.probe.repeats,
    )
    if cfg.budget.latency_of == "end_to_end":
        from compress.fit.artifacts import time_end_to_end

        dev = ctx.task.texts("dev")
        every = max(1, len(dev) // cfg.budget.texts)
        host = time_end_to_end(
            timed,
            timed_vocab,
            ctx.task.type,
            src / "tokenizer.json",
            dev[::every][: cfg.budget.texts],
            seq_len,
            cfg.budget.threads,
            cfg.probe.warmup,
        )
    beside = host.pop(BESIDE, None)
    latency, device = host, None
    if cfg.budget.device is not None:  # the target's numbers decide; this machine's are kept
        latency, device = device_latency(cfg, list(paths), seq_len)
    probes = {
        key: {
            "path": str(path.relative_to(work)),
            "size_mb": round(size_mb(path), 3),
            "latency": latency.get(key),  # None: the device could not run it
            "host_latency": host[key],
            "vocab_size": keys_vocab[key],
        }
        for key, path in paths.items()
    }
    meta = {
        "seconds": round(time.perf_counter() - start, 1),
        "batch_size": cfg.budget.batch_size or 1,
        "seq_len": seq_len,
        "latency_of": cfg.budget.latency_of,
        "threads": device["threads"] if device else cfg.budget.threads,
        "preset": preset(cfg),
        "device": device,
        "beside": _speedup(cfg, beside, host),
    }
    tmp = saved.with_suffix(".partial")
    tmp.write_text(json.dumps({"probes": probes, "meta": meta}, indent=1))
    os.replace(tmp, saved)
    return probes, meta


BESIDE = "beside"  # the key of the model timed beside the candidates


def _with_beside(cfg: FitConfig, ctx: StageContext, paths: dict, vocab: dict) -> tuple[dict, dict]:
    """The candidates' artifacts, and the ``probe.beside`` step's model with them."""
    if cfg.probe.beside is None:
        return paths, vocab
    from compress.arch import tokenizer_size

    path = ctx.outputs[cfg.probe.beside]
    folder = path.parent if path.is_file() else path
    size = tokenizer_size(folder) or min(vocab.values())
    return {**paths, BESIDE: path}, {**vocab, BESIDE: size}


def _speedup(cfg: FitConfig, beside: dict | None, host: dict) -> dict | None:
    """The fastest candidate on this machine against the model timed beside it."""
    if beside is None:
        return None
    fastest = min(host, key=lambda k: host[k]["p50"])
    return {
        "step": cfg.probe.beside,
        "latency": beside,
        "fastest": fastest,
        "fastest_p50": host[fastest]["p50"],
        "speedup": round(beside["p50"] / host[fastest]["p50"], 1),
    }


def over_budget(cfg: FitConfig, probe: dict) -> str | None:
    b = cfg.budget
    if probe["latency"] is None:
        return "not timed on the device"
    if b.latency_ms is not None and probe["latency"]["p50"] > b.latency_ms:
        return "over latency"
    if b.size_mb is not None and probe["size_mb"] > b.size_mb:
        return "over size"
    return None


def priority(cfg: FitConfig, candidates, probes):
    """Best first: accurate: the largest model first (most parameters kept, then fp32 before
    int8 as the slower but closer one); fast: the lowest probed latency first."""
    if cfg.objective == "fast":
        return sorted(candidates, key=lambda c: (probes[c.key]["latency"]["p50"], c.key))
    order = {
        r: i for i, r in enumerate(("onnx-fp32", "ort-static", "openvino-int8", "ort-dynamic"))
    }
    return sorted(
        candidates,
        key=lambda c: (
            -c.shape.layers * (c.shape.heads * 64 + c.shape.ffn),
            -probes[c.key]["vocab_size"],
            order[c.runtime],
        ),
    )


def probe_check(
    winner_path: Path, probe_path: Path, probe: dict, cfg: FitConfig, task_type, seq_len
):
    """The trained winner timed beside its random-weight probe, in one interleaved run."""
    from compress.fit.artifacts import time_artifacts

    timed = time_artifacts(
        {"probe": probe_path, "trained": winner_path},
        {"probe": probe["vocab_size"], "trained": probe["vocab_size"]},
        task_type,
        cfg.budget.batch_size or 1,
        seq_len,
        cfg.budget.threads,
        cfg.probe.warmup,
        cfg.probe.repeats,
    )
    p, t = timed["probe"], timed["trained"]
    spread = max(p["iqr"], t["iqr"])
    return {
        "probe_p50": p["p50"],
        "trained_p50": t["p50"],
        "spread": spread,
        "agree": abs(p["p50"] - t["p50"]) <= spread,
    }
