"""Stage ``fit``: the best model under a latency, size and accuracy budget, chosen by
measurement on this machine and on the task's dev split.

1. Every candidate of ``space:`` (layers x heads x FFN x vocabulary x runtime) is built from
   random weights of its exact shape, converted to its runtime (int8 included), timed and sized
   here: latency and size depend on the shape and runtime, not on the weights. Those over the
   latency or size budget are rejected before any training.
2. The rest are searched with Optuna (a multi-objective TPE sampler: dev score up, latency
   down) in a study stored in SQLite beside the step, so that a killed search resumes with its
   finished trials and several workers share it. A trial prunes the input to the candidate's
   shape with TextPruner, recovers it (KD from the input), converts it and scores it on dev
   against the reference, with the paired bootstrap interval the evaluator uses.
3. The winner (the most accurate within the budget, or the fastest within the accuracy budget)
   is the step's output, as the kind of artifact it is, and its trained copy is timed beside its
   probe to check the shortcut.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import shutil
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from compress.arch import Arch
from compress.errors import CompressError, RecipeError
from compress.registry import ArtifactKind, StageConfig, StageContext, StageResult, stage
from compress.stages.prune import Recovery

log = logging.getLogger(__name__)

Runtime = Literal["onnx-fp32", "ort-dynamic", "ort-static", "openvino-int8"]
STUDY = "study.db"


class Budget(BaseModel):
    """What the shipped model must meet; every bound is optional."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float | None = Field(
        None, gt=0, description="p50 latency of one batch of batch_size x seq_len on this machine"
    )
    batch_size: int | None = Field(
        None, ge=1, description="the batch the latency is for (required with latency_ms)"
    )
    seq_len: int | None = Field(
        None, ge=1, description="the sequence length timed; default the task's max_seq_len"
    )
    latency_of: Literal["fixed", "end_to_end"] = Field(
        "fixed",
        description="fixed: one batch of batch_size x seq_len (random ids, every row full "
        "length); end_to_end: what an app sees, tokenizer + model at batch 1 on the dev split's "
        "texts, each at its own length (cut at seq_len), p50 over the texts",
    )
    texts: int = Field(200, ge=10, description="dev texts timed end to end")
    size_mb: float | None = Field(None, gt=0, description="weights on disk, in MB")
    max_drop: float | None = Field(
        None,
        gt=0,
        description="points of the task metric (x100) the candidate may lose against the "
        "reference on dev, judged by the LOWER bound of the 95% paired bootstrap interval of "
        "candidate - reference (a candidate meets it only when the data show the drop is at "
        "most this), not by the point estimate",
    )
    reference: str | None = Field(
        None, description="the step scored against (default: this step's input)"
    )
    threads: int = Field(2, ge=1, description="CPU threads the runtimes are timed with")
    device: Path | None = Field(
        None,
        description="a device profile (profile.json from a `lert-compress bench` folder's "
        "run_bench.py, run on the target): the search then uses the target's latencies, and "
        "ONNX Runtime int8 is quantized for the target's instruction set; sizes and dev scores "
        "are still measured here",
    )

    @field_serializer("device", when_used="json")
    def _device_and_its_digest(self, path: Path | None) -> str | None:
        """In the step's hash with its content: a profile measured again re-runs the step."""
        if path is None:
            return None
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        except OSError:
            digest = "unreadable"
        return f"{path} (sha256 {digest})"


