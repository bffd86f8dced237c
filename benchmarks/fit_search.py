"""Shape-first search against training every candidate, on the same space, side by side.

Both sides start from the demo's student (recipes/demo.yaml up to its `pick` step) and search
the demo's fit space:

- shape first: the demo's `fit` step as shipped: every candidate timed and sized from random
  weights, only those within the latency and size budget trained;
- train every candidate: the same step with no latency or size bound in the search and
  max_trials as large as the space, so every candidate is trained and scored on dev; the budget
  is applied afterwards, to the same probed latencies and sizes.

Printed: seconds spent, candidates trained, and the winner of each, and whether they agree.

    python benchmarks/fit_search.py
    python benchmarks/fit_search.py --out /tmp/fit-bench steps.teacher.epochs=2   # overrides
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def recipe_raw(overrides: list[str]) -> dict:
    """The demo up to its fit step, and a train-everything twin of that step."""
    import yaml

    from compress.recipe import apply_override

    raw = yaml.safe_load((ROOT / "recipes" / "demo.yaml").read_text(encoding="utf-8"))
    raw["name"] = "fit-search"
    names = [s["name"] for s in raw["steps"]]
    fit = next(s for s in raw["steps"] if s["stage"] == "fit")
    raw["steps"] = raw["steps"][: names.index(fit["name"]) + 1]
    space = fit["space"]
    n = len(space["layers"]) * len(space["heads"]) * len(space["ffn"])
    n *= len(space.get("vocabulary", [None])) * len(space.get("runtimes", [1, 2]))
    every = json.loads(json.dumps(fit))
    every["name"] = "train-every-candidate"
    every["budget"] = {k: v for k, v in fit["budget"].items() if k not in ("latency_ms", "size_mb")}
    every["max_trials"] = n
    every["objective"] = "accurate"
    raw["steps"].append(every)
    raw["evaluate"] = {**raw.get("evaluate", {}), "devices": ["cpu"], "batch_sizes": [1]}
    for o in overrides:
        apply_override(raw, o)
    return raw


def winner_under(budget: dict, objective: str, candidates: list[dict]) -> str | None:
    """The winner of trained candidates once the latency and size budget is applied."""
    ok = [
        c
        for c in candidates
        if "dev_score" in c
        and (budget.get("latency_ms") is None or c["latency"]["p50"] <= budget["latency_ms"])
        and (budget.get("size_mb") is None or c["size_mb"] <= budget["size_mb"])
        and (
            budget.get("max_drop") is None
            or c["dev_delta_interval"][0] >= -budget["max_drop"] / 100
        )
    ]
    if not ok:
        return None
    if objective == "fast":
        return min(ok, key=lambda c: (c["latency"]["p50"], -c["dev_score"]))["key"]
    return max(ok, key=lambda c: (c["dev_score"], -c["latency"]["p50"]))["key"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="recipe overrides, a.b=c")
    parser.add_argument("--out", type=Path, help="artifacts root (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write both sides' figures here")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from compress.cli import setup_logging
    from compress.manifest import Manifest
    from compress.recipe import parse_recipe
    from compress.runner import run_recipe

    setup_logging()
    raw = recipe_raw(args.overrides)
    fit_name = raw["steps"][-2]["name"]
    with tempfile.TemporaryDirectory() as tmp:
        root = run_recipe(parse_recipe(raw), args.out or Path(tmp))
        steps = Manifest(root).steps
        first, every = steps[fit_name].details, steps["train-every-candidate"].details
    budget = first["budget"]
    sides = {
        "shape first": {
            "seconds": first["search_seconds"],
            "probe_seconds": first["probe"]["seconds"],
            "trained": first["trained"],
            "winner": first["winner"],
        },
        "train every candidate": {
            "seconds": every["search_seconds"],
            "probe_seconds": every["probe"]["seconds"],
            "trained": every["trained"],
            "winner": winner_under(budget, first["objective"], every["candidates"]),
        },
    }
    print(f"space: {first['probed']} candidates; budget: {budget}")
    print(f"{'side':24s} {'seconds':>8s} {'of which probing':>17s} {'trained':>8s}  winner")
    for name, s in sides.items():
        print(
            f"{name:24s} {s['seconds']:8.1f} {s['probe_seconds']:17.1f} {s['trained']:8d}  "
            f"{s['winner']}"
        )
    a, b = (s["winner"] for s in sides.values())
    print("same winner" if a == b else f"different winners: {a} (shape first) vs {b} (every one)")
    ratio = sides["train every candidate"]["seconds"] / max(sides["shape first"]["seconds"], 1e-9)
    print(f"train every candidate took {ratio:.2f}x the shape-first search's time")
    if args.json:
        args.json.write_text(json.dumps(sides, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
