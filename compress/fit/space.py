"""The fit's vocabulary: its options (budget, space, probing: the step's config), the
candidates the space spans (a shape and a runtime, named by their key), and the plan every
worker of one search shares."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from compress.arch import Arch
from compress.recovery import Recovery
from compress.registry import ArtifactKind, StageConfig, StageContext

Runtime = Literal["onnx-fp32", "ort-dynamic", "ort-static", "openvino-int8"]
RUNTIMES = ("onnx-fp32", "ort-dynamic", "ort-static", "openvino-int8")
FILE_NAMES = {
    "onnx-fp32": "model.onnx",
    "ort-dynamic": "model_quantized.onnx",
    "ort-static": "model_quantized.onnx",
    "openvino-int8": "openvino_model.xml",
}
STUDY = "study.db"


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

    def shapes(self) -> list[Shape]:
        return [
            Shape(*combo)
            for combo in itertools.product(self.layers, self.heads, self.ffn, self.vocabulary)
        ]


class Probing(BaseModel):
    model_config = ConfigDict(extra="forbid")

    warmup: int = Field(3, ge=0)
    repeats: int = Field(20, ge=3, description="interleaved rounds over every candidate")
    beside: str | None = Field(
        None,
        description="an earlier step whose model (the teacher, say) is timed with the "
        "candidates in the same interleaved run, at the budget's batch and length; the report "
        "gives the fastest candidate's speed-up over it",
    )


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
        ge=0,
        description="local processes sharing the study (each trains its own candidates); "
        "threads are divided among them. 0 (with storage): this machine trains none and waits "
        "for the fit-workers on others",
    )
    storage: str | None = Field(
        None,
        description="the study's database, any SQLAlchemy URL Optuna accepts (postgresql://"
        "user@host/db): workers on other machines join it with `lert-compress fit-worker`; "
        "default: SQLite in the step's folder (this machine's workers only)",
    )
    artifacts: str | None = Field(
        None,
        description="with storage: where the driver and every worker pass files (the step's "
        "input for the workers, each trained candidate back, so the winner ships without "
        "training it again): a folder they all mount, or s3://BUCKET for an S3-compatible "
        "store (boto3; its endpoint and keys from the environment: AWS_ENDPOINT_URL, "
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)",
    )
    heartbeat: int = Field(
        30,
        ge=1,
        description="with storage: seconds between a worker's heartbeats; a trial silent for "
        "three of them is failed and queued for another worker",
    )

    placement: ClassVar[tuple[str, ...]] = ("workers", "storage", "artifacts", "heartbeat")

    @field_serializer("storage", when_used="json")
    def _storage_without_its_password(self, url: str | None) -> str | None:
        """recipe.resolved.yaml and the manifest never hold the database's password."""
        from compress.database import shown

        return None if url is None else shown(url)

    def references(self) -> list[str]:
        return [r for r in (self.budget.reference, self.probe.beside) if r]

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
        if self.probe.beside is not None and self.probe.beside not in configs:
            problems.append(f"probe.beside: {self.probe.beside!r} is not an earlier step")
        if b.device is not None and not b.device.is_file():
            problems.append(
                f"budget.device: {b.device} does not exist; write it on the target with a bench "
                "folder's run_bench.py (lert-compress bench RECIPE --out FOLDER)"
            )
        problems += self._placement_problems()
        if self.objective == "fast" and b.max_drop is None:
            problems.append("objective fast: give budget.max_drop (the accuracy it must keep)")
        from compress.pruning import TEXTPRUNER_MISSING, textpruner_installed

        return problems + ([] if textpruner_installed() else [TEXTPRUNER_MISSING])

    def _placement_problems(self) -> list[str]:
        if self.storage is None:
            if self.workers == 0:
                return [
                    "workers 0: only a search in a database (storage) can leave the training "
                    "to other machines; give workers 1 or more, or storage"
                ]
            return []
        from compress.database import artifacts_problem, storage_problem

        problems = [p for p in [storage_problem(self.storage)] if p]
        if self.artifacts is None:
            problems.append(
                "artifacts: a search in a database needs a folder every worker and this machine "
                "can read (a shared mount, or s3://BUCKET), for the input and the trained "
                "candidates"
            )
        elif problem := artifacts_problem(self.artifacts):
            problems.append(problem)
        return problems

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

    @property
    def shared(self) -> bool:
        """Whether the study is in a database other machines join (else SQLite here)."""
        return self.cfg.storage is not None

    @property
    def study_name(self) -> str:
        """In a shared database, named by recipe, step and the step's hash: a worker with
        another version of the recipe finds no study of its own."""
        if not self.shared:
            return "fit"
        return study_name(self.ctx.recipe_name, self.ctx.step_name, self.ctx.step_hash)

    def wanted(self) -> int:
        return min(self.cfg.max_trials, len(self.fitting))


def study_name(recipe: str, step: str, step_hash: str) -> str:
    return f"{recipe}.{step}.{step_hash}"
