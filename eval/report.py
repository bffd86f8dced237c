"""Render ``eval/metrics.json`` into report.md, report.json, pareto.png and model cards.

Reads only metrics, the manifest and the resolved recipe: re-rendering never re-runs a model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from compress.eval.cards import search_text, write_model_cards
from compress.eval.latency import UNSTABLE
from compress.eval.published import published_rows
from compress.eval.schema import MetricRow, Metrics, Report

from compress.errors import CompressError
from compress.manifest import Manifest, write_json

log = logging.getLogger(__name__)

WITHIN = 0.01  # "within one point" of the teacher, as a fraction


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both latency (lower) and score (higher),
    ordered by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


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


def _points(interval: list[float], signed: bool = False) -> str:
    if not interval:
        return ""
    fmt = "{:+.1f}" if signed else "{:.1f}"
    return f" [{fmt.format(interval[0] * 100)}, {fmt.format(interval[1] * 100)}]"


def _delta_cell(row: MetricRow, ref: MetricRow) -> str:
    if row.key == ref.key:
        return "reference"
    delta = (row.delta if row.delta is not None else row.score - ref.score) * 100
    text = f"{delta:+.2f}{_points(row.delta_ci, signed=True)}"
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
        f"{row.score * 100:.2f}{_points(row.score_ci)}",
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


def _table(rows: list[MetricRow], ref: MetricRow, title: str) -> list[str]:
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


def _end_to_end_text(report: Report) -> list[str]:
    info = report.end_to_end
    if not info:
        return []
    tokens, chars = info["tokens"], info["characters"]
    return [
        f"End to end: what an app sees, on {info['texts']} texts spread over the "
        f"{info.get('split', report.split)} split, one at a time at its own length (cut at "
        f"{info['max_len']} tokens), tokenizer included; the fixed-shape columns pad every row "
        f"to {report.rows[0].seq_len if report.rows else '?'} tokens and leave the tokenizer out. "
        f"The texts: {tokens['p50']:.0f} tokens at the median (p10 {tokens['p10']:.0f}, p90 "
        f"{tokens['p90']:.0f}, max {tokens['max']:.0f}); {chars['p50']:.0f} characters at the "
        f"median (p90 {chars['p90']:.0f}, max {chars['max']:.0f}). Texts/s: the same texts "
        "sorted by length and run in batches of each size, padded to each batch's longest.",
        "",
    ]


def _cpus(hw: dict) -> str:
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


def _split(report: Metrics) -> str:
    described = report.split_description
    if described and described != report.split:
        return f"scored on {described}"
    return f"{report.split} split"


def _per_class_table(report: Report) -> list[str]:
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


def _seed_label(row, rows) -> str:
    """A seed row's variant, with how it ran where the variant has several rows."""
    if sum(r.variant == row.variant for r in rows) == 1 or not row.key:
        return row.variant
    _, runtime, precision, _ = row.key.split("|")
    return f"{row.variant} ({runtime} {precision})"


def distilled_on_text(data: dict) -> str:
    """What a KD student learnt from, in words."""
    text = f"{data['labelled_rows']:,} labelled rows"
    if data.get("transfer_rows"):
        how = (
            "labelled by the teacher once"
            if data.get("transfer_labelled_once")
            else "teacher run per batch"
        )
        text += (
            f" and {data['transfer_rows']:,} unlabelled transfer rows "
            f"({data['transfer_rows_per_epoch']:,} per epoch, {how}; "
            f"from {', '.join(data.get('transfer_sources', []))})"
        )
    return text


def _started_from(report: Report) -> list[str]:
    if not report.started_from:
        return []
    from compress.models import SHIPPED, SHIPPED_DIR

    by_source: dict[str, list[str]] = {}
    for name, sources in report.started_from.items():
        for source in sources:
            by_source.setdefault(source, []).append(f"`{name}`")
    lines = ["Pre-trained starting points (a no-KD baseline starts where its KD twin does):", ""]
    for source, names in by_source.items():
        note = (
            f" (shipped with lert-compress; how it was pre-trained: "
            f"{SHIPPED_DIR.name}/{SHIPPED[source]}/README.md in the package)"
            if source in SHIPPED
            else ""
        )
        lines.append(f"- {source}{note}: {', '.join(names)}")
    return [*lines, ""]


