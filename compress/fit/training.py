"""Training one candidate: the input cut to its shape (vocabulary, layers kept uniformly,
heads and FFN pruned with TextPruner), recovered, converted to its runtime and scored on dev
against the reference by the paired bootstrap interval the evaluator uses; an int8 candidate
that misses the accuracy budget is reverted in part (compress/fit/int8.py)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from filelock import FileLock

from compress.fit.int8 import revert_int8
from compress.fit.probing import preset
from compress.fit.space import FILE_NAMES, Candidate, Plan, Shape, kept_layers
from compress.models import load_model, load_tokenizer, save_model
from compress.onnx import copy_side_files


def trained_dir(work: Path, shape: Shape) -> Path:
    """Where a shape's trained PyTorch model is kept (one per shape: its runtimes share it)."""
    return work / "trained" / shape.key / "model"


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
    recovered (KD from the input, or fine-tuning). Written to ``out/model`` once, whichever
    worker gets there first (several runtimes share one trained shape)."""
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
    from compress.recovery import recover as run_recovery
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


def train_candidate(plan: Plan, candidate: Candidate) -> dict:
    """Prune, recover, convert and score one candidate on dev against the reference."""
    import numpy as np

    from compress.eval.stats import paired_delta
    from compress.fit.artifacts import build_runtime, dev_counts, task_examples
    from compress.onnx import onnx_export
    from compress.scoring import score_counts

    ctx, cfg = plan.ctx, plan.cfg
    start = time.perf_counter()
    shape_dir = trained_dir(plan.work, candidate.shape).parent
    model_dir = train_shape(
        candidate.shape,
        plan.src,
        ctx.task,
        ctx.max_seq_len,
        ctx.seed,
        cfg.recover,
        ctx.task.texts("train"),
        shape_dir,
    )
    onnx_path = shape_dir / "onnx" / "model.onnx"
    with FileLock(str(shape_dir) + ".onnx.lock"):
        if not (shape_dir / "onnx" / ".done").exists():
            shutil.rmtree(shape_dir / "onnx", ignore_errors=True)
            onnx_export(model_dir, shape_dir / "onnx", ctx.task.type)
            (shape_dir / "onnx" / ".done").touch()
    out = plan.work / "candidates" / candidate.key
    if candidate.runtime == "onnx-fp32":
        path = onnx_path
    else:
        shutil.rmtree(out, ignore_errors=True)
        examples = task_examples(ctx.task, load_tokenizer(model_dir), ctx.max_seq_len, 128)
        build_runtime(onnx_path, candidate.runtime, out, examples, preset(cfg))
        path = out / FILE_NAMES[candidate.runtime]
    copy_side_files(model_dir, path.parent)
    threads = max(1, cfg.budget.threads // max(1, cfg.workers))
    reference = np.load(plan.work / "reference_dev_counts.npy")
    max_drop = cfg.budget.max_drop

    def judge(artifact: Path):
        counts = dev_counts(artifact, ctx.task, ctx.max_seq_len, threads)
        delta, interval = paired_delta(ctx.task.type, counts, reference, ctx.seed)
        meets = max_drop is None or interval[0] >= -max_drop / 100
        return counts, delta, interval, bool(meets)

    counts, delta, interval, meets = judge(path)
    from compress.signal import against_trivial, trivial_dev

    result: dict = {}
    if not meets and candidate.runtime != "onnx-fp32" and cfg.revert:
        reverted = revert_int8(plan, candidate, onnx_path, model_dir, judge)
        result["revert"] = reverted
        if reverted.get("fp32"):
            path = plan.work / reverted["path"]
            counts, delta, interval, meets = judge(path)
            b = cfg.budget
            if b.latency_ms is not None and reverted["latency"]["p50"] > b.latency_ms:
                result["over"] = "over latency after reverting"
            elif b.size_mb is not None and reverted["size_mb"] > b.size_mb:
                result["over"] = "over size after reverting"
    result |= {
        "path": str(path.relative_to(plan.work)),
        "dev_score": score_counts(ctx.task.type, counts),
        "dev_delta": delta,
        "dev_delta_interval": interval,
        "meets_accuracy": meets,
        **against_trivial(ctx.task.type, counts, trivial_dev(ctx.task)[1], ctx.seed),
        "seconds": round(time.perf_counter() - start, 1),
        "worker": os.getpid(),
    }
    # one file per training run, in the step's output: a candidate trained twice shows here
    trials = ctx.step_dir / "trials"
    trials.mkdir(parents=True, exist_ok=True)
    (trials / f"{candidate.key}.{os.getpid()}.json").write_text(
        json.dumps({"key": candidate.key, **result}, indent=1), encoding="utf-8"
    )
    return result
