"""Each fit step: its budget in words, every candidate with its probe, dev score and status,
what probing first saved, and the shipped winner as this evaluation measured it."""

from __future__ import annotations

from compress.eval.schema import MetricRow, Report
from compress.eval.sections.table import points


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


def fit_measured(name: str, fit: dict, rows: list[MetricRow], timed_seq_len: int | None) -> dict:
    """The fit winner's own row, measured by this evaluation (not the search's probe): does it
    meet the latency and size budget, and its test score against the report's reference.
    ``timed_seq_len``: the length the evaluation's latency columns were timed at."""
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
        "timed_seq_len": timed_seq_len,
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
        if lat is None or timed_seq_len != probe["seq_len"]:
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


def fit_decision(report: Report) -> list[str]:
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
        score = f"test score {m['score'] * 100:.2f}{points(m['score_ci'])}"
        if m.get("delta") is not None and m.get("delta_ci"):
            score += (
                f", {m['delta'] * 100:+.2f}{points(m['delta_ci'], signed=True)} against "
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


def fit_section(report: Report) -> list[str]:
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
                f"{c['dev_delta'] * 100:+.2f}{points(c['dev_delta_interval'], signed=True)}"
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
        lines += _beside_text(probe)
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
        study = fit.get("study")
        if isinstance(study, dict):  # in a database machines share
            lines += [
                "",
                f"Every trial of the search is in the Optuna study `{study['name']}` in "
                f"`{study['storage']}` (shared by the fit-workers); `optuna-dashboard "
                f"{study['storage']}` shows them (with the database's password).",
            ]
        elif study:
            lines += [
                "",
                f"Every trial of the search is in `{study}` (an Optuna study in SQLite); "
                f"from this folder, `optuna-dashboard sqlite:///{study}` shows them.",
            ]
        lines.append("")
    return lines


def _beside_text(probe: dict) -> list[str]:
    """The fastest candidate against the model timed beside the candidates (the teacher, say)."""
    beside = probe.get("beside")
    if not beside:
        return []
    return [
        "",
        f"Timed beside them in the same run, on this machine: `{beside['step']}` (its model as "
        f"that step saved it) {beside['latency']['p50']:.1f} ms p50 at batch "
        f"{probe['batch_size']} x {probe['seq_len']} tokens ({probe['threads']} threads); the "
        f"fastest candidate, `{beside['fastest']}`, {beside['fastest_p50']:.2f} ms: "
        f"**{beside['speedup']:g}x** faster.",
    ]
