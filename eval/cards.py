"""Hugging Face style model cards (README.md) for every model a run produced."""

from __future__ import annotations

from pathlib import Path

from compress.manifest import Manifest
from eval.schema import MetricRow, Report


def card_text(name: str, manifest: Manifest, rows: list[MetricRow], report: Report) -> str:
    entry = manifest.steps[name]
    library = "onnx" if entry.kind == "onnx" else "transformers"
    lines = [
        "---",
        "language: zh",
        f"library_name: {library}",
        "tags: [lert-compress, bert, chinese]",
        "---",
        "",
        f"# {report.recipe} / {name}",
        "",
        f"A BERT-architecture model for `{report.task}` made by the `{entry.stage}` step of the "
        f"lert-compress recipe `{report.recipe}`.",
        "",
        "## How it was made",
        "",
    ]
    for i, (step, e) in enumerate(manifest.chain(name), 1):
        lines.append(
            f"{i}. `{step}`: stage `{e.stage}`, config hash `{e.config_hash}`, "
            f"{'?' if e.seconds is None else e.seconds} s"
        )
    lines += [
        "",
        f"## Measured ({report.metric})",
        "",
        f"Scored on the {report.split_description or report.split} split, "
        f"{report.examples} examples.",
        "",
        "| runtime | device | precision | score [95% CI] | MB | b1 p50 ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        b1 = r.latency_ms.get("b1")
        lines.append(
            f"| {r.runtime} | {r.device} | {r.precision} | {r.score * 100:.2f}{_ci(r)} | "
            f"{r.size_mb:.1f} | {'–' if b1 is None else f'{b1.p50:.1f}'} |"
        )
    if not rows:
        lines.append("| – | – | – | not evaluated | – | – |")
    return "\n".join(lines) + "\n"


def write_model_cards(root: Path, report: Report, manifest: Manifest) -> None:
    """A README.md beside every step output that the report measured."""
    for name in report.steps:
        entry = manifest.steps[name]
        if entry.status != "done" or entry.output is None or entry.stage == "external":
            continue
        output = root / entry.output
        directory = output.parent if output.is_file() else output
        rows = [r for r in report.rows if r.variant == name]
        (directory / "README.md").write_text(
            card_text(name, manifest, rows, report), encoding="utf-8"
        )


def _ci(row: MetricRow) -> str:
    return f" [{row.score_ci[0] * 100:.1f}, {row.score_ci[1] * 100:.1f}]" if row.score_ci else ""
