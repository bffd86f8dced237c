"""The report's main tables: one row per variant (runtime, device, precision) with its score
and 95% interval, its paired difference from the reference, latency and memory; the
end-to-end note, the hardware in words, and F1 per class."""

from __future__ import annotations

from compress.eval.schema import MetricRow, Metrics, Report


def points(interval: list[float], signed: bool = False) -> str:
    if not interval:
        return ""
    fmt = "{:+.1f}" if signed else "{:.1f}"
    return f" [{fmt.format(interval[0] * 100)}, {fmt.format(interval[1] * 100)}]"


def _delta_cell(row: MetricRow, ref: MetricRow) -> str:
    if row.key == ref.key:
        return "reference"
    delta = (row.delta if row.delta is not None else row.score - ref.score) * 100
    text = f"{delta:+.2f}{points(row.delta_ci, signed=True)}"
    return text + (" within noise" if row.within_noise else "")


def _latency_cell(lat, speedup: float) -> str:
    text = f"{lat.p50:.1f} ±{lat.iqr / 2:.1f} ({speedup:.2f}x)"
    return text + (" unstable" if lat.unstable else "")


def _fmt_row(row: MetricRow, ref: MetricRow, batches: list[str], e2e: bool = False) -> str:
    kept = 100 * row.score / ref.score if ref.score else float("nan")
    cells = [
        row.variant + (" †" if row.notes else ""),
        row.stage,
        row.runtime,
        row.device,
        row.precision,
        f"{row.params / 1e6:.2f}",
        f"{row.size_mb:.1f}",
        f"{row.score * 100:.2f}{points(row.score_ci)}",
        *([f"{row.other_scores['em'] * 100:.2f}"] if "em" in row.other_scores else []),
        _delta_cell(row, ref),
        f"{kept:.1f}%",
    ]
    for b in batches:
        lat = row.latency_ms.get(b)
        cells.append("–" if lat is None else _latency_cell(lat, row.speedup[b]))
    if e2e:
        app = row.end_to_end
        # no "unstable" mark: its blocks hold different texts, so they differ by length too
        cells.append("–" if app is None else f"{app.p50:.1f} / {app.p90:.1f}")
        cells.append(
            ", ".join(f"{b} {v:,.0f}" for b, v in row.end_to_end_throughput.items()) or "–"
        )
    cells.append("–" if row.memory_mb is None else f"{row.memory_mb:.0f}")
    return "| " + " | ".join(cells) + " |"


def results_table(rows: list[MetricRow], ref: MetricRow, title: str) -> list[str]:
    batches = sorted({b for r in rows for b in r.latency_ms}, key=lambda b: int(b[1:]))
    e2e = any(r.end_to_end is not None for r in rows)
    em = all("em" in r.other_scores for r in rows)  # QA: EM beside the F1 score
    head = (
        [
            "variant",
            "stage",
            "runtime",
            "device",
            "precision",
            "params (M)",
            "MB",
            "score [95% CI]",
            *(["EM"] if em else []),
            "Δ pts [95% paired CI]",
            "kept",
        ]
        + [f"{b} p50 ±IQR/2 ms (speedup)" for b in batches]
        + (
            ["end to end b1 p50 / p90 ms", "end to end texts/s (length-sorted batches)"]
            if e2e
            else []
        )
        + ["peak MB"]
    )
    notes = [f"- † `{r.variant}` ({r.runtime} {r.precision}): {n}" for r in rows for n in r.notes]
    return (
        [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        + [_fmt_row(r, ref, batches, e2e) for r in rows]
        + [""]
        + ([*notes, ""] if notes else [])
    )


def end_to_end_text(report: Report) -> list[str]:
    info = report.end_to_end
    if not info:
        return []
    tokens, chars = info["tokens"], info["characters"]
    return [
        f"End to end: what an app sees, on {info['texts']} texts spread over the "
        f"{info.get('split', report.split)} split, one at a time at its own length (cut at "
        f"{info['max_len']} tokens), tokenizer included; the fixed-shape columns pad every row "
        f"to {report.timed_seq_len or '?'} tokens and leave the tokenizer out. "
        f"The texts: {tokens['p50']:.0f} tokens at the median (p10 {tokens['p10']:.0f}, p90 "
        f"{tokens['p90']:.0f}, max {tokens['max']:.0f}); {chars['p50']:.0f} characters at the "
        f"median (p90 {chars['p90']:.0f}, max {chars['max']:.0f}). Texts/s: the same texts "
        "sorted by length and run in batches of each size, padded to each batch's longest.",
        "",
    ]


def cpus(hw: dict) -> str:
    """Which CPUs and threads the run used, and how busy the machine was."""
    text = f"{hw['threads']} threads"
    affinity = hw.get("affinity")
    if affinity is not None and len(affinity) != hw["cores"]:
        text += f" on CPUs {affinity} (affinity)"
    if hw.get("load_after") is not None:
        text += f", load average {hw.get('load_before')} before, {hw['load_after']} after"
    if hw.get("governor"):
        text += f", governor {hw['governor']}"
    return text


def split_text(report: Metrics) -> str:
    described = report.split_description
    if described and described != report.split:
        return f"scored on {described}"
    return f"{report.split} split"


def per_class_table(report: Report) -> list[str]:
    """F1 per class (or entity type) of each variant, CPU rows; the rest is in report.json."""
    rows = [r for r in report.rows if r.device == "cpu" and r.per_class] or [
        r for r in report.rows if r.per_class
    ]
    if not rows:
        return []
    classes = list(rows[0].per_class)
    kind = "entity type" if report.metric == "entity_f1" else "class"
    head = ["variant", "runtime", "precision", *classes]
    lines = [
        f"### F1 per {kind} (precision, recall and support in report.json)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        cells = [f"{r.per_class.get(c, {}).get('f1', 0) * 100:.1f}" for c in classes]
        lines.append("| " + " | ".join([r.variant, r.runtime, r.precision, *cells]) + " |")
    return [*lines, ""]