class Space(BaseModel):
    """The candidates: every combination of these lists."""

    model_config = ConfigDict(extra="forbid")

    layers: list[int] = Field(
        description="encoder layers kept, chosen uniformly (the last one always among them)"
    )
    heads: list[int] = Field(description="attention heads kept in every layer")
    ffn: list[int] = Field(description="FFN sizes kept")
    vocabulary: list[int | None] = Field(
        default_factory=lambda: [None],
        description="TextPruner vocabulary cuts: min_count on the train texts; null keeps the "
        "input's vocabulary",
    )
    runtimes: list[Runtime] = Field(
        default_factory=lambda: ["onnx-fp32", "ort-dynamic"],
        description="onnx-fp32 (where int8 does not pay), ort-dynamic / ort-static (ONNX "
        "Runtime int8 for the target's preset), openvino-int8 (NNCF)",
    )

    @field_validator("layers", "heads", "ffn", "vocabulary", "runtimes")
    @classmethod
    def _not_empty(cls, value: list, info) -> list:
        if not value:
            raise ValueError(f"space.{info.field_name} is empty: give at least one value")
        if len(set(value)) < len(value):
            raise ValueError(f"space.{info.field_name} lists a value twice")
        if info.field_name in ("layers", "heads", "ffn") and min(value) < 1:
            raise ValueError(f"space.{info.field_name}: every value must be at least 1")
        if info.field_name == "vocabulary" and any(v is not None and v < 1 for v in value):
            raise ValueError("space.vocabulary: a min_count is at least 1 (null: no cut)")
        return value

    def shapes(self):
        from compress.fitting import Shape

        return [
            Shape(*combo)
            for combo in itertools.product(self.layers, self.heads, self.ffn, self.vocabulary)
        ]


class Probing(BaseModel):
    model_config = ConfigDict(extra="forbid")

    warmup: int = Field(3, ge=0)
    repeats: int = Field(20, ge=3, description="interleaved rounds over every candidate")


class FitConfig(StageConfig):
    """Search layers, heads, FFN, vocabulary and runtime for the best model under a budget:
    every candidate timed and sized from random weights first, only those that fit trained."""

    budget: Budget
    space: Space
    objective: Literal["accurate", "fast"] = Field(
        "accurate",
        description="accurate: the best dev score within the latency and size budget; fast: "
        "the lowest latency within the accuracy budget (and the size budget)",
    )
    max_trials: int = Field(8, ge=1, description="candidates trained at most")
    recover: Recovery | None = Field(
        default_factory=lambda: Recovery(method="distill", epochs=1.0),
        description="recovery of each trained candidate after pruning (default: one epoch of "
        "KD from the input, method distill); null: none",
    )
    probe: Probing = Field(default_factory=Probing)
    target: Literal["avx2", "avx512", "avx512_vnni", "arm64", "build-host"] = Field(
        "build-host",
        description="the instruction set ONNX Runtime int8 is quantized for; the search times "
        "candidates on this machine, so its own (build-host) is the default",
    )
    revert: bool = Field(
        True,
        description="an int8 candidate over max_drop whose fp32 model meets it is not dropped:"
        " ONNX Runtime int8 keeps its most sensitive parts (encoder layers, embeddings, head) in "
        "fp32, one at a time, chosen greedily by the dev bound, until it meets the budget "
        "(nodes_to_exclude); OpenVINO int8 is redone with NNCF's quantize_with_accuracy_control."
        " What was reverted and the latency it cost are recorded",
    )
    workers: int = Field(
        1,
        ge=1,
        description="local processes sharing the study (each trains its own candidates); "
        "threads are divided among them",
    )

    def references(self) -> list[str]:
        return [self.budget.reference] if self.budget.reference else []

    def check(self, configs) -> list[str]:
        problems = []
        b = self.budget
        if b.latency_ms is not None and b.batch_size is None:
            problems.append(
                "budget.batch_size: a latency budget needs the batch size it is for (1 for an "
                "app that runs one text at a time)"
            )
        if b.latency_of == "end_to_end" and b.batch_size not in (None, 1):
            problems.append(
                "budget.batch_size: end-to-end latency is one text at a time (batch 1); give "
                "batch_size: 1 or latency_of: fixed"
            )
        if b.reference is not None and b.reference not in configs:
            problems.append(f"budget.reference: {b.reference!r} is not an earlier step")
        if b.device is not None and not b.device.is_file():
            problems.append(
                f"budget.device: {b.device} does not exist; write it on the target with a bench "
                "folder's run_bench.py (lert-compress bench RECIPE --out FOLDER)"
            )
        if self.objective == "fast" and b.max_drop is None:
            problems.append("objective fast: give budget.max_drop (the accuracy it must keep)")
        from compress.pruning import TEXTPRUNER_MISSING, textpruner_installed

        return problems + ([] if textpruner_installed() else [TEXTPRUNER_MISSING])

    def check_arch(self, in_arch: Arch) -> list[str]:
        s, problems = self.space, []
        has = f"the input has {in_arch.layers} layers x {in_arch.heads} heads, FFN {in_arch.ffn}"
        if too := [v for v in s.layers if v > in_arch.layers]:
            problems.append(f"space.layers {too}: more than {has}")
        if too := [v for v in s.heads if v > in_arch.heads]:
            problems.append(f"space.heads {too}: more than {has}")
        if bad := [v for v in s.heads if in_arch.hidden % v]:
            problems.append(
                f"space.heads {bad}: does not divide the width {in_arch.hidden}; give head "
                f"counts that divide it"
            )
        if too := [v for v in s.ffn if v > in_arch.ffn]:
            problems.append(f"space.ffn {too}: more than {has}")
        seq, positions = self.budget.seq_len, in_arch.positions
        if seq is not None and positions is not None and seq > positions:
            problems.append(
                f"budget.seq_len {seq}: the input has {positions} positions "
                "(max_position_embeddings); give at most that"
            )
        return problems

    def out_arch(self, in_arch: Arch | None, archs) -> Arch | None:
        return None  # the search decides it

    def produces(self, input_kind: ArtifactKind | None) -> ArtifactKind:
        # the winner's own kind is recorded when the step finishes
        return "openvino" if set(self.space.runtimes) == {"openvino-int8"} else "onnx"


