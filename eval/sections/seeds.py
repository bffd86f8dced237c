"""Scores over the recipe's seeds: what one draw cannot tell (mean and sd per variant, and
KD minus no-KD seed by seed)."""

from __future__ import annotations

from compress.eval.schema import Report


def _seed_label(row, rows) -> str:
    """A seed row's variant, with how it ran where the variant has several rows."""
    if sum(r.variant == row.variant for r in rows) == 1 or not row.key:
        return row.variant
    _, runtime, precision, _ = row.key.split("|")
    return f"{row.variant} ({runtime} {precision})"


def seeds_section(report: Report) -> list[str]:
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
