"""The latency an app sees: tokenizer plus model on the scored split's own texts, batch 1, each
text at its own length; and throughput with length-bucketed batches.

The fixed-shape rows (``latency.py``) time full ``seq_len`` batches of random ids and leave the
tokenizer out; on short texts (the demo's reviews: median 46 characters) that is far from what a
phone running one review at a time spends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from compress.eval.latency import summarize
from compress.eval.schema import Latency, MetricRow

from compress.data import collate, encode
from compress.tasks import TaskData


def text_sample(n_examples: int, wanted: int) -> list[int]:
    """``wanted`` indices spread evenly over a split (its first rows may be sorted by source or
    length), in order; all of them when the split is smaller."""
    if wanted >= n_examples:
        return list(range(n_examples))
    return sorted({int(i) for i in np.linspace(0, n_examples - 1, wanted).round()})


def characters(example) -> int:
    """What a user typed: both sides of a pair, the question and context, an NER sentence."""
    if hasattr(example, "question"):
        return len(example.question) + len(example.context)
    if example.tokens is not None:
        return len("".join(example.tokens))
    return len(example.text) + len(example.text_pair or "")


def app_call(forward, tokenizer, task: TaskData, max_len: int) -> Callable[[Sequence], Any]:
    """What an app runs per request: tokenise the examples (cut at ``max_len``, QA contexts in
    windows, as in training), pad to the longest, run the model."""

    def call(examples: Sequence) -> Any:
        enc = encode(list(examples), tokenizer, task, max_len)
        return forward(collate(enc, list(range(len(enc))), with_labels=False))

    return call


def measure_end_to_end(
    loaded: list[tuple[MetricRow, Any, Any]],
    task: TaskData,
    examples: list,
    max_len: int,
    batch_sizes: list[int],
    warmup: int = 3,
    clock: Callable[[], float] = time.perf_counter,
    progress: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Fill each row's ``end_to_end`` (ms per text, batch 1, every text at its own length,
    tokenisation included) and ``end_to_end_throughput`` (texts per second over the same texts
    in length-sorted batches of each batch size above 1). ``loaded``: (row, runtime, tokenizer).

    Text by text, every row runs the same text in turn, each text starting one row later, so
    that machine noise hits all rows alike (as the fixed-shape rounds do). Returns the texts'
    length distribution (tokens as the first row's tokenizer cuts them, and characters)."""
    calls = [app_call(rt.forward, tok, task, max_len) for _, rt, tok in loaded]
    for call in calls:
        for ex in examples[:warmup]:
            call([ex])
    times: list[list[float]] = [[] for _ in loaded]
    for i, ex in enumerate(examples):
        for k in range(len(loaded)):
            j = (i + k) % len(loaded)
            start = clock()
            calls[j]([ex])
            times[j].append((clock() - start) * 1000.0)
        if progress:
            progress()
    for (row, _, _), samples in zip(loaded, times, strict=True):
        row.end_to_end = Latency(**summarize(samples, 1))
    tokens = token_lengths(loaded[0][2], task, examples, max_len) if loaded else []
    order = sorted(range(len(examples)), key=lambda i: tokens[i])
    for bs in (b for b in batch_sizes if b > 1):
        chunks = [[examples[i] for i in order[s : s + bs]] for s in range(0, len(order), bs)]
        takes = [(getattr(rt, "max_batch", None) or bs) >= bs for _, rt, _ in loaded]
        spent = [0.0] * len(loaded)
        for c, chunk in enumerate(chunks):
            for k in range(len(loaded)):
                j = (c + k) % len(loaded)
                if not takes[j]:
                    continue
                start = clock()
                calls[j](chunk)
                spent[j] += clock() - start
        for (row, _, _), seconds, ok in zip(loaded, spent, takes, strict=True):
            if ok:
                row.end_to_end_throughput[f"b{bs}"] = round(len(examples) / seconds, 2)
    return {
        "texts": len(examples),
        "tokens": _distribution(tokens),
        "characters": _distribution([characters(ex) for ex in examples]),
        "max_len": max_len,
    }


def token_lengths(tokenizer, task: TaskData, examples: list, max_len: int) -> list[int]:
    """Tokens per example as the model sees them (QA: its windows' tokens, summed)."""
    lengths = []
    for ex in examples:
        enc = encode([ex], tokenizer, task, max_len)
        lengths.append(sum(len(ids) for ids in enc.input_ids))
    return lengths


def _distribution(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    arr = np.asarray(values, dtype=float)
    return {
        "p10": float(np.percentile(arr, 10)),
        "p50": float(np.percentile(arr, 50)),
        "p90": float(np.percentile(arr, 90)),
        "max": float(arr.max()),
    }
