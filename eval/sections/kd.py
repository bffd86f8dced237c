"""What the students learnt from: their pre-trained starting points, their distillation
data, the KD settings' trials (with the trivial predictor they had to leave), and which
candidate each select step passed on."""

from __future__ import annotations

from compress.eval.cards import search_text
from compress.eval.schema import Report

from compress.manifest import Manifest


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


def started_from_section(report: Report) -> list[str]:
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


def distilled_on_section(report: Report) -> list[str]:
    if not report.distilled_on:
        return []
    lines = ["Distillation data (a no-KD baseline sees the labelled rows only):", ""]
    lines += [f"- `{name}`: {distilled_on_text(d)}" for name, d in report.distilled_on.items()]
    return [*lines, ""]


def kd_search_section(report: Report) -> list[str]:
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


def chosen_on_dev_section(report: Report) -> list[str]:
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
