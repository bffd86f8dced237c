"""Render ``eval/metrics.json`` into report.md, report.json, pareto.png and model cards.

Reads only metrics, the manifest and the resolved recipe: re-rendering never re-runs a model.
The sections are in compress/eval/sections/; this module puts them in order.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from compress.eval.cards import write_model_cards
from compress.eval.latency import UNSTABLE
from compress.eval.published import published_rows
from compress.eval.schema import Metrics, Report
from compress.eval.sections.conversions import checked_against_source, checked_section
from compress.eval.sections.fit import fit_measured, fit_section
from compress.eval.sections.kd import (
    chosen_on_dev_section,
    distilled_on_section,
    kd_below_no_kd,
    kd_search_section,
    started_from_section,
)
from compress.eval.sections.pareto import plot_pareto
from compress.eval.sections.recommendations import (
    published_section,
    recommendations,
    recommended_section,
)
from compress.eval.sections.seeds import seeds_section
from compress.eval.sections.table import (
    cpus,
    end_to_end_text,
    per_class_table,
    points,
    results_table,
    split_text,
)

from compress.errors import CompressError
from compress.fit.space import STUDY
from compress.manifest import Manifest, write_json

log = logging.getLogger(__name__)


def render_markdown(report: Report) -> str:
    rows, hw = report.rows, report.hardware
    lines = [
        *rehearsal_banner(report),
        f"# {report.recipe}: size against {report.metric}",
        "",
        f"Task `{report.task}`, {split_text(report)} ({report.examples} examples), "
        f"metric {report.metric} in points with 95% bootstrap intervals over the examples. "
        f"Δ is against `{report.reference}` on the same examples, with a 95% paired bootstrap "
        "interval; a Δ whose interval contains 0 is marked *within noise*: it is not a finding. "
        f"Latency: sequence length {report.timed_seq_len or '?'}, p50 over repeated "
        f"interleaved runs; speedup is over `{report.reference}` on the same device, in the same "
        f"run; *unstable* marks a row whose blocks of rounds disagree by more than "
        f"{UNSTABLE:.0%} of p50. Peak MB: CPU, resident memory a fresh process adds to load the "
        "model and run one batch of the largest size; GPU, the model's own peak allocated "
        "while loading and scoring (batches of up to 64 examples at the task's maximum length, "
        "not the CPU rows' shape; the models scored before it are taken off).",
        "",
        f"CPU: {hw['cpu']} ({hw['arch']}, {hw['cores']} cores, {cpus(hw)}, "
        f"{', '.join(hw['isa']) or 'no listed ISA flags'}, {hw['memory_gb']} GiB). "
        f"GPU: {hw['gpu'] or 'none'}.",
        "",
    ]
    if report.parallel_training:
        groups: dict[tuple, list[str]] = {}
        for name, p in report.parallel_training.items():
            key = (p["processes"], p["backend"], p.get("nodes", 1))
            groups.setdefault(key, []).append(f"`{name}`")
        for (n, backend, machines), names in groups.items():
            over = f" on {machines} machines" if machines > 1 else ""
            lines += [
                f"Trained data-parallel on {n} processes{over} ({backend}; each step saw {n} x "
                f"the recipe's batch_size): {', '.join(names)}.",
                "",
            ]
    for device, title in (("cpu", "CPU"), ("cuda", "GPU")):
        group = [r for r in rows if r.device == device]
        if group:
            lines += results_table(group, report.reference_row(device) or group[0], title)
    lines += end_to_end_text(report)
    if report.majority is not None:
        m = report.majority
        lines += [
            f"Trivial baseline, {m.prediction}: {m.score * 100:.2f}{points(m.score_ci)}"
            + (
                f", Δ {m.delta * 100:+.2f}{points(m.delta_ci, signed=True)}"
                if m.delta is not None
                else ""
            )
            + ".",
            "",
        ]
    if report.changed_since_last:
        lines += [
            "Latencies that moved beyond their spread since the previous evaluation "
            "(eval/history/ keeps it):",
            "",
        ]
        lines += [f"- {c}" for c in report.changed_since_last] + [""]
    lines += per_class_table(report)
    lines += checked_section(report)
    lines += started_from_section(report)
    lines += distilled_on_section(report)
    lines += kd_search_section(report)
    lines += fit_section(report)
    lines += chosen_on_dev_section(report)
    lines += seeds_section(report)
    lines += recommended_section(report)
    lines += published_section(report)
    lines += ["", "![score against latency](pareto.png)", ""]
    return "\n".join(lines)


def render_report(root: Path) -> Report:
    """Write report.json, report.md, pareto.png and model cards from eval/metrics.json."""
    metrics_path = root / "eval" / "metrics.json"
    if not metrics_path.exists():
        raise CompressError(
            f"{metrics_path} is missing: evaluate first (lert-compress eval {root})"
        )
    metrics = Metrics.read(metrics_path)
    manifest = Manifest(root)
    changed = stale_steps(metrics.computed_from, {n: e.hash for n, e in manifest.steps.items()})
    if changed:
        raise CompressError(
            f"{metrics_path} is stale: step(s) {', '.join(changed)} changed or were removed since "
            f"it was measured; re-evaluate with `lert-compress eval {root}`"
        )
    sources = [s for n in metrics.steps if n in manifest.steps for s in manifest.steps[n].sources]
    report = Report(
        **metrics.model_dump(),
        recommended=recommendations(metrics.rows, metrics.reference_row()),
        published=published_rows(sources, metrics.task),
        parallel_training={
            name: {"processes": e.processes, "backend": e.backend, "nodes": e.nodes}
            for name, e in manifest.steps.items()
            if name in metrics.steps and e.backend
        },
        started_from={
            name: manifest.steps[name].sources
            for name in metrics.steps
            if name in manifest.steps and manifest.steps[name].sources
        },
        distilled_on={
            name: manifest.steps[name].details["data"]
            for name in metrics.steps
            if name in manifest.steps
            and manifest.steps[name].stage == "distill"
            and "data" in (manifest.steps[name].details or {})
        },
        chosen_on_dev={
            name: {k: e.details[k] for k in ("chosen", "dev_scores", "why")}
            for name, e in manifest.steps.items()
            if e.stage == "select" and e.status == "done" and "chosen" in (e.details or {})
        },
        kd_below_no_kd=kd_below_no_kd(manifest, metrics.steps),
        checked_against_source=checked_against_source(manifest, metrics.steps),
        kd_search={
            name: manifest.steps[name].details["search"]
            for name in metrics.steps
            if name in manifest.steps and "search" in (manifest.steps[name].details or {})
        },
        rehearsal=_rehearsal(root),
        fit={
            name: {
                **e.details,
                "measured": fit_measured(name, e.details, metrics.rows, metrics.timed_seq_len),
                "study": f"{e.dir}/{STUDY}"
                if (root / e.dir / STUDY).is_file()
                else (e.details or {}).get("study"),  # a shared database: its URL and name
            }
            for name, e in manifest.steps.items()
            if e.stage == "fit" and e.status == "done" and "candidates" in (e.details or {})
        },
    )
    write_json(root / "report.json", report.model_dump(mode="json"))
    write_json(root / "report.schema.json", Report.model_json_schema())
    (root / "report.md").write_text(render_markdown(report), encoding="utf-8")
    plot_pareto(report.rows, root / "pareto.png", report.metric)
    write_model_cards(root, report, manifest)
    log.info("report: %s", root / "report.md")
    return report


def _rehearsal(root: Path) -> dict | None:
    """The rehearsal's record when ``root`` is one (compress/rehearsal.py), else None."""
    path = root / "rehearsal.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def rehearsal_banner(report: Report) -> list[str]:
    """The first line of a rehearsal's report and cards: its scores mean nothing."""
    if report.rehearsal is None:
        return []
    return [f"> **{report.rehearsal['note']}**", ""]


