"""Typed records of the evaluator: one metric row per (variant, device, precision), the metrics
file, and report.json (the metrics plus recommendations and published scores)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Latency(BaseModel):
    """Milliseconds per batch over the interleaved repeats."""

    p50: float
    p90: float
    mean: float
    throughput: float  # examples per second at p50
    iqr: float = 0.0  # interquartile range, ms
    block_p50: list[float] = Field(default_factory=list)  # medians of consecutive round blocks
    block_spread: float = 0.0  # (max - min) of block_p50, as a fraction of p50
    unstable: bool = False  # block_spread above eval.latency.UNSTABLE


class MetricRow(BaseModel):
    """One variant measured on one device at one precision."""

    model_config = ConfigDict(extra="forbid")

    variant: str  # the step name, or "step (label)" for an extra variant of a step
    step: str  # the step that wrote it
    stage: str
    runtime: str  # pytorch | onnxruntime | bitsandbytes
    device: str  # cpu | cuda
    precision: str  # fp32 | fp16 | bf16 | int8 | nf4 | fp4
    params: int
    size_mb: float
    score: float  # the task metric as a fraction
    score_ci: list[float] = Field(default_factory=list)  # 95% bootstrap interval over examples
    # against the reference variant on the same examples: difference, 95% paired interval
    delta: float | None = None
    delta_ci: list[float] = Field(default_factory=list)
    within_noise: bool | None = None  # the paired interval contains 0
    per_class: dict[str, dict[str, float]] = Field(default_factory=dict)  # P/R/F1/support
    other_scores: dict[str, float] = Field(default_factory=dict)  # e.g. QA's EM, as fractions
    seq_len: int  # the length it was scored at (the task's); latency: Metrics.timed_seq_len
    path: str
    memory_mb: float | None = None
    latency_ms: dict[str, Latency] = Field(default_factory=dict)  # "b1" -> latency
    speedup: dict[str, float] = Field(default_factory=dict)  # over the reference, same device
    # what an app sees (CPU rows): tokenizer + model, batch 1, each scored text at its own length
    end_to_end: Latency | None = None
    # texts per second over the same texts in length-sorted batches: "b8" -> texts/s
    end_to_end_throughput: dict[str, float] = Field(default_factory=dict)
    # what the row's artifact was built for (e.g. an int8 preset), where it says
    target: str | None = None
    notes: list[str] = Field(default_factory=list)  # shown beside the row in the report
    # the row's identity: one variant may have rows at several runtimes, precisions, devices
    key: str = ""

    @model_validator(mode="after")
    def _identity(self) -> MetricRow:
        self.key = row_key(self.variant, self.runtime, self.precision, self.device)
        return self

    @property
    def label(self) -> str:
        """The variant with how it ran, for legends and lists."""
        return f"{self.variant} ({self.runtime} {self.precision}, {self.device})"


def row_key(variant: str, runtime: str, precision: str, device: str) -> str:
    """A metric row's unique identity within a report."""
    return f"{variant}|{runtime}|{precision}|{device}"


def rows_by_key(rows: list[MetricRow]) -> dict[str, MetricRow]:
    """Rows by identity; two rows with one identity are a bug of the evaluator."""
    out: dict[str, MetricRow] = {}
    for row in rows:
        if row.key in out:
            raise ValueError(f"two metric rows share the identity {row.key!r}")
        out[row.key] = row
    return out


class Baseline(BaseModel):
    """The trivial predictor (majority class, or all-O for NER), for scale."""

    prediction: str
    score: float
    score_ci: list[float]
    delta: float | None = None
    delta_ci: list[float] = Field(default_factory=list)


class SeedRow(BaseModel):
    """One row's score over the recipe's seeds (CPU rows), with its paired difference from the
    reference variant in each run."""

    variant: str
    key: str = ""  # the metric row's identity (variant|runtime|precision|device)
    seeds: list[int]
    scores: list[float]
    mean: float
    sd: float  # sample standard deviation over the seeds
    deltas: list[float] = Field(default_factory=list)  # minus the reference's, per seed
    delta_mean: float | None = None
    delta_sd: float | None = None


