"""Latency that can be trusted: warm-up, interleaved repeats, percentiles, fixed threads."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch


def interleaved_timings(
    calls: dict[str, Callable[[], float | None]],
    warmup: int,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
    progress: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Time each call ``repeats`` times in ms, round-robin so that machine noise hits all alike.

    Every call is warmed up first. Each round starts one model later than the previous one, so
    no model always runs straight after the same neighbour. A call may return its own time in ms
    (GPU calls timed with CUDA events); otherwise ``clock`` times it.
    """
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            start = clock()
            measured = calls[name]()
            elapsed = (clock() - start) * 1000.0
            times[name].append(elapsed if measured is None else float(measured))
        if progress:
            progress()
    return times


BLOCKS = 4  # the interleaved rounds are cut into this many consecutive blocks
UNSTABLE = 0.15  # blocks whose medians differ by more than this fraction of p50: unstable


def summarize(samples: list[float], batch_size: int, blocks: int = BLOCKS) -> dict:
    """p50/p90/mean, the interquartile range, and how far the medians of consecutive blocks of
    rounds drift apart (a machine whose load changed mid-run shows here, not in p50 alone)."""
    arr = np.asarray(samples, dtype=float)
    p50 = float(np.percentile(arr, 50))
    chunks = [c for c in np.array_split(arr, min(blocks, len(arr))) if len(c)]
    medians = [float(np.median(c)) for c in chunks]
    spread = (max(medians) - min(medians)) / p50 if p50 > 0 else 0.0
    return {
        "p50": round(p50, 3),
        "p90": round(float(np.percentile(arr, 90)), 3),
        "mean": round(float(arr.mean()), 3),
        "throughput": round(batch_size * 1000.0 / p50, 2) if p50 > 0 else float("inf"),
        "iqr": round(float(np.percentile(arr, 75) - np.percentile(arr, 25)), 3),
        "block_p50": [round(m, 3) for m in medians],
        "block_spread": round(spread, 3),
        "unstable": spread > UNSTABLE,
    }


def timed_call(
    forward, batch, device: str, host_inputs: bool = False
) -> Callable[[], float | None]:
    """A call of ``forward(batch)``; on CUDA it returns its time from CUDA events. A runtime
    whose inputs live on the host (``host_inputs``: ONNX Runtime copies them itself, on its
    own stream) keeps the batch there and is timed by the wall clock, as the CPU is."""
    if device != "cuda" or host_inputs:

        def run() -> None:
            forward(batch)

        return run

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    batch = {k: v.to("cuda") for k, v in batch.items()}

    def call() -> float:
        start.record()
        forward(batch)
        end.record()
        end.synchronize()
        return start.elapsed_time(end)

    return call


def latency_batch(batch_size: int, seq_len: int, vocab_size: int, seed: int = 0):
    """A full-length batch of in-vocabulary ids (latency does not depend on their values)."""
    g = torch.Generator().manual_seed(seed)
    low = min(100, vocab_size - 1)
    ids = torch.randint(low, vocab_size, (batch_size, seq_len), generator=g)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
    }
