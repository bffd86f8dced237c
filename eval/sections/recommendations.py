"""What to ship: the variants chosen from the numbers (the smallest, and the fastest per
device, within one point of the reference by the paired interval), each fit step's choice,
and the published numbers beside them."""

from __future__ import annotations

from compress.eval.schema import MetricRow, Report
from compress.eval.sections.fit import fit_decision

WITHIN = 0.01  # "within one point" of the teacher, as a fraction


def recommendations(
    rows: list[MetricRow], reference: MetricRow | None, batch: str = "b1"
) -> dict[str, MetricRow | None]:
    """Per target, the variant chosen from the numbers (None when nothing qualifies): the
    smallest, and the fastest per device, among rows within one point of ``reference``.

    "Within one point" is decided on the paired interval when there is one: its lower bound
    must be above -1 point, so a loss that may well be larger than a point does not qualify.
    """
    out: dict[str, MetricRow | None] = {}
    if not rows or reference is None:
        return out
    ok = [r for r in rows if within_one_point(r, reference)]
    out["smallest"] = min(ok, key=lambda r: (r.size_mb, -r.score), default=None)
    for device in sorted({r.device for r in rows}):
        timed = [r for r in ok if r.device == device and batch in r.latency_ms]
        out[f"fastest_{device}"] = min(timed, key=lambda r: r.latency_ms[batch].p50, default=None)
        app = [r for r in ok if r.device == device and r.end_to_end is not None]
        if app:  # what an app sees: the texts' own lengths, tokenizer included
            out[f"fastest_{device}_end_to_end"] = min(app, key=lambda r: r.end_to_end.p50)
    return out


def within_one_point(row: MetricRow, reference: MetricRow) -> bool:
    if row.delta_ci:
        return row.delta_ci[0] > -WITHIN
    return row.score >= reference.score - WITHIN


def recommended_section(report: Report) -> list[str]:
    """What to ship: each fit step's choice with what this run measured of it, then the
    smallest and fastest variants within one point of the reference."""
    rows = report.rows
    lines = ["## Recommended", "", *fit_decision(report)]
    labels = {
        "smallest": f"Smallest within 1 point of `{report.reference}` (paired interval above -1)",
        "fastest_cpu": "Fastest on CPU (batch 1, fixed shape) within 1 point",
        "fastest_cpu_end_to_end": "Fastest on CPU end to end (batch 1, the texts' own lengths, "
        "tokenizer included) within 1 point",
        "fastest_cuda": "Fastest on GPU (batch 1) within 1 point",
    }
    for key, label in labels.items():
        if key in report.recommended:
            pick = report.recommended[key]
            text = (
                f"`{pick.variant}` ({pick.runtime} {pick.precision} on {pick.device}, "
                f"{pick.size_mb:.1f} MB, score {pick.score * 100:.2f})"
                if pick
                else "none qualifies"
            )
            if pick and pick.variant == report.reference and len({r.variant for r in rows}) > 1:
                text += (
                    f"; no other variant is shown to be within 1 point on {report.examples} "
                    "examples (each paired interval reaches below -1; only more test examples "
                    "narrow it)"
                )
            lines.append(f"- {label}: {text}")
    return lines


def published_section(report: Report) -> list[str]:
    """Published numbers for the models the run started from: never our measurement."""
    lines: list[str] = []
    if report.published:
        lines += [
            "",
            "## Published (not measured here)",
            "",
            "| model | task | score | source |",
            "|---|---|---|---|",
        ]
        lines += [f"| {p.model} | {p.task} | {p.score} | {p.source} |" for p in report.published]
    return lines