def _kd_search(report: Report) -> list[str]:
    lines = []
    for name, search in report.kd_search.items():
        keys = [
            k for k in search["trials"][0] if k in ("temperature", "hard_label_weight", "matches")
        ]
        trivial = search.get("trivial")
        lines += [
            f"KD settings of `{name}`: {search_text(search)} (each from the same initial "
            "student, labelled rows only; the chosen ones then trained it in full):",
            "",
            "| " + " | ".join(keys) + f" | steps | {search['split']} {report.metric} | "
            "vs trivial (95%) | left it | earlier rounds | s |",
            "|" + "---|" * (len(keys) + 6),
        ]
        history = search.get("history", [])
        for t in search["trials"]:
            earlier = [
                f"{r['dev'] * 100:.2f}"
                for r in history
                if r["trial"] == t.get("trial") and r["round"] < t["round"]
            ]
            chosen = all(t[k] == search["chosen"].get(k) for k in keys)
            mark = " (chosen)" if chosen else " (pruned)" if t.get("pruned") else ""
            vs = t.get("vs_trivial_interval")
            cells = [str(t[k]) for k in keys] + [
                str(t.get("steps", search["trial_steps"])),
                f"{t['dev'] * 100:.2f}{mark}",
                f"[{vs[0] * 100:+.2f}, {vs[1] * 100:+.2f}]" if vs else "",
                ("yes" if t["left_baseline"] else "no") if "left_baseline" in t else "",
                " → ".join(earlier),
                f"{t['seconds']:.0f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if trivial:
            rounds = " → ".join(str(r) for r in search.get("rounds", [search["trial_steps"]]))
            lines.append(
                f"The trivial predictor, {trivial['description']}, scores "
                f"{trivial['dev'] * 100:.2f} on the same examples; rounds of {rounds} steps "
                f"(successive halving, cap {search.get('cap_steps')}). Choice: {search['why']}."
            )
        else:
            lines.append(
                "Short trials: a lead of a point or so between them is within noise, so the "
                "choice is a measured default, not a finding."
            )
        lines.append("")
    return lines


def budget_text(budget: dict, probe: dict) -> str:
    """A fit step's budget in words (the batch and sequence its latency is for)."""
    parts = []
    if budget.get("latency_ms") is not None and probe.get("latency_of") == "end_to_end":
        parts.append(
            f"p50 at most {budget['latency_ms']:g} ms end to end (tokenizer + model, batch 1, "
            f"each text at its own length, cut at {probe['seq_len']} tokens; "
            f"{probe['threads']} threads)"
        )
    elif budget.get("latency_ms") is not None:
        parts.append(
            f"p50 at most {budget['latency_ms']:g} ms at batch {probe['batch_size']} x "
            f"{probe['seq_len']} tokens ({probe['threads']} threads)"
        )
    if budget.get("size_mb") is not None:
        parts.append(f"at most {budget['size_mb']:g} MB on disk")
    if budget.get("max_drop") is not None:
        ref = budget.get("reference") or "the step's input"
        parts.append(
            f"at most {budget['max_drop']:g} points below {ref} on dev (the lower bound of the "
            "95% paired interval)"
        )
    return "; ".join(parts) or "none"


def fit_measured(name: str, fit: dict, rows: list[MetricRow]) -> dict:
    """The fit winner's own row, measured by this evaluation (not the search's probe): does it
    meet the latency and size budget, and its test score against the report's reference."""
    row = next((r for r in rows if r.variant == name and r.device == "cpu"), None)
    if row is None:
        return {"row": None, "meets": None, "why": f"`{name}` was not evaluated on the CPU"}
    budget, probe = fit["budget"], fit["probe"]
    device = probe.get("device")
    out: dict = {
        "row": row.key,
        "size_mb": row.size_mb,
        "score": row.score,
        "score_ci": row.score_ci,
        "delta": row.delta,
        "delta_ci": row.delta_ci,
        "seq_len": row.seq_len,
    }
    why = []
    if budget.get("size_mb") is not None and row.size_mb > budget["size_mb"]:
        why.append(f"{row.size_mb:.2f} MB is over {budget['size_mb']:g} MB")
    if budget.get("latency_ms") is not None and device:
        # the target's number decides; the device profile timed the winner's exact shape
        chosen = next(c for c in fit["candidates"] if c["key"] == fit["winner"])
        out["device_p50_ms"] = p50 = chosen["latency"]["p50"]
        if p50 > budget["latency_ms"]:
            why.append(f"p50 {p50:.2f} ms on the device is over {budget['latency_ms']:g} ms")
    elif budget.get("latency_ms") is not None and probe.get("latency_of") == "end_to_end":
        if row.end_to_end is None:
            why.append("not timed end to end (the evaluator's end-to-end rows are on the CPU)")
        else:
            out["end_to_end_p50_ms"], out["iqr_ms"] = row.end_to_end.p50, row.end_to_end.iqr
            p50, bound = row.end_to_end.p50, budget["latency_ms"]
            if p50 > bound:
                why.append(f"end-to-end p50 {p50:.2f} ms is over {bound:g} ms")
    elif budget.get("latency_ms") is not None:
        lat = row.latency_ms.get(f"b{probe['batch_size']}")
        if lat is None or row.seq_len != probe["seq_len"]:
            why.append(
                f"not timed at batch {probe['batch_size']} x {probe['seq_len']} tokens (give "
                "evaluate.batch_sizes and seq_len the budget's)"
            )
        else:
            out["p50_ms"], out["iqr_ms"] = lat.p50, lat.iqr
            if lat.p50 > budget["latency_ms"]:
                why.append(f"p50 {lat.p50:.2f} ms is over {budget['latency_ms']:g} ms")
    out["meets"], out["why"] = not why, "; ".join(why)
    return out


def _fit_decision(report: Report) -> list[str]:
    """The shipped artifact each fit step chose, with what this run measured of it."""
    lines = []
    for name, fit in report.fit.items():
        m = fit.get("measured") or {}
        if m.get("row") is None:
            lines.append(f"- Fit `{name}`: {m.get('why', 'not evaluated')}")
            continue
        probe = fit["probe"]
        seen = []
        if "device_p50_ms" in m:
            seen.append(
                f"p50 {m['device_p50_ms']:.2f} ms on the device ({probe['device']['cpu']}, "
                f"profile) at batch {probe['batch_size']} x {probe['seq_len']} tokens"
            )
        if "end_to_end_p50_ms" in m:
            seen.append(
                f"end-to-end p50 {m['end_to_end_p50_ms']:.2f} ms (IQR {m['iqr_ms']:.2f}) on the "
                "test texts"
            )
        if "p50_ms" in m:
            seen.append(
                f"p50 {m['p50_ms']:.2f} ms (IQR {m['iqr_ms']:.2f}) at batch "
                f"{probe['batch_size']} x {probe['seq_len']} tokens"
            )
        seen.append(f"{m['size_mb']:.2f} MB")
        score = f"test score {m['score'] * 100:.2f}{_points(m['score_ci'])}"
        if m.get("delta") is not None and m.get("delta_ci"):
            score += (
                f", {m['delta'] * 100:+.2f}{_points(m['delta_ci'], signed=True)} against "
                f"`{report.reference}`"
            )
        where = "on the device" if probe.get("device") else "on this machine"
        verdict = (
            f"meets its budget {where}"
            if m["meets"]
            else f"does NOT meet its budget here: {m['why']}"
        )
        lines.append(
            f"- **Ship** `{name}` (`{fit['winner']}`, chosen on dev): {verdict}. Budget: "
            f"{budget_text(fit['budget'], probe)}. Measured in this run: {', '.join(seen)}; "
            f"{score}."
        )
    return lines


def _where_timed(probe: dict) -> str:
    """Where the candidates' latencies come from: this machine, or a device profile."""
    device = probe.get("device")
    if not device:
        return (
            f"Latency and size of every candidate were measured on this machine "
            f"({probe['preset']}) from random weights of its exact shape and runtime before any "
            "training."
        )
    isa = ", ".join(device["isa"]) or "none reported"
    return (
        f"Latency of every candidate was measured on the target device, {device['cpu']} "
        f"({device['machine']}; instruction sets {isa}; {device['threads']} threads), by a bench "
        f"folder's runner (profile `{device['profile']}`, {device['measured_at']}), from random "
        f"weights of its exact shape and runtime; int8 quantized for {probe['preset']}, the "
        "target's instruction set. Sizes and dev scores were measured here."
    )


def _probe_savings(fit: dict) -> str:
    """What probing first saved: candidates rejected untrained, and their training time at the
    trained candidates' mean (an estimate: the rejected ones were never trained)."""
    statuses = [c["status"] for c in fit["candidates"]]
    rejected = sum(s in ("over latency", "over size") for s in statuses)
    not_reached = statuses.count("not reached")
    seconds = [c["seconds"] for c in fit["candidates"] if "seconds" in c]
    text = (
        f"{fit['probed']} candidates probed in {fit['probe']['seconds']:.0f} s; {rejected} "
        f"rejected before any training (over latency or size), {fit['trained']} trained, "
        f"{not_reached} within the budget but not reached within max_trials."
    )
    if seconds and rejected:
        mean = sum(seconds) / len(seconds)
        text += (
            f" A trained candidate took {mean:.0f} s on average (pruning, recovery, "
            f"conversion, dev scoring), so training the rejected ones would have cost about "
            f"{rejected * mean:.0f} s more."
        )
    return text


def _fit_section(report: Report) -> list[str]:
    """Each fit step: its budget, every candidate with its status, what probing first saved."""
    lines: list[str] = []
    for name, fit in report.fit.items():
        probe = fit["probe"]
        lines += [
            f"## Fit (`{name}`)",
            "",
            f"Budget: {budget_text(fit['budget'], probe)}. Objective: {fit['objective']}. "
            f"{_where_timed(probe)} {_probe_savings(fit)}",
            "",
            "| candidate | runtime | vocab | size MB | p50 ms (IQR) | dev score | Δ dev "
            "(95% CI) | left trivial | status |",
            "|---|---|---:|---:|---:|---:|---:|---|---|",
        ]
        for c in fit["candidates"]:
            lat = c["latency"]
            timed = f"{lat['p50']:.2f} ({lat['iqr']:.2f})" if lat else "-"
            trained = "dev_score" in c
            score = f"{c['dev_score'] * 100:.2f}" if trained else "-"
            delta = (
                f"{c['dev_delta'] * 100:+.2f}{_points(c['dev_delta_interval'], signed=True)}"
                if trained
                else "-"
            )
            shape = f"{c['layers']}L x {c['heads']}H, FFN {c['ffn']}"
            status = c["status"]
            revert = c.get("revert") or {}
            if revert.get("fp32") and revert.get("method", "").startswith("nncf"):
                n = len([q for q in revert["fp32"] if q != "none"])
                status += (
                    f" (NNCF accuracy control removed {n} quantizer(s), "
                    f"{revert['slowdown']:.2f}x the all-int8 latency)"
                )
            elif revert.get("fp32"):
                status += (
                    f" ({', '.join(revert['fp32'])} kept in fp32, {revert['slowdown']:.2f}x the "
                    "all-int8 latency)"
                )
            elif revert:
                status += f" (reverting int8: {revert['why']})"
            left = {True: "yes", False: "**no**"}.get(c.get("left_baseline"), "-")
            lines.append(
                f"| {shape} | {c['runtime']} | {c['vocab_size']:,} | {c['size_mb']:.2f} | "
                f"{timed} | {score} | {delta} | {left} | {status} |"
            )
        trivial = fit.get("trivial")
        if trivial:
            lines += [
                "",
                f"Left trivial: whether the candidate's dev score is above that of the trivial "
                f"predictor, {trivial['description']} ({trivial['dev'] * 100:.2f}), by its "
                "paired 95% interval; a **no** learned nothing the trivial predictor lacks.",
            ]
        check = fit.get("probe_check")
        if check:
            verdict = "agree" if check["agree"] else "differ by more than the spread"
            lines += [
                "",
                f"The winner `{fit['winner']}` timed beside its random-weight probe in one run: "
                f"{check['trained_p50']:.2f} ms trained vs {check['probe_p50']:.2f} ms probed "
                f"(spread {check['spread']:.2f} ms): they {verdict}. Its test score is its row "
                f"`{name}` above.",
            ]
        lines.append("")
    return lines


def _chosen_on_dev(report: Report) -> list[str]:
    """Which candidate each select step passed on, and KD students below their no-KD twins."""
    lines = []
    for name, c in report.chosen_on_dev.items():
        candidates = ", ".join(f"`{n}`" for n in c["dev_scores"])
        lines.append(f"- `{name}` took `{c['chosen']}` of {candidates}: {c['why']}.")
    for w in report.kd_below_no_kd:
        lines.append(
            f"- **KD student `{w['kd']}` scored below its no-KD twin `{w['no_kd']}` on dev** "
            f"({w['kd_dev'] * 100:.2f} vs {w['no_kd_dev'] * 100:.2f}): the KD settings did not "
            "pay here; a `select` step (best_of) passes the better one on."
        )
    return ["Chosen on the dev split:", "", *lines, ""] if lines else []


def _distilled_on(report: Report) -> list[str]:
    if not report.distilled_on:
        return []
    lines = ["Distillation data (a no-KD baseline sees the labelled rows only):", ""]
    lines += [f"- `{name}`: {distilled_on_text(d)}" for name, d in report.distilled_on.items()]
    return [*lines, ""]


def _seeds_section(report: Report) -> list[str]:
    """Scores over the recipe's seeds: what one draw cannot tell."""
    if not report.seed_rows:
        return []
    seeds = report.seed_rows[0].seeds
    lines = [
        f"### Across {len(seeds)} seeds ({', '.join(map(str, seeds))})",
        "",
        f"Every step run again with each seed (CPU, as saved); mean ± sample sd in points. "
        f"The first seed's run is the one timed above. Δ is against `{report.reference}` "
        "within each run.",
        "",
        "| variant | score mean ± sd | Δ pts mean ± sd | per seed |",
        "|---|---|---|---|",
    ]
    for r in report.seed_rows:
        delta = (
            "reference"
            if r.delta_mean is None
            else f"{r.delta_mean * 100:+.2f} ± {(r.delta_sd or 0) * 100:.2f}"
        )
        per_seed = ", ".join(f"{v * 100:.2f}" for v in r.scores)
        lines.append(
            f"| {_seed_label(r, report.seed_rows)} | {r.mean * 100:.2f} ± {r.sd * 100:.2f} "
            f"| {delta} | {per_seed} |"
        )
    for p in report.seed_pairs:
        lines.append("")
        lines.append(
            f"KD `{p.kd}` minus no-KD `{p.no_kd}`: {p.mean * 100:+.2f} ± {p.sd * 100:.2f} points "
            f"(per seed {', '.join(f'{d * 100:+.2f}' for d in p.differences)}); KD scored higher "
            f"on {p.kd_better} of {len(p.differences)} seeds."
        )
    return [*lines, ""]


def render_markdown(report: Report) -> str:
    rows, hw = report.rows, report.hardware
    lines = [
        f"# {report.recipe}: size against {report.metric}",
        "",
        f"Task `{report.task}`, {_split(report)} ({report.examples} examples), "
        f"metric {report.metric} in points with 95% bootstrap intervals over the examples. "
        f"Δ is against `{report.reference}` on the same examples, with a 95% paired bootstrap "
        "interval; a Δ whose interval contains 0 is marked *within noise*: it is not a finding. "
        f"Latency: sequence length {rows[0].seq_len if rows else '?'}, p50 over repeated "
        f"interleaved runs; speedup is over `{report.reference}` on the same device, in the same "
        f"run; *unstable* marks a row whose blocks of rounds disagree by more than "
        f"{UNSTABLE:.0%} of p50. Peak MB: CPU, resident memory a fresh process adds to load the "
        "model and run one batch of the largest size; GPU, the model's own peak allocated "
        "while loading and scoring (batches of up to 64 examples at the task's maximum length, "
        "not the CPU rows' shape; the models scored before it are taken off).",
        "",
        f"CPU: {hw['cpu']} ({hw['arch']}, {hw['cores']} cores, {_cpus(hw)}, "
        f"{', '.join(hw['isa']) or 'no listed ISA flags'}, {hw['memory_gb']} GiB). "
        f"GPU: {hw['gpu'] or 'none'}.",
        "",
    ]
    if report.parallel_training:
        groups: dict[tuple, list[str]] = {}
        for name, p in report.parallel_training.items():
            groups.setdefault((p["processes"], p["backend"]), []).append(f"`{name}`")
        for (n, backend), names in groups.items():
            lines += [
                f"Trained data-parallel on {n} processes ({backend}; each step saw {n} x the "
                f"recipe's batch_size): {', '.join(names)}.",
                "",
            ]
    for device, title in (("cpu", "CPU"), ("cuda", "GPU")):
        group = [r for r in rows if r.device == device]
        if group:
            lines += _table(group, report.reference_row(device) or group[0], title)
    lines += _end_to_end_text(report)
    if report.majority is not None:
        m = report.majority
        lines += [
            f"Trivial baseline, {m.prediction}: {m.score * 100:.2f}{_points(m.score_ci)}"
            + (
                f", Δ {m.delta * 100:+.2f}{_points(m.delta_ci, signed=True)}"
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
    lines += _per_class_table(report)
    lines += _checked_section(report)
    lines += _started_from(report)
    lines += _distilled_on(report)
    lines += _kd_search(report)
    lines += _fit_section(report)
    lines += _chosen_on_dev(report)
    lines += _seeds_section(report)
    lines += ["## Recommended", ""]
    lines += _fit_decision(report)
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
    if report.published:
        lines += [
            "",
            "## Published (not measured here)",
            "",
            "| model | task | score | source |",
            "|---|---|---|---|",
        ]
        lines += [f"| {p.model} | {p.task} | {p.score} | {p.source} |" for p in report.published]
    lines += ["", "![score against latency](pareto.png)", ""]
    return "\n".join(lines)


def plot_pareto(rows: list[MetricRow], path: Path, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [d for d in ("cpu", "cuda") if any(r.device == d and r.latency_ms for r in rows)]
    if not panels:
        return
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, len(panels), figsize=(11 * len(panels), 6), squeeze=False)
    for ax, device in zip(axes[0], panels, strict=True):
        group = [r for r in rows if r.device == device and "b1" in r.latency_ms]
        xs = [r.latency_ms["b1"].p50 for r in group]
        ys = [r.score * 100 for r in group]
        largest = max(r.size_mb for r in group) or 1.0
        sizes = [60 + 900 * r.size_mb / largest for r in group]
        ax.scatter(
            xs, ys, s=sizes, alpha=0.5, c=range(len(group)), cmap="viridis", edgecolors="black"
        )
        # each score's 95% bootstrap interval, so overlapping variants read as such
        lows = [
            y - r.score_ci[0] * 100 if r.score_ci else 0.0 for r, y in zip(group, ys, strict=True)
        ]
        highs = [
            r.score_ci[1] * 100 - y if r.score_ci else 0.0 for r, y in zip(group, ys, strict=True)
        ]
        ax.errorbar(xs, ys, yerr=[lows, highs], fmt="none", ecolor="0.4", elinewidth=0.8, capsize=3)
        # numbers on the points, names in the legend: readable however close the points are
        handles = []
        for i, r in enumerate(group, 1):
            ax.annotate(str(i), (xs[i - 1], ys[i - 1]), ha="center", va="center", fontsize=8)
            handles.append(
                Line2D(
                    [],
                    [],
                    linestyle="none",
                    marker=f"${i}$",
                    color="black",
                    label=f"{r.label}, {r.size_mb:.1f} MB",
                )
            )
        front = pareto_front(list(zip(xs, ys, strict=True)))
        (line,) = ax.plot(
            [xs[i] for i in front],
            [ys[i] for i in front],
            "--",
            color="tab:red",
            label="Pareto front",
        )
        ax.set_xscale("log")
        ax.set_xlabel(f"{device.upper()} latency, batch 1, p50 (ms, log scale)")
        ax.set_ylabel(f"{metric} (points)")
        ax.set_title(f"{device.upper()}: score (95% CI) against latency (marker area ~ MB)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(
            handles=[*handles, line],
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=8,
            frameon=False,
        )
        ax.margins(x=0.25, y=0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
            name: {"processes": e.processes, "backend": e.backend}
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
        fit={
            name: {**e.details, "measured": fit_measured(name, e.details, metrics.rows)}
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


def checked_against_source(manifest: Manifest, steps: list[str]) -> list[dict]:
    """What the export and quantize steps (and their ORT-format copies) recorded when they
    compared their output with the model it was converted from, on dev examples."""
    checks = []
    for name in steps:
        entry = manifest.steps.get(name)
        check = (entry.details or {}).get("validation") if entry else None
        if not check or "max_abs_diff" not in check or not entry.output:
            continue
        source = f"`{entry.input_step}`" if entry.input_step else "its input"
        if entry.input and not (manifest.path.parent / entry.input).is_dir():
            source += f" ({Path(entry.input).name})"
        checks.append(
            {"variant": name, "file": Path(entry.output).name, "against": source, **check}
        )
        ort = entry.details.get("ort_format")
        if ort:
            checks.append(
                {
                    "variant": f"{name} (ort format)",
                    "file": ort["file"],
                    "against": f"`{name}` ({Path(entry.output).name})",
                    "operators": ort["operators"],
                    **ort["validation"],
                }
            )
    return checks


def _checked_section(report: Report) -> list[str]:
    if not report.checked_against_source:
        return []
    lines = [
        "Converted models against the model each came from, on dev examples (max |Δlogit| "
        "over every logit; argmax agreement: the share of predictions that match):",
        "",
        "| variant | file | against | max abs Δlogit | argmax agreement |",
        "|---|---|---|---|---|",
    ]
    for c in report.checked_against_source:
        file = c["file"] + (f" ({c['operators']} operators)" if "operators" in c else "")
        lines.append(
            f"| {c['variant']} | {file} | {c['against']} | {c['max_abs_diff']:.2e} "
            f"| {c['argmax_agreement']:.4f} |"
        )
    return [*lines, ""]


def kd_below_no_kd(manifest: Manifest, steps: list[str]) -> list[dict]:
    """KD students whose best dev score is below their no-KD twin's (from the manifest)."""
    out = []
    for name in steps:
        entry = manifest.steps.get(name)
        if entry is None or entry.stage != "baseline" or not entry.details:
            continue
        twin = manifest.steps.get(entry.details.get("like", ""))
        if twin is None or not twin.details or "best_dev" not in twin.details:
            continue
        kd_dev, no_kd_dev = twin.details["best_dev"], entry.details["train"]["best_dev"]
        if kd_dev < no_kd_dev:
            out.append(
                {
                    "kd": entry.details["like"],
                    "no_kd": name,
                    "kd_dev": kd_dev,
                    "no_kd_dev": no_kd_dev,
                }
            )
    return out


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