class SeedPair(BaseModel):
    """A KD student against its no-KD twin, run by run."""

    kd: str
    no_kd: str
    differences: list[float]  # kd - no_kd, per seed
    mean: float
    sd: float
    kd_better: int  # seeds on which the KD student scored higher


class Metrics(BaseModel):
    """``eval/metrics.json``: what the evaluator measured."""

    recipe: str
    task: str
    metric: str
    split: str
    split_description: str = ""  # what the split really is (e.g. CLUE's dev under "test")
    examples: int
    labels: list[str] = Field(default_factory=list)  # classes or tags, in the models' id order
    split_sizes: dict[str, int] = Field(default_factory=dict)  # examples per split as loaded
    reference: str  # the variant every row is compared with
    steps: list[str]  # the finished steps in scope, rows or not (an fp16 model has no CPU row)
    computed_from: dict[str, str] = Field(default_factory=dict)  # step -> its manifest hash
    hardware: dict[str, Any]
    versions: dict[str, str]
    rows: list[MetricRow]
    majority: Baseline | None = None
    changed_since_last: list[str] = Field(default_factory=list)  # latencies that moved
    # the length every fixed-shape latency column was timed at (evaluate.seq_len, which may
    # differ from the rows' scoring length); None when nothing was timed
    timed_seq_len: int | None = None
    # the texts the end-to-end latency ran on: how many, their token and character lengths
    end_to_end: dict[str, Any] | None = None
    # with ``seeds:`` in the recipe: scores over the repeated runs
    seed_rows: list[SeedRow] = Field(default_factory=list)
    seed_pairs: list[SeedPair] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_rows(self) -> Metrics:
        rows_by_key(self.rows)
        return self

    def reference_row(self, device: str | None = None) -> MetricRow | None:
        """The reference variant's first row (on ``device`` when given), if measured."""
        return next(
            (r for r in self.rows if r.variant == self.reference and device in (None, r.device)),
            None,
        )

    @classmethod
    def read(cls, path: Path) -> Metrics:
        return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))


class PublishedRow(BaseModel):
    model: str
    task: str
    score: str  # as printed by its source
    source: str


class Report(Metrics):
    """``report.json``: the metrics, the picks made from them, and published scores."""

    recommended: dict[str, MetricRow | None]
    published: list[PublishedRow]
    # steps trained data-parallel: step -> {"processes": N, "backend": "gloo" | "nccl"}
    parallel_training: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # per KD step: the rows it learnt from (labelled_rows, transfer_rows, ...)
    distilled_on: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # step -> the pre-trained models (hub ids, directories, shipped names) it started from
    started_from: dict[str, list[str]] = Field(default_factory=dict)
    stale: list[str] = Field(default_factory=list)  # steps changed since (set by a later run)
    # a rehearsal's record (random weights at real shapes: the scores mean nothing)
    rehearsal: dict[str, Any] | None = None
    # select steps: step -> {"chosen", "dev_scores", "why"}
    chosen_on_dev: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # distill steps with search: step -> {"split", "trial_steps", "rounds", "cap_steps",
    # "trivial", "trials" (each trial's last round), "history" (every round), "chosen",
    # "outcome" (finding | within noise | no signal), "why"}
    kd_search: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # fit steps by name: budget, every candidate with its status, the probe's savings
    fit: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # KD students whose dev score is below their no-KD twin's
    kd_below_no_kd: list[dict[str, Any]] = Field(default_factory=list)
    # converted artifacts checked against their source on dev examples: one per variant, with
    # "variant", "file", "against", "max_abs_diff", "argmax_agreement"
    checked_against_source: list[dict[str, Any]] = Field(default_factory=list)