def _preset(cfg: FitConfig) -> str:
    """The int8 preset: the device profile's instruction set, else ``target`` (this machine's
    by default)."""
    from compress.onnx import cpu_preset

    if cfg.budget.device is not None:
        from compress.bench import load_profile, profile_preset

        return profile_preset(load_profile(cfg.budget.device))
    return cpu_preset() if cfg.target == "build-host" else cfg.target


def _device_latency(cfg: FitConfig, keys: list[str], seq_len: int) -> tuple[dict, dict]:
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
    if profile["quantized_for"] != _preset(cfg):
        problems.append(
            f"its int8 candidates were quantized for {profile['quantized_for']} but the device's "
            f"instruction set calls for {_preset(cfg)} (bench --target {_preset(cfg)})"
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


# the search -------------------------------------------------------------------------------


def _open_study(db: Path, seed: int):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
    return optuna.create_study(
        study_name="fit",
        storage=f"sqlite:///{db}",
        directions=["maximize", "minimize"],
        sampler=sampler,
        load_if_exists=True,
    )


def _distributions(space: Space) -> dict:
    from optuna.distributions import CategoricalDistribution

    return {
        "layers": CategoricalDistribution(space.layers),
        "heads": CategoricalDistribution(space.heads),
        "ffn": CategoricalDistribution(space.ffn),
        "vocabulary": CategoricalDistribution(
            ["full" if v is None else v for v in space.vocabulary]
        ),
        "runtime": CategoricalDistribution(space.runtimes),
    }


def _claimed(study) -> dict[str, str]:
    """Candidate key -> state of every trial that trained (or is training) one."""
    from optuna.trial import TrialState

    return {
        t.user_attrs["key"]: t.state.name
        for t in study.get_trials(deepcopy=False)
        if "key" in t.user_attrs and t.state in (TrialState.COMPLETE, TrialState.RUNNING)
    }


def _release_interrupted(study) -> list[str]:
    """Trials a killed worker left running: failed, and their candidates queued again."""
    from optuna.trial import TrialState

    from compress.fitting import Candidate

    again = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)
        if "key" in t.user_attrs:
            study.enqueue_trial(Candidate.from_params(t.params).params())
            again.append(t.user_attrs["key"])
    return again


