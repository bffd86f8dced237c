"""A recipe run again with other seeds, summarised: per variant its scores over the seeds
(mean, sample sd) and its difference from the reference run by run, and per KD / no-KD pair
the differences seed by seed."""

from __future__ import annotations

import statistics

from compress.eval.schema import Metrics, SeedPair, SeedRow, rows_by_key


def seed_summary(
    runs: dict[int, Metrics], reference: str, pairs: list[tuple[str, str]]
) -> tuple[list[SeedRow], list[SeedPair]]:
    """Per CPU row (by its identity: one variant may have an fp32 and a bf16 row), the scores
    over the seeds with mean and sample sd, and its paired difference from the reference
    variant's first CPU row per run; per (KD, no-KD) pair, the per-seed differences of their
    first (as saved) CPU rows. Rows missing from any run are left out."""
    by_run = {
        seed: rows_by_key([r for r in m.rows if r.device == "cpu"]) for seed, m in runs.items()
    }
    first = {  # variant -> the key of its first CPU row (the model as saved)
        variant: next(k for k, r in by_run[next(iter(runs))].items() if r.variant == variant)
        for variant in dict.fromkeys(r.variant for r in by_run[next(iter(runs))].values())
    }
    seeds = list(runs)
    common = [k for k in by_run[seeds[0]] if all(k in rows for rows in by_run.values())]
    ref_key = first.get(reference)

    def spread(values: list[float]) -> tuple[float, float]:
        return round(statistics.fmean(values), 5), round(statistics.stdev(values), 5)

    rows = []
    for key in common:
        scores = [by_run[s][key].score for s in seeds]
        mean, sd = spread(scores)
        variant = by_run[seeds[0]][key].variant
        row = SeedRow(variant=variant, key=key, seeds=seeds, scores=scores, mean=mean, sd=sd)
        if key != ref_key and ref_key in common:
            row.deltas = [round(by_run[s][key].score - by_run[s][ref_key].score, 5) for s in seeds]
            row.delta_mean, row.delta_sd = spread(row.deltas)
        rows.append(row)
    out_pairs = []
    for kd_variant, no_kd_variant in pairs:
        kd, no_kd = first.get(kd_variant), first.get(no_kd_variant)
        if kd in common and no_kd in common:
            diffs = [round(by_run[s][kd].score - by_run[s][no_kd].score, 5) for s in seeds]
            mean, sd = spread(diffs)
            better = sum(d > 0 for d in diffs)
            out_pairs.append(
                SeedPair(
                    kd=kd_variant,
                    no_kd=no_kd_variant,
                    differences=diffs,
                    mean=mean,
                    sd=sd,
                    kd_better=better,
                )
            )
    return rows, out_pairs
