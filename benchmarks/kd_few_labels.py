"""KD where it must pay: recipes/kd-few-labels.yaml over its seeds, side by side.

The teacher learns from every labelled review; the students from a few hundred of them. Printed
per seed and as mean ± sd: the test score of KD + transfer (the other reviews as unlabelled,
teacher-labelled text), KD on the labelled rows alone, and the no-KD twin on the same rows; then
each KD student minus the no-KD twin, seed by seed, with a 95% t interval over the seeds.

    python benchmarks/kd_few_labels.py                      # the recipe as shipped (3 seeds)
    python benchmarks/kd_few_labels.py steps.kd-transfer.temperature=1   # any override
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from scipy import stats

ROOT = Path(__file__).resolve().parent.parent
ROWS = {"kd-transfer": "KD + transfer", "kd": "KD, labelled rows only", "no-kd": "no-KD twin"}


def interval(diffs: list[float]) -> tuple[float, float]:
    """95% t interval of the mean of per-seed paired differences."""
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return mean, mean
    half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return mean - half, mean + half


def table(report: dict) -> list[str]:
    # each model's CPU row as saved (fp32 PyTorch), by its identity
    seed_rows = {
        r["variant"]: r for r in report["seed_rows"] if r["key"].endswith("|pytorch|fp32|cpu")
    }
    seeds = next(iter(seed_rows.values()))["seeds"]
    lines = [
        f"{report['task']}, {report['split_description'] or report['split']} split, "
        f"{report['examples']} examples; seeds {seeds}",
        "",
        f"{'model':26s} " + " ".join(f"{'seed ' + str(s):>9s}" for s in seeds) + "  mean ± sd",
    ]
    for name in ("teacher", *ROWS):
        r = seed_rows[name]
        cells = " ".join(f"{v * 100:9.2f}" for v in r["scores"])
        label = ROWS.get(name, "teacher (all labels)")
        lines.append(f"{label:26s} {cells}  {r['mean'] * 100:.2f} ± {r['sd'] * 100:.2f}")
    no_kd = seed_rows["no-kd"]["scores"]
    lines.append("")
    for name in ("kd-transfer", "kd"):
        diffs = [a - b for a, b in zip(seed_rows[name]["scores"], no_kd, strict=True)]
        low, high = interval(diffs)
        better = sum(d > 0 for d in diffs)
        lines.append(
            f"{ROWS[name]} minus no-KD: "
            + ", ".join(f"{d * 100:+.2f}" for d in diffs)
            + f" (mean {statistics.fmean(diffs) * 100:+.2f}, 95% t interval over seeds "
            f"[{low * 100:+.2f}, {high * 100:+.2f}]); higher on {better} of {len(diffs)} seeds"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="recipe overrides, a.b=c")
    parser.add_argument("--out", type=Path, help="artifacts root (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the report's seed rows here")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from compress.recipe import load_recipe
    from compress.runner import run_recipe

    recipe = load_recipe(ROOT / "recipes" / "kd-few-labels.yaml", args.overrides)
    with tempfile.TemporaryDirectory() as tmp:
        root = run_recipe(recipe, args.out or Path(tmp))
        report = json.loads((root / "report.json").read_text(encoding="utf-8"))
    print("\n".join(table(report)))
    if args.json:
        args.json.write_text(json.dumps(report["seed_rows"], indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
