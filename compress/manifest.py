"""``manifest.json`` and the small file helpers every part shares."""

from __future__ import annotations

import contextlib
import json
import os
from importlib import metadata
from pathlib import Path

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


class Manifest:
    """``manifest.json``: per step its input, output, hashes, versions, seconds and status."""

    def __init__(self, root: Path):
        self.path = root / "manifest.json"
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {"steps": {}}

    def steps(self) -> dict[str, dict]:
        return self.data["steps"]

    def update(self, name: str, **entry: object) -> None:
        self.data["steps"].setdefault(name, {}).update(entry)
        write_json(self.path, self.data)
