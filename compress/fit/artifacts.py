"""A candidate's artifacts: random-weight models of its exact shape (latency and size depend
on the shape and runtime, not on the weights), their runtime files (ONNX fp32, ONNX Runtime
int8, OpenVINO int8), their timing side by side, and the per-example dev counts of any
artifact the evaluator runs."""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from compress.data import collate, encode
from compress.fit.space import FILE_NAMES, Candidate, Shape
from compress.models import load_model, load_tokenizer, model_class, save_model
from compress.onnx import copy_side_files, onnx_export


def shape_vocab_sizes(
    shapes: Sequence[Shape], src: Path, task_type: str, texts: list[str], work: Path
) -> dict[Shape, int]:
    """Each shape's vocabulary size: the input's, or what TextPruner keeps of it on ``texts``."""
    full = len(load_tokenizer(src))
    cuts = {s.vocabulary for s in shapes if s.vocabulary is not None}
    kept = {v: len(vocabulary_ids(src, task_type, texts, v, work)) for v in cuts}
    return {s: full if s.vocabulary is None else kept[s.vocabulary] for s in shapes}


def vocabulary_ids(src: Path, task_type: str, texts: list[str], min_count: int, work: Path):
    """The ids TextPruner keeps for ``min_count`` on ``texts`` (computed once per count and
    kept in ``work``, so that probes, training and a resumed search all cut the same ids)."""
    cache = work / f"vocabulary-min{min_count}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    from compress.pruning import prune_vocabulary

    model, tokenizer = load_model(src, task_type), load_tokenizer(src)
    _, _, kept = prune_vocabulary(model, tokenizer, texts, min_count, work / f"vocab-{min_count}")
    work.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".partial")
    tmp.write_text(json.dumps(kept))
    os.replace(tmp, cache)
    return kept


def random_model(config, task_type: str, shape: Shape, vocab_size: int, seed: int = 0):
    """A random-weight model of the candidate's exact shape: the input's config with its
    depth, FFN and vocabulary changed and the same heads removed in every layer."""
    config = copy.deepcopy(config)
    config.num_hidden_layers = shape.layers
    config.intermediate_size = shape.ffn
    config.vocab_size = vocab_size
    config.pruned_heads = {}
    torch.manual_seed(seed)
    model = model_class(task_type).from_config(config)
    if shape.heads < config.num_attention_heads:
        gone = list(range(shape.heads, config.num_attention_heads))
        model.prune_heads({layer: gone for layer in range(shape.layers)})
    return model.eval()


def random_examples(n: int, seq_len: int, vocab_size: int, seed: int = 0) -> list[dict]:
    """Calibration inputs for a probe (its int8 ranges do not change its speed)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(min(100, vocab_size - 1), vocab_size, (n, seq_len), generator=g)
    return [
        {
            "input_ids": row[None].numpy(),
            "attention_mask": np.ones((1, seq_len), dtype=np.int64),
            "token_type_ids": np.zeros((1, seq_len), dtype=np.int64),
        }
        for row in ids
    ]


def task_examples(task, tokenizer, max_len: int, n: int) -> list[dict]:
    """Calibration inputs from the task's train split, one example each."""
    enc = encode(task.splits["train"][:n], tokenizer, task, max_len)
    return [
        {k: v.numpy() for k, v in collate(enc, [i], with_labels=False).items()}
        for i in range(len(enc))
    ]


def build_runtime(
    onnx_path: Path,
    runtime: str,
    out: Path,
    examples,
    preset: str,
    exclude: list[str] | None = None,
) -> Path:
    """The candidate's artifact in ``out`` from its fp32 ONNX file: the file itself, ORT int8
    (dynamic, or static calibrated on ``examples``) for ``preset`` with the ``exclude`` nodes
    left in fp32, or OpenVINO NNCF int8."""
    if runtime == "onnx-fp32":
        return onnx_path
    out.mkdir(parents=True, exist_ok=True)
    if runtime in ("ort-dynamic", "ort-static"):
        from compress.onnx import Calibration, ort_quantize

        calibration = None
        if runtime == "ort-static":
            from datasets import Dataset

            columns = {
                k: [e[k][0].tolist() for e in examples]
                for k in ("input_ids", "attention_mask", "token_type_ids")
            }
            calibration = Calibration(Dataset.from_dict(columns))
        return ort_quantize(
            onnx_path, out, preset=preset, calibration=calibration, nodes_to_exclude=exclude
        )
    assert runtime == "openvino-int8"
    from compress import openvino as ov

    return ov.save_ir(ov.nncf_int8(ov.convert_onnx(onnx_path), examples, "performance"), out)


