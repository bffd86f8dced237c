"""Accuracy-aware int8: an int8 candidate over the accuracy budget whose fp32 model meets
it keeps its most sensitive parts in fp32 (ONNX Runtime: encoder layers, embeddings, head,
greedily by the dev bound, as nodes_to_exclude) or goes through NNCF's accuracy control
(OpenVINO); what it cost in speed is timed beside its all-int8 probe."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from compress.fit.probing import preset
from compress.fit.space import FILE_NAMES, Plan
from compress.models import load_tokenizer
from compress.onnx import copy_side_files


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


def revert_int8(plan: Plan, candidate, onnx_path: Path, model_dir: Path, judge) -> dict:
    """An int8 candidate over the accuracy budget whose fp32 model meets it: ONNX Runtime int8
    keeps its most sensitive parts (encoder layers, embeddings, head) in fp32, greedily by the
    dev bound, until it meets the budget; OpenVINO int8 goes through NNCF's accuracy control.
    The result is timed again beside its all-int8 probe (reverting costs speed). Returns what
    was reverted (``fp32``: the parts or NNCF's removed quantizers; None when reverting could
    not help) and why."""
    from compress.fit.artifacts import build_runtime, task_examples

    cfg, ctx = plan.cfg, plan.ctx
    if cfg.budget.device is not None:
        return {
            "fp32": None,
            "why": "not tried: a partly reverted model was not timed on the device",
        }
    _, _, fp32_interval, fp32_meets = judge(onnx_path)
    if not fp32_meets:
        return {"fp32": None, "why": "not tried: the fp32 model misses the budget too"}
    examples = task_examples(ctx.task, load_tokenizer(model_dir), ctx.max_seq_len, 128)
    base = plan.work / "reverted" / candidate.key
    if candidate.runtime == "openvino-int8":
        # NNCF's own accuracy control, allowed the drop the fp32 model leaves: its lower bound
        # above -max_drop (an estimate; the result is judged again by the paired interval)
        assert cfg.budget.max_drop is not None
        slack = max(0.0, fp32_interval[0] + cfg.budget.max_drop / 100)
        path, removed = _nncf_accuracy_control(plan, onnx_path, model_dir, examples, base, slack)
        if not judge(path)[3]:
            return {
                "fp32": None,
                "why": f"NNCF's accuracy control (max_drop {slack * 100:.2f} points against fp32) "
                "did not bring it within the budget",
            }
        info = {"method": "nncf.quantize_with_accuracy_control", "fp32": removed or ["none"]}
        return info | _retimed(plan, candidate, path)
    groups = node_groups(onnx_path)

    def build(parts: list[str]) -> Path:
        out = base / "+".join(sorted(parts))
        if not (out / ".done").exists():
            shutil.rmtree(out, ignore_errors=True)
            exclude = [n for p in parts for n in groups[p]]
            build_runtime(onnx_path, candidate.runtime, out, examples, preset(cfg), exclude)
            copy_side_files(model_dir, out)
            (out / ".done").touch()
        return out / FILE_NAMES[candidate.runtime]

    def bound(parts: list[str]) -> tuple[bool, float]:
        _, _, interval, meets = judge(build(parts))
        return meets, interval[0]

    parts, trials = revert_greedy(list(groups), bound)
    if parts is None:
        return {
            "fp32": None,
            "why": "no part kept in fp32 brings it within the budget",
            "trials": trials,
        }
    path = build(parts)
    return {"method": "greedy by part (nodes_to_exclude)", "fp32": parts, "trials": trials} | (
        _retimed(plan, candidate, path)
    )


def _nncf_accuracy_control(plan, onnx_path, model_dir, examples, base: Path, slack: float):
    from compress import openvino as ov
    from compress.data import encode
    from compress.scoring import example_counts, predict, predicted_labels, score_counts

    task, max_len = plan.ctx.task, plan.ctx.max_seq_len
    dev = task.splits["dev"]
    enc = encode(dev, load_tokenizer(model_dir), task, max_len)

    def validate(compiled) -> float:
        logits = predict(ov.compiled_forward(compiled), enc, 64)
        return score_counts(
            task.type, example_counts(task, dev, predicted_labels(task, enc, logits))
        )

    model, removed = ov.nncf_int8_accuracy_control(
        ov.convert_onnx(onnx_path), examples, "performance", validate, slack
    )
    out = base / "nncf-accuracy-control"
    shutil.rmtree(out, ignore_errors=True)
    path = ov.save_ir(model, out)
    copy_side_files(model_dir, out)
    return path, removed


def _retimed(plan: Plan, candidate, path: Path) -> dict:
    """A partly reverted model timed beside its all-int8 probe; its latency in the probe's
    terms (the probe's p50 times the slowdown measured side by side here) and its size."""
    from compress.eval.runtimes import size_mb
    from compress.fit.artifacts import time_artifacts

    cfg, ctx = plan.cfg, plan.ctx
    probe = plan.probes[candidate.key]
    timed = time_artifacts(
        {"int8": plan.work / probe["path"], "reverted": path},
        {"int8": probe["vocab_size"], "reverted": probe["vocab_size"]},
        ctx.task.type,
        cfg.budget.batch_size or 1,
        cfg.budget.seq_len or ctx.max_seq_len,
        max(1, cfg.budget.threads // max(1, cfg.workers)),
        cfg.probe.warmup,
        cfg.probe.repeats,
    )
    slowdown = timed["reverted"]["p50"] / timed["int8"]["p50"]
    latency = dict(probe["latency"])
    latency["p50"] = round(latency["p50"] * slowdown, 3)
    return {
        "path": str(path.relative_to(plan.work)),
        "size_mb": round(size_mb(path), 3),
        "slowdown": round(slowdown, 3),
        "latency": latency,
    }