def stale_steps(computed_from: dict[str, str], now: dict[str, str]) -> list[str]:
    """Steps a report was computed from whose hash is no longer ``now``'s."""
    return [step for step, h in computed_from.items() if now.get(step) != h]


STALE_MARK = "> **Stale report**"


def mark_stale_report(root: Path, planned: dict[str, str]) -> list[str]:
    """Flag report.md and report.json when the steps they describe differ from ``planned``
    (the recipe about to run): a banner on top and ``stale`` in the JSON. Returns those steps."""
    report_json = root / "report.json"
    if not report_json.exists():
        return []
    data = json.loads(report_json.read_text(encoding="utf-8"))
    computed = data.get("computed_from", {})
    changed = stale_steps(computed, planned) + [s for s in planned if s not in computed]
    if not changed:
        return []
    data["stale"] = changed
    write_json(report_json, data)
    md = root / "report.md"
    if md.exists() and not md.read_text(encoding="utf-8").startswith(STALE_MARK):
        banner = (
            f"{STALE_MARK}: step(s) {', '.join(changed)} changed, were added or were removed "
            "since this report was made; it describes earlier outputs. It is replaced when the "
            "current run finishes.\n\n"
        )
        md.write_text(banner + md.read_text(encoding="utf-8"), encoding="utf-8")
    return changed
