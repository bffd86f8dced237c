"""The fit stage's machinery: candidates of a compression space, shape-first probes (random
weights of a candidate's exact shape and runtime, timed and sized on this machine before any
training), and the training, quantizing and dev scoring of a candidate.

A candidate's latency and size depend on its shape and runtime, not on its weights, so every
candidate is measured first from a random-weight model; only those that fit the budget are
pruned, recovered and scored (``compress/stages/fit.py`` runs the search over them).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from compress.data import collate, encode
from compress.models import load_model, load_tokenizer, model_class, save_model

log = logging.getLogger(__name__)

RUNTIMES = ("onnx-fp32", "ort-dynamic", "ort-static", "openvino-int8")
FILE_NAMES = {
    "onnx-fp32": "model.onnx",
    "ort-dynamic": "model_quantized.onnx",
    "ort-static": "model_quantized.onnx",
    "openvino-int8": "openvino_model.xml",
}


@dataclass(frozen=True)
class Shape:
    layers: int
    heads: int
    ffn: int
    vocabulary: int | None  # the vocabulary cut's min_count; None: the input's vocabulary

    @property
    def key(self) -> str:
        vocab = "full" if self.vocabulary is None else f"min{self.vocabulary}"
        return f"L{self.layers}-H{self.heads}-F{self.ffn}-V{vocab}"


@dataclass(frozen=True)
class Candidate:
    shape: Shape
    runtime: str

    @property
    def key(self) -> str:
        return f"{self.shape.key}-{self.runtime}"

    def params(self) -> dict:
        """The candidate as the search's parameters (a vocabulary of None as "full")."""
        return {
            "layers": self.shape.layers,
            "heads": self.shape.heads,
            "ffn": self.shape.ffn,
            "vocabulary": "full" if self.shape.vocabulary is None else self.shape.vocabulary,
            "runtime": self.runtime,
        }

    @classmethod
    def from_params(cls, params: dict) -> Candidate:
        vocab = params["vocabulary"]
        shape = Shape(
            int(params["layers"]),
            int(params["heads"]),
            int(params["ffn"]),
            None if vocab == "full" else int(vocab),
        )
        return cls(shape, str(params["runtime"]))


def kept_layers(depth: int, layers: int) -> list[int]:
    """``layers`` encoder layers of ``depth`` chosen uniformly, the last one always among them
    (4 of 12: 2, 5, 8, 11), as a student cut from its teacher keeps them."""
    return [round((i + 1) * depth / layers) - 1 for i in range(layers)]


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


def node_groups(onnx_path: Path) -> dict[str, list[str]]:
    """An exported encoder's nodes by the part they belong to, in graph order: ``embeddings``,
    ``layer.N`` per encoder layer, ``head`` (pooler and classifier): the units an int8 model
    may keep in fp32 when int8 costs too much accuracy."""
    import re

    import onnx

    groups: dict[str, list[str]] = {}
    for node in onnx.load(onnx_path, load_external_data=False).graph.node:
        if match := re.search(r"/layer\.(\d+)/", node.name):
            part = f"layer.{match.group(1)}"
        elif "/embeddings/" in node.name:
            part = "embeddings"
        elif node.name.startswith(("/bert/pooler/", "/classifier/", "/qa_outputs/")):
            part = "head"
        else:
            continue
        groups.setdefault(part, []).append(node.name)
    return groups


def revert_greedy(parts: Sequence[str], judge) -> tuple[list[str] | None, list[dict]]:
    """Which parts to keep in fp32 so that an int8 model meets its accuracy budget: greedily,
    the part whose reverting raises the judged bound most, one at a time, until it meets.
    ``judge(kept_fp32) -> (meets, bound)``. Returns the parts (None: even all of them do not
    meet it) and every trial, in order."""
    reverted: list[str] = []
    trials: list[dict] = []
    while len(reverted) < len(parts):
        scored = {}
        for part in parts:
            if part not in reverted:
                meets, bound = judge([*reverted, part])
                scored[part] = (meets, bound)
                trials.append({"fp32": [*reverted, part], "meets": meets, "bound": bound})
        best = max(scored, key=lambda p: (scored[p][1], scored[p][0]))
        reverted.append(best)
        if scored[best][0]:
            return reverted, trials
    return None, trials


def copy_side_files(src: Path, out: Path) -> None:
    from compress.stages.quantize import SIDE_FILES

    for name in SIDE_FILES:
        if (src / name).exists() and not (out / name).exists():
            shutil.copy(src / name, out / name)


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
    from compress.stages.export import onnx_export

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


def train_shape(
    shape: Shape,
    src: Path,
    task,
    max_len: int,
    seed: int,
    recover,
    texts: list[str],
    out: Path,
) -> Path:
    """The input cut to ``shape``: vocabulary (the probe's ids), layers kept uniformly, then
    heads and FFN pruned with TextPruner on importance scores (as the prune stage does), and
    recovered (KD from the
    input, or fine-tuning). Written to ``out/model`` once, whichever worker gets there first
    (several runtimes share one trained shape)."""
    done = out / "model" / ".done"
    with FileLock(str(out) + ".lock"):
        if done.exists():
            return out / "model"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        record = _train(shape, src, task, max_len, seed, recover, texts, out)
        (out / "training.json").write_text(json.dumps(record, indent=1, default=str))
        done.touch()
    return out / "model"


def _train(shape, src, task, max_len, seed, recover, texts, out: Path) -> dict:
    from compress.pruning import importance_batches, prune_transformer, prune_vocabulary
    from compress.stages.prune import recover as run_recovery
    from compress.students import cut_from_teacher

    model, tokenizer = load_model(src, task.type), load_tokenizer(src)
    record: dict = {"pid": os.getpid()}
    kept_ids = None
    if shape.vocabulary is not None:
        model, tokenizer, kept_ids = prune_vocabulary(
            model, tokenizer, texts, shape.vocabulary, out / "work"
        )
        record["vocabulary"] = len(kept_ids)
    depth = model.config.num_hidden_layers
    if shape.layers < depth:
        record["layers_kept"] = kept_layers(depth, shape.layers)
        model = cut_from_teacher(model, record["layers_kept"])
    heads, ffn = model.config.num_attention_heads, model.config.intermediate_size
    if shape.heads < heads or shape.ffn < ffn:
        batches = importance_batches(task, tokenizer, max_len, 32, 16, seed)
        record["pruning"] = prune_transformer(
            model,
            batches,
            heads=shape.heads,
            ffn=shape.ffn,
            n_iters=2,
            head_even_masking=True,
            use_logits=False,
            work_dir=out / "work",
        )
    if recover is not None:
        from compress.registry import StageContext as Context

        ctx = Context(task, max_len, seed, out, f"fit {shape.key}")
        record["recovery"] = run_recovery(model, tokenizer, recover, src, kept_ids, ctx)
    shutil.rmtree(out / "work", ignore_errors=True)
    save_model(model, tokenizer, out / "model")
    return record
