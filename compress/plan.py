"""The cost of a recipe's real run, from its rehearsal (compress/rehearsal.py): per training run,
the seconds per optimizer step measured at the real shapes on this machine and the steps the
real run takes (its epochs over the real split's size), extrapolated; per step, its peak
memory against this machine's; and a GPU estimate from each step's FLOPs at a stated
throughput, marked as an estimate.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

# The GPU the estimate is for, and what it assumes: an H100 SXM's dense peaks (NVIDIA's data
# sheet, without sparsity) at 40% of them, a utilisation BERT-size training commonly reaches.
# A step's precision picks the peak: bf16/fp16 autocast runs on the tensor cores (989 TFLOP/s);
# fp32 runs at TF32's rate (495) only where float32 matmuls may use TF32, which PyTorch leaves
# off by default since 1.12 (torch.get_float32_matmul_precision() == "highest"), and otherwise
# on the CUDA cores (67). An estimate, not a measurement.
GPU = {
    "card": "NVIDIA H100 SXM",
    "utilisation": 0.40,
    "peak_tflops": {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9},
}


def gpu_rate(precision: str) -> tuple[str, float]:
    """The arithmetic a training run at ``precision`` gets on the estimate's GPU, and its peak
    TFLOP/s: an fp32 run gets TF32 where this process lets float32 matmuls use it."""
    import torch

    if precision == "fp32" and torch.get_float32_matmul_precision() != "highest":
        precision = "tf32"
    return precision, GPU["peak_tflops"][precision]


FIT_SHARE = 0.9  # a step whose peak is over this share of the machine's memory may not fit


# what a process holds besides the model: the interpreter, torch and its libraries (measured:
# about 1.2 GB resident before the first model loads)
RUNTIME_GB = 1.5


@dataclass(frozen=True)
class TrainingMemory:
    """The peak memory of training one model, estimated before any work (GB): its weights,
    gradients and AdamW's two moments in fp32, the activations the backward pass keeps, a
    frozen teacher beside it, and the runtime."""

    states: float
    activations: float
    teacher: float
    total: float


def training_memory(
    arch, batch: int, seq: int, checkpointing: bool = False, teacher=None, params: int | None = None
) -> TrainingMemory:
    """Korthikanti et al. 2022 ("Reducing activation recomputation in large transformer
    models"): one layer keeps 34·s·b·h + 5·a·s²·b bytes of 16-bit activations with an FFN of
    4h (15·s·b·h around attention, 19 in the FFN, which scales with its width), doubled here
    for fp32; with checkpointing only each layer's input stays, plus one layer recomputed."""
    s, b, h, a, f = seq, batch, arch.hidden, arch.heads, arch.ffn
    layer = 2 * (s * b * (15 * h + 4.75 * f) + 5 * a * s * s * b)
    kept = s * b * h * 4 + layer / arch.layers if checkpointing else layer  # per layer
    activations = arch.layers * kept
    count = params if params is not None else bert_params(arch)
    frozen = 0.0
    if teacher is not None:  # fp32 weights, and its hidden states of one batch
        frozen = bert_params(teacher) * 4 + (teacher.layers + 1) * s * b * teacher.hidden * 4
    gb = 2**30
    states = count * 16 / gb
    total = states + activations / gb + frozen / gb + RUNTIME_GB
    return TrainingMemory(
        round(states, 2), round(activations / gb, 2), round(frozen / gb, 2), round(total, 1)
    )


def bert_params(arch) -> int:
    """A BERT encoder's weights from its shape (embeddings of its vocabulary, 512 positions and
    2 token types where not known, each layer's attention and FFN, the pooler)."""
    h, f = arch.hidden, arch.ffn
    vocab = arch.vocab or arch.tokens or 21128
    embeddings = (vocab + (arch.positions or 512) + (arch.type_vocab or 2)) * h + 2 * h
    head_dim = h // (arch.width_heads or arch.heads)
    inner = arch.heads * head_dim  # pruned heads shrink the attention's inner width
    layer = 3 * (h * inner + inner) + inner * h + h + 2 * h * f + f + h + 4 * h
    return int(embeddings + arch.layers * layer + h * h + h)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run_cost(run: dict, scale: float) -> dict:
    """One training run: measured seconds per step (the first step, warm-up, left out when
    there are others), the real run's steps, and both extrapolations."""
    timed = run["step_seconds"][1:] or run["step_seconds"]
    per_step = _median(timed)
    if run["max_steps"]:
        real_steps = run["max_steps"]
    else:
        per_epoch = max(1, math.ceil(run["per_epoch"] * scale))
        real_steps = max(1, math.ceil(run["epochs"] * per_epoch))
    tokens = _median([float(t) for t in run["step_tokens"]]) if run["step_tokens"] else 0.0
    # forward and backward of the trained model, and a teacher's forward where it runs per batch
    flops = (6.0 * run["matmul_params"] + 2.0 * run.get("frozen_matmul_params", 0)) * tokens
    arithmetic, peak = gpu_rate(run.get("precision", "fp32"))
    throughput = peak * 1e12 * GPU["utilisation"]
    return {
        "run": run["run"],
        "steps_measured": len(run["step_seconds"]),
        "seconds_per_step": round(per_step, 3),
        "spread": [round(min(timed), 3), round(max(timed), 3)] if timed else None,
        "tokens_per_step": int(tokens),
        "real_steps": real_steps,
        "real_seconds": round(per_step * real_steps, 1),
        "gpu_arithmetic": arithmetic,
        "gpu_seconds_estimate": round(real_steps * flops / throughput, 1),
    }


def cost_plan(record: dict, runs_by_step: dict[str, list[dict]], observed: dict, memory_gb: float):
    """The plan: per recipe step its training runs' costs, its measured seconds and peak
    memory at rehearsal size, and whether the real run fits this machine."""
    rows, real = record.get("rows") or {}, record.get("real_rows") or {}
    scale = real["train"] / rows["train"] if rows.get("train") and real.get("train") else 1.0
    steps = []
    over = {m["step"]: m for m in record.get("over_memory", [])}
    for name, seen in observed.items():
        runs = [run_cost(r, scale) for r in runs_by_step.get(name, [])]
        peak_gb = seen["peak_rss_mb"] / 1024
        fits = peak_gb <= FIT_SHARE * memory_gb and name not in over
        if name in over:  # estimated over before it ran; rehearsed with the fix
            advice = f"{over[name]['problem']} (rehearsed with {over[name]['rehearsed_with']})"
        elif not fits:
            advice = (
                f"peak {peak_gb:.1f} GB of this machine's {memory_gb:.0f} GB: give the step "
                "gradient_checkpointing: true or a smaller batch_size, or a larger machine"
            )
        else:
            advice = None
        trained = sum(r["real_seconds"] for r in runs)
        steps.append(
            {
                "step": name,
                "rehearsal_seconds": seen["seconds"],
                "peak_rss_gb": round(peak_gb, 2),
                "fits": fits,
                "advice": advice,
                "runs": runs,
                "real_training_seconds": round(trained, 1),
                "gpu_seconds_estimate": round(sum(r["gpu_seconds_estimate"] for r in runs), 1),
            }
        )
    return {
        "scale": round(scale, 2),
        "train_rows": {"rehearsal": rows.get("train"), "real": real.get("train")},
        "memory_gb": round(memory_gb, 1),
        "gpu": GPU,
        "steps": steps,
        "real_training_seconds": round(sum(s["real_training_seconds"] for s in steps), 1),
        "gpu_seconds_estimate": round(sum(s["gpu_seconds_estimate"] for s in steps), 1),
    }


ARITHMETIC = {
    "bf16": "bf16 autocast on the tensor cores",
    "fp16": "fp16 autocast on the tensor cores",
    "tf32": "fp32 with TF32 matmuls",
    "fp32": "fp32 on the CUDA cores (PyTorch leaves TF32 off by default)",
}


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plan_markdown(plan: dict, recipe: str, threads: int) -> str:
    """The plan as a table a person reads before starting the real run."""
    gpu = plan["gpu"]
    used = sorted({r["gpu_arithmetic"] for s in plan["steps"] for r in s["runs"]})
    peaks = "; ".join(f"{ARITHMETIC[a]}, {gpu['peak_tflops'][a]:.0f} TFLOP/s" for a in used)
    peaks = peaks or "no training run to estimate"
    if "fp32" in used:
        peaks += (
            f"; a step given precision: bf16 would run on the tensor cores, "
            f"{gpu['peak_tflops']['bf16']:.0f} TFLOP/s"
        )
    lines = [
        f"# Cost plan: {recipe}",
        "",
        f"Measured by a rehearsal at LERT's real shapes on this machine ({threads} threads, "
        f"{plan['memory_gb']} GB): seconds per optimizer step at the recipe's batch size and "
        f"max_seq_len, times the steps the real run takes ({plan['train_rows']['real']} train "
        f"rows, {plan['scale']}x the rehearsal's {plan['train_rows']['rehearsal']}; its epochs "
        "and batch size). Dev checks, caches, export and evaluation are timed at rehearsal size "
        "only (rehearsal s). GPU: an estimate from each step's FLOPs (6 x trained weights x "
        "tokens, and 2 x a teacher's weights x tokens where it runs per batch) on "
        f"an {gpu['card']} at {gpu['utilisation']:.0%} of its dense peak at the run's "
        f"precision ({peaks}), not a measurement.",
        "",
        "| step | run | s / step (range) | tokens / step | real steps | real time here | GPU "
        "estimate | rehearsal s | peak GB | fits |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in plan["steps"]:
        fits = "yes" if s["fits"] else f"**no**: {s['advice']}"
        head = f"| {s['step']} |"
        tail = f"{s['rehearsal_seconds']:.0f} | {s['peak_rss_gb']:.1f} | {fits} |"
        if not s["runs"]:
            lines.append(f"{head} – | – | – | – | – | – | {tail}")
        for r in s["runs"]:
            spread = f" ({r['spread'][0]:.2f}–{r['spread'][1]:.2f})" if r["spread"] else ""
            lines.append(
                f"{head} {r['run']} | {r['seconds_per_step']:.2f}{spread} | "
                f"{r['tokens_per_step']:,} | {r['real_steps']:,} | "
                f"{_duration(r['real_seconds'])} | {_duration(r['gpu_seconds_estimate'])} | {tail}"
            )
            head, tail = "| |", " | | |"
    lines += [
        "",
        f"Training in the real run: about {_duration(plan['real_training_seconds'])} on this "
        f"machine; about {_duration(plan['gpu_seconds_estimate'])} on one {gpu['card']} "
        "(estimate).",
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class MemoryProblem:
    """A training run that will not fit this machine, and the override that makes it fit."""

    step: str
    key: str  # steps.NAME or steps.NAME.recover
    message: str
    fix: str  # the override a rehearsal runs it with


def device_memory_gb() -> tuple[float, str]:
    """The memory training runs in: the first GPU's where CUDA is, else this machine's."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return props.total_memory / 2**30, f"the GPU's ({props.name})"
    import psutil

    return psutil.virtual_memory().total / 2**30, "this machine's"


def memory_problems(recipe, total_gb: float | None = None, where: str = "") -> list[MemoryProblem]:
    """Each training run of the recipe whose estimated peak is over the device's memory, with
    the options that bring it under: gradient checkpointing, or a smaller batch."""
    from compress.arch import plan_archs

    if total_gb is None:
        total_gb, where = device_memory_gb()
    archs, _ = plan_archs(recipe)
    seq = recipe.task.max_seq_len
    found = []
    for step in recipe.steps:
        cfg = step.config
        own = archs.get(step.name)
        source = archs.get(step.input) if step.input else None
        runs = [(f"steps.{step.name}", cfg, own, source if step.stage == "distill" else None)]
        recover = getattr(cfg, "recover", None)
        if recover is not None:  # a pruned model (or a fit's largest candidate) recovering
            model = own if step.stage != "fit" else source
            teacher = source if getattr(recover, "method", "") == "distill" else None
            runs.append((f"steps.{step.name}.recover", recover, model, teacher))
        for key, train, arch, teacher in runs:
            batch = getattr(train, "batch_size", None)
            if arch is None or batch is None or not hasattr(train, "gradient_checkpointing"):
                continue
            need = training_memory(arch, batch, seq, train.gradient_checkpointing, teacher)
            if need.total <= total_gb:
                continue
            found.append(_problem(step.name, key, arch, batch, seq, teacher, need, total_gb, where))
    return found


def _problem(step, key, arch, batch, seq, teacher, need, total_gb, where) -> MemoryProblem:
    checkpointed = training_memory(arch, batch, seq, True, teacher)
    smaller = batch
    while smaller > 1 and training_memory(arch, smaller, seq, False, teacher).total > total_gb:
        smaller //= 2
    fixes = [f"{key}.gradient_checkpointing=true (about {checkpointed.total:.0f} GB)"]
    if smaller < batch:
        small = training_memory(arch, smaller, seq, False, teacher).total
        fixes.append(f"{key}.batch_size={smaller} (about {small:.0f} GB)")
    teacher_text = f", the teacher {need.teacher:.1f}" if need.teacher else ""
    message = (
        f"{key}: training {arch.origin or 'its model'} at batch {batch} x {seq} tokens needs "
        f"about {need.total:.0f} GB (weights, gradients and AdamW {need.states:.1f}, "
        f"activations {need.activations:.1f}{teacher_text}; an estimate), more than "
        f"{where} {total_gb:.0f} GB; give " + " or ".join(fixes)
    )
    return MemoryProblem(step, key, message, f"{key}.gradient_checkpointing=true")
