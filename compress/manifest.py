"""``manifest.json``: one typed entry per step, and the small file helpers every part shares."""

from __future__ import annotations

import contextlib
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

VERSIONED = [
    "lert-compress",
    "torch",
    "transformers",
    "textbrewer",
    "textpruner",
    "optimum",
    "optimum-onnx",
    "onnxruntime",
    "bitsandbytes",
]


def package_versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def write_json(path: Path, data: object) -> None:
    """Write JSON atomically: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)


class StepEntry(BaseModel):
    """What the manifest records of one step."""

    model_config = ConfigDict(extra="ignore")

    index: int
    stage: str
    dir: str
    status: Literal["running", "done", "failed"]
    hash: str
    config_hash: str
    input_step: str | None = None
    input: str | None = None  # the input artifact, relative to the artifacts directory
    output: str | None = None  # the output artifact, relative to the artifacts directory
    kind: str | None = None  # torch | onnx | bnb | openvino
    sources: list[str] = Field(default_factory=list)  # hub ids / directories the step loaded
    extra_variants: dict[str, str] = Field(default_factory=dict)  # label -> relative path
    digest: str | None = None  # SHA-256 of the step directory's files when it finished
    input_digest: str | None = None  # the input step's digest when this step read it
    seconds: float | None = None
    processes: int = 1  # data-parallel processes that trained it (torchrun world size)
    nodes: int = 1  # the machines those processes ran on (torchrun's rendezvous)
    backend: str | None = None  # their torch.distributed backend (gloo, nccl)
    # whether the output is a task model the evaluator scores (a pre-trained masked LM is not)
    evaluated: bool = True
    versions: dict[str, str] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


class Manifest:
    """``manifest.json`` of an artifacts directory: step entries by name, saved on each update."""

    def __init__(self, root: Path):
        self.path = root / "manifest.json"
        raw = json.loads(self.path.read_text()) if self.path.exists() else {"steps": {}}
        self.steps: dict[str, StepEntry] = {
            name: StepEntry.model_validate(entry) for name, entry in raw["steps"].items()
        }

    def set(self, name: str, entry: StepEntry) -> None:
        self.steps[name] = entry
        self.save()

    def save(self) -> None:
        data = {"steps": {n: e.model_dump(mode="json") for n, e in self.steps.items()}}
        write_json(self.path, data)

    def chain(self, name: str) -> list[tuple[str, StepEntry]]:
        """The steps that led to ``name``, first to last, following each step's input."""
        out = []
        current: str | None = name
        while current is not None and current in self.steps:
            out.append((current, self.steps[current]))
            current = self.steps[current].input_step
        return out[::-1]