class Plan:
    """What every worker needs: the fitting candidates in priority order and where things are."""

    def __init__(self, cfg: FitConfig, src: Path, ctx: StageContext, fitting, probes):
        self.cfg, self.src, self.ctx = cfg, src, ctx
        self.fitting = fitting  # [Candidate], best first for the objective
        self.probes = probes  # key -> probe dict
        self.work = ctx.resume_dir or ctx.step_dir / "work"

    @property
    def db(self) -> Path:
        return self.work / STUDY

    def wanted(self) -> int:
        return min(self.cfg.max_trials, len(self.fitting))


def _next_trial(plan: Plan, study, dists):
    """Ask the study for the next candidate to train (None: the search is over). A proposal
    outside the fitting set, or one already claimed, is failed at once and the best untried
    candidate is queued in its place, so every ask makes progress."""
    from optuna.trial import TrialState

    from compress.fitting import Candidate

    fitting = {c.key: c for c in plan.fitting}
    for _ in range(4 * len(plan.cfg.space.shapes()) * len(plan.cfg.space.runtimes) + 4):
        claimed = _claimed(study)
        if len(claimed) >= plan.wanted() or _settled(plan, study):
            return None
        trial = study.ask(fixed_distributions=dists)
        candidate = Candidate.from_params(trial.params)
        if candidate.key in fitting and candidate.key not in claimed:
            trial.set_user_attr("key", candidate.key)
            trial.set_user_attr("worker", os.getpid())
            return trial, candidate
        why = "already trained" if candidate.key in claimed else "over the budget when probed"
        trial.set_user_attr("skipped", f"{candidate.key}: {why}")
        study.tell(trial, state=TrialState.FAIL)
        untried = [c for c in plan.fitting if c.key not in claimed]
        if not untried:
            return None
        study.enqueue_trial(untried[0].params())
    return None


def _settled(plan: Plan, study) -> bool:
    """objective fast: a candidate within the accuracy budget is known, and every untried one
    is slower (it cannot win)."""
    if plan.cfg.objective != "fast":
        return False
    results = _results(study)
    met = [_p50(plan.probes, k, r) for k, r in results.items() if _eligible(r)]
    if not met:
        return False
    claimed = _claimed(study)
    return all(
        plan.probes[c.key]["latency"]["p50"] >= min(met)
        for c in plan.fitting
        if c.key not in claimed
    )


def _p50(probes: dict, key: str, result: dict | None = None) -> float:
    """A candidate's p50 for the budget: its probe's, or its reverted model's once part of an
    int8 model was kept in fp32."""
    reverted = (result or {}).get("revert") or {}
    return (reverted.get("latency") or probes[key]["latency"])["p50"]


def _eligible(result: dict) -> bool:
    return result["meets_accuracy"] and not result.get("over")


def _results(study) -> dict[str, dict]:
    from optuna.trial import TrialState

    return {
        t.user_attrs["key"]: t.user_attrs["result"]
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if "result" in t.user_attrs
    }


def run_worker(plan: Plan, index: int = 0) -> int:
    """One worker: train, convert and score candidates until the search is over; returns how
    many it trained. The ask is serialised across local workers by a file lock beside the
    study (Optuna's SQLite storage hands each waiting trial out once, but a proposal and its
    claim must be one step)."""
    from filelock import FileLock

    study = _open_study(plan.db, plan.ctx.seed + index)
    dists = _distributions(plan.cfg.space)
    lock = FileLock(str(plan.db) + ".lock")
    trained = 0
    while True:
        with lock:
            got = _next_trial(plan, study, dists)
        if got is None:
            return trained
        trial, candidate = got
        log.info("fit: training %s (worker %d)", candidate.key, os.getpid())
        result = train_candidate(plan, candidate)
        with lock:
            trial.set_user_attr("result", result)
            study.tell(trial, [result["dev_score"], _p50(plan.probes, candidate.key, result)])
        trained += 1


