"""Hugging Face style model cards (README.md) for every model a run produced."""

from __future__ import annotations

import json
from pathlib import Path


def step_chain(manifest: dict, name: str) -> list[tuple[str, dict]]:
    """The steps that led to ``name``, first to last, following each step's input."""
    chain = []
    current: str | None = name
    while current is not None:
        entry = manifest["steps"][current]
        chain.append((current, entry))
        current = entry.get("input_step")
    return chain[::-1]


def card_text(
    recipe: str, name: str, entry: dict, manifest: dict, rows: list[dict], task: str, metric: str
) -> str:
    library = "onnx" if str(entry["output"]).endswith(".onnx") else "transformers"
    lines = [
        "---",
        "language: zh",
        f"library_name: {library}",
        "tags: [lert-compress, bert, chinese]",
        "---",
        "",
        f"# {recipe} / {name}",
        "",
        f"A BERT-architecture model for `{task}` made by the `{entry['stage']}` step of the "
        f"lert-compress recipe `{recipe}`.",
        "",
        "## How it was made",
        "",
    ]
    for i, (step, e) in enumerate(step_chain(manifest, name), 1):
        lines.append(
            f"{i}. `{step}`: stage `{e['stage']}`, config hash `{e['config_hash']}`, "
            f"{e.get('seconds', '?')} s"
        )
    lines += [
        "",
        f"## Measured ({metric})",
        "",
        "| runtime | device | precision | score | MB | b1 p50 ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        b1 = r.get("latency_ms", {}).get("b1", {}).get("p50")
        lines.append(
            f"| {r['runtime']} | {r['device']} | {r['precision']} | "
            f"{r['score'] * 100:.2f} | {r['size_mb']:.1f} | "
            f"{'–' if b1 is None else f'{b1:.1f}'} |"
        )
    if not rows:
        lines.append("| – | – | – | not evaluated | – | – |")
    return "\n".join(lines) + "\n"


def write_model_cards(root: Path, metrics: dict) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    for name, entry in manifest["steps"].items():
        if entry.get("status") != "done":
            continue
        output = root / entry["output"]
        directory = output.parent if output.is_file() else output
        rows = [r for r in metrics["rows"] if r["variant"] == name]
        text = card_text(
            metrics["recipe"], name, entry, manifest, rows, metrics["task"], metrics["metric"]
        )
        (directory / "README.md").write_text(text, encoding="utf-8")