def probe_artifacts(
    shapes: Sequence[Shape],
    runtimes: Sequence[str],
    vocab_sizes: dict[Shape, int],
    src: Path,
    task_type: str,
    work: Path,
    preset: str,
    seq_len: int,
) -> dict[str, Path]:
    """Every candidate's random-weight artifact (made once: a resumed search finds them)."""
    config = load_model(src, task_type).config
    tokenizer = load_tokenizer(src)
    paths = {}
    for shape in shapes:
        base = work / shape.key
        onnx_path = base / "onnx" / "model.onnx"
        if not (base / "onnx" / ".done").exists():
            shutil.rmtree(base, ignore_errors=True)
            model = random_model(config, task_type, shape, vocab_sizes[shape])
            save_model(model, tokenizer, base / "torch")
            onnx_export(base / "torch", base / "onnx", task_type)
            (base / "onnx" / ".done").touch()
        examples = random_examples(16, seq_len, vocab_sizes[shape])
        for runtime in runtimes:
            out = base / runtime
            done = out / ".done"
            if runtime != "onnx-fp32" and not done.exists():
                shutil.rmtree(out, ignore_errors=True)
                build_runtime(onnx_path, runtime, out, examples, preset)
                copy_side_files(base / "torch", out)  # the config the runtimes are read with
                done.touch()
            path = onnx_path if runtime == "onnx-fp32" else out / FILE_NAMES[runtime]
            paths[Candidate(shape, runtime).key] = path
    return paths


def time_artifacts(
    paths: dict[str, Path],
    vocab_sizes: dict[str, int],
    task_type: str,
    batch_size: int,
    seq_len: int,
    threads: int,
    warmup: int,
    repeats: int,
) -> dict[str, dict]:
    """Fixed-shape latency of every artifact, interleaved round by round in one run."""
    from compress.eval.latency import interleaved_timings, latency_batch, summarize, timed_call
    from compress.eval.runtimes import load_runtime

    calls = {}
    for key, path in paths.items():
        rt = load_runtime(path, task_type, "cpu", threads)
        batch = latency_batch(batch_size, seq_len, vocab_sizes[key])
        calls[key] = timed_call(rt.forward, batch, "cpu")
    times = interleaved_timings(calls, warmup, repeats)
    return {key: summarize(samples, batch_size) for key, samples in times.items()}


def time_end_to_end(
    paths: dict[str, Path],
    vocab_sizes: dict[str, int],
    task_type: str,
    tokenizer_file: Path,
    texts: list[str],
    seq_len: int,
    threads: int,
    warmup: int,
) -> dict[str, dict]:
    """What an app sees, per artifact: tokenizer + model, batch 1, each text at its own length,
    text by text across artifacts (each text starting one artifact later), as the evaluator and
    a bench folder's runner time it. A cut vocabulary's random-weight probe folds the
    tokenizer's ids into its range, as the runner does (the tokenizer costs the same)."""
    import time

    import torch

    from compress.device_runner import text_feeds
    from compress.eval.latency import summarize
    from compress.eval.runtimes import load_runtime

    feed = text_feeds(tokenizer_file, texts, seq_len)
    keys = list(paths)
    forwards = {k: load_runtime(paths[k], task_type, "cpu", threads).forward for k in keys}

    def call(key: str, text: str):
        batch = {n: torch.from_numpy(v) for n, v in feed(text, vocab_sizes[key]).items()}
        return forwards[key](batch)

    for key in keys:
        for text in texts[:warmup]:
            call(key, text)
    times: dict[str, list[float]] = {k: [] for k in keys}
    for i, text in enumerate(texts):
        for j in range(len(keys)):
            key = keys[(i + j) % len(keys)]
            start = time.perf_counter()
            call(key, text)
            times[key].append((time.perf_counter() - start) * 1000.0)
    return {k: summarize(v, 1) for k, v in times.items()}


def dev_counts(path: Path, task, max_len: int, threads: int) -> np.ndarray:
    """Per-example dev counts of an artifact (any kind the evaluator runs), for paired
    intervals against the reference."""
    from compress.eval.runtimes import load_runtime
    from compress.scoring import example_counts, predict, predicted_labels

    tokenizer = load_tokenizer(path.parent if path.is_file() else path)
    examples = task.splits["dev"]
    enc = encode(examples, tokenizer, task, max_len)
    rt = load_runtime(path, task.type, "cpu", threads)
    logits = predict(rt.forward, enc, rt.scoring_batch)
    return example_counts(task, examples, predicted_labels(task, enc, logits))