def train_candidate(plan: Plan, candidate) -> dict:
    """Prune, recover, convert and score one candidate on dev against the reference."""
    import numpy as np

    from compress.eval.stats import paired_delta
    from compress.fitting import FILE_NAMES, build_runtime, dev_counts, task_examples, train_shape
    from compress.scoring import score_counts
    from compress.stages.export import onnx_export

    ctx, cfg = plan.ctx, plan.cfg
    start = time.perf_counter()
    shape_dir = plan.work / "trained" / candidate.shape.key
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
    from filelock import FileLock

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
        from compress.models import load_tokenizer

        examples = task_examples(ctx.task, load_tokenizer(model_dir), ctx.max_seq_len, 128)
        build_runtime(onnx_path, candidate.runtime, out, examples, _preset(cfg))
        path = out / FILE_NAMES[candidate.runtime]
    from compress.fitting import copy_side_files

    copy_side_files(model_dir, path.parent)
    threads = max(1, cfg.budget.threads // cfg.workers)
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
        reverted = _revert_int8(plan, candidate, onnx_path, model_dir, judge)
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


def _revert_int8(plan: Plan, candidate, onnx_path: Path, model_dir: Path, judge) -> dict:
    """An int8 candidate over the accuracy budget whose fp32 model meets it: ONNX Runtime int8
    keeps its most sensitive parts (encoder layers, embeddings, head) in fp32, greedily by the
    dev bound, until it meets the budget; OpenVINO int8 goes through NNCF's accuracy control.
    The result is timed again beside its all-int8 probe (reverting costs speed). Returns what
    was reverted (``fp32``: the parts or NNCF's removed quantizers; None when reverting could
    not help) and why."""
    from compress.fitting import (
        FILE_NAMES,
        build_runtime,
        copy_side_files,
        node_groups,
        revert_greedy,
        task_examples,
    )
    from compress.models import load_tokenizer

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
            build_runtime(onnx_path, candidate.runtime, out, examples, _preset(cfg), exclude)
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
    from compress.fitting import copy_side_files
    from compress.models import load_tokenizer
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
    from compress.fitting import time_artifacts

    cfg, ctx = plan.cfg, plan.ctx
    probe = plan.probes[candidate.key]
    timed = time_artifacts(
        {"int8": plan.work / probe["path"], "reverted": path},
        {"int8": probe["vocab_size"], "reverted": probe["vocab_size"]},
        ctx.task.type,
        cfg.budget.batch_size or 1,
        cfg.budget.seq_len or ctx.max_seq_len,
        max(1, cfg.budget.threads // cfg.workers),
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


def _worker_main(cfg: FitConfig, src: str, ctx: StageContext, fitting, probes, index: int, ready):
    """An extra local worker (a spawned process); ``ready`` is set once it has loaded what
    training needs, so that the first worker does not take every trial while it starts."""
    import torch

    import compress.fitting  # noqa: F401  (the training code, before saying ready)

    torch.set_num_threads(max(1, cfg.budget.threads // cfg.workers))
    ready.set()
    run_worker(Plan(cfg, Path(src), ctx, fitting, probes), index)


# the stage --------------------------------------------------------------------------------


def _reference_path(cfg: FitConfig, src: Path, ctx: StageContext) -> Path:
    if cfg.budget.reference is None:
        return src
    return ctx.outputs[cfg.budget.reference]


def _probe_all(cfg: FitConfig, src: Path, ctx: StageContext, work: Path) -> tuple[dict, dict]:
    """Shape-first: every candidate's random-weight artifact, timed side by side and sized.
    Kept in the resume directory, so that a resumed search does not probe again."""
    from compress.eval.runtimes import size_mb
    from compress.fitting import Candidate, probe_artifacts, shape_vocab_sizes

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
        _preset(cfg),
        seq_len,
    )
    from compress.fitting import time_artifacts

    keys_vocab = {Candidate(s, r).key: sizes[s] for s in shapes for r in cfg.space.runtimes}
    host = time_artifacts(
        paths,
        keys_vocab,
        ctx.task.type,
        cfg.budget.batch_size or 1,
        seq_len,
        cfg.budget.threads,
        cfg.probe.warmup,
        cfg.probe.repeats,
    )
    if cfg.budget.latency_of == "end_to_end":
        from compress.fitting import time_end_to_end

        dev = ctx.task.texts("dev")
        every = max(1, len(dev) // cfg.budget.texts)
        host = time_end_to_end(
            paths,
            keys_vocab,
            ctx.task.type,
            src / "tokenizer.json",
            dev[::every][: cfg.budget.texts],
            seq_len,
            cfg.budget.threads,
            cfg.probe.warmup,
        )
    latency, device = host, None
    if cfg.budget.device is not None:  # the target's numbers decide; this machine's are kept
        latency, device = _device_latency(cfg, list(paths), seq_len)
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
        "preset": _preset(cfg),
        "device": device,
    }
    tmp = saved.with_suffix(".partial")
    tmp.write_text(json.dumps({"probes": probes, "meta": meta}, indent=1))
    os.replace(tmp, saved)
    return probes, meta


def _over_budget(cfg: FitConfig, probe: dict) -> str | None:
    b = cfg.budget
    if probe["latency"] is None:
        return "not timed on the device"
    if b.latency_ms is not None and probe["latency"]["p50"] > b.latency_ms:
        return "over latency"
    if b.size_mb is not None and probe["size_mb"] > b.size_mb:
        return "over size"
    return None


def _priority(cfg: FitConfig, candidates, probes):
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


def _winner(cfg: FitConfig, results: dict, probes: dict) -> str | None:
    eligible = [k for k, r in results.items() if _eligible(r)]
    if not eligible:
        return None
    if cfg.objective == "fast":
        return min(eligible, key=lambda k: (_p50(probes, k, results[k]), -results[k]["dev_score"]))
    return max(eligible, key=lambda k: (results[k]["dev_score"], -_p50(probes, k, results[k])))


def _probe_check(
    winner_path: Path, probe_path: Path, probe: dict, cfg: FitConfig, task_type, seq_len
):
    """The trained winner timed beside its random-weight probe, in one interleaved run."""
    from compress.fitting import time_artifacts

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


class NoFit(CompressError):
    """No candidate meets the budget."""

    def __init__(self, message: str, details: dict):
        super().__init__(message)
        self.details = details


@stage("fit", FitConfig)
def fit(cfg: FitConfig, src: Path | None, ctx: StageContext) -> StageResult:
    import numpy as np

    from compress.eval.runtimes import artifact_kind
    from compress.fitting import Candidate
    from compress.models import load_model

    assert src is not None
    config = load_model(src, ctx.task.type).config
    if getattr(config, "pruned_heads", None):
        raise RecipeError(
            f"fit: {src} has pruned heads already; give the fit step an unpruned model (the "
            "step before a prune step) and let it choose the heads"
        )
    work = ctx.resume_dir or ctx.step_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    probes, meta = _probe_all(cfg, src, ctx, work)
    candidates = [Candidate(s, r) for s in cfg.space.shapes() for r in cfg.space.runtimes]
    status = {c.key: _over_budget(cfg, probes[c.key]) for c in candidates}
    fitting = _priority(cfg, [c for c in candidates if status[c.key] is None], probes)
    log.info(
        "fit: %d of %d candidates fit the latency and size budget when probed (%.0f s)",
        len(fitting),
        len(candidates),
        meta["seconds"],
    )
    reference = work / "reference_dev_counts.npy"
    threads = cfg.budget.threads
    if not reference.exists():
        from compress.fitting import dev_counts

        counts = dev_counts(_reference_path(cfg, src, ctx), ctx.task, ctx.max_seq_len, threads)
        np.save(work / "reference_dev_counts.partial.npy", counts)
        os.replace(work / "reference_dev_counts.partial.npy", reference)
    plan = Plan(cfg, src, ctx, fitting, probes)
    study = _open_study(plan.db, ctx.seed)
    interrupted = _release_interrupted(study)
    if interrupted:
        log.info("fit: resuming; %s were interrupted and run again", ", ".join(interrupted))
    if not study.trials and fitting:
        # exhaustive when everything that fits can be trained (nothing to search); otherwise
        # the best candidate first, and the sampler proposes the rest
        first = fitting if len(fitting) <= cfg.max_trials else fitting[:1]
        for c in first:
            study.enqueue_trial(c.params())
    extra = []
    if cfg.workers > 1 and fitting:
        spawn = multiprocessing.get_context("spawn")
        ready = [spawn.Event() for _ in range(1, cfg.workers)]
        extra = [
            spawn.Process(
                target=_worker_main,
                args=(cfg, str(src), _picklable(ctx), fitting, probes, i, r),
            )
            for i, r in enumerate(ready, 1)
        ]
        for p in extra:
            p.start()
        for r in ready:
            r.wait(timeout=300)
    import torch

    torch.set_num_threads(max(1, threads // cfg.workers))
    try:
        if fitting:
            run_worker(plan)
    finally:
        for p in extra:
            p.join()
        torch.set_num_threads(threads)
    if any(p.exitcode for p in extra):
        raise CompressError("fit: a worker process failed; run the step again to resume")
    from compress.signal import trivial_dev

    results = _results(_open_study(plan.db, ctx.seed))
    winner = _winner(cfg, results, probes)
    table = []
    for c in candidates:
        row = {
            "key": c.key,
            **c.params(),
            **{k: probes[c.key][k] for k in ("size_mb", "vocab_size")},
        }
        row["latency"] = probes[c.key]["latency"]
        if c.key in results:
            r = results[c.key]
            if r.get("revert"):
                row["revert"] = r["revert"]
                if r["revert"].get("fp32"):  # what ships: the partly reverted model
                    row["latency"] = r["revert"]["latency"]
                    row["size_mb"] = r["revert"]["size_mb"]
            row |= {k: r[k] for k in ("dev_score", "dev_delta", "dev_delta_interval", "seconds")}
            trivial_keys = ("vs_trivial", "vs_trivial_interval", "left_baseline")
            row |= {k: r[k] for k in trivial_keys if k in r}
            row["status"] = (
                "chosen"
                if c.key == winner
                else (
                    r.get("over")
                    or ("within budget" if r["meets_accuracy"] else "over the accuracy budget")
                )
            )
        else:
            row["status"] = status[c.key] or "not reached"
        table.append(row)
    details = {
        "budget": cfg.budget.model_dump(mode="json"),
        "objective": cfg.objective,
        "probe": meta,
        "candidates": table,
        "probed": len(candidates),
        "trained": len(results),
        "workers": cfg.workers,
        "search_seconds": round(time.perf_counter() - start, 1),
        "winner": winner,
        "trivial": trivial_dev(ctx.task)[0],
    }
    if winner is None:
        reasons = (
            "no candidate fits the latency and size budget"
            if not fitting
            else ("no trained candidate is within the accuracy budget")
        )
        raise NoFit(f"fit: {reasons}; see the step's details in manifest.json", details)
    if not results[winner].get("left_baseline", True):
        log.warning(
            "fit: the winner %s is within noise of the trivial predictor on dev (%s): no "
            "signal; train the input longer before fitting it",
            winner,
            details["trivial"]["description"],
        )
    trained = work / results[winner]["path"]
    out = ctx.step_dir / "model"
    shutil.copytree(trained.parent, out, ignore=shutil.ignore_patterns(".done", "*.lock"))
    produced = out / trained.name
    details["probe_check"] = _probe_check(
        produced, work / probes[winner]["path"], probes[winner], cfg, ctx.task.type, meta["seq_len"]
    )
    shutil.copy(plan.db, ctx.step_dir / STUDY)
    (ctx.step_dir / "fit.json").write_text(json.dumps(details, indent=1), encoding="utf-8")
    log.info("fit: chose %s (%d probed, %d trained)", winner, len(candidates), len(results))
    return StageResult(produced, details, kind=artifact_kind(produced))  # type: ignore[arg-type]


def _picklable(ctx: StageContext) -> StageContext:
    """The context a spawned worker gets (the recipe's configs stay behind)."""
    import dataclasses

    return dataclasses.replace(ctx, configs={}, inputs={}, outputs={})
