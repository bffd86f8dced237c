"""Does the cost plan's seconds per step hold over a longer run?

The plan (compress/plan.py) extrapolates a real run from a rehearsal of a few optimizer steps.
This rehearses one training step of a shipped recipe twice, at N and at 4N optimizer steps
(the recipe cut after that step, nothing else changed), and prints each run's median seconds
per step with its range (the first, warm-up step left out, as the plan does) and whether the
two agree: the 4N median inside the N run's range, or the two ranges overlapping.

    python benchmarks/plan_agreement.py      # quantize-small's lert-small, N=3
    python benchmarks/plan_agreement.py --recipe distill-large-to-small --step teacher --steps 2

The default row, LERT-small fine-tuned at batch 32 x 256 tokens on ChnSentiCorp, is the same
training run as distill-large-to-small's student-no-kd row and takes minutes; that recipe's
teacher row (LERT-large, gradient checkpointing on a 24 GB machine) takes minutes a step here.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cut_recipe(recipe: str, step: str, out: Path) -> Path:
    """The shipped recipe up to and including ``step``, written as ``out/RECIPE.yaml``."""
    import yaml

    raw = yaml.safe_load((ROOT / "recipes" / f"{recipe}.yaml").read_text(encoding="utf-8"))
    names = [s["name"] for s in raw["steps"]]
    if step not in names:
        raise SystemExit(f"plan_agreement: {recipe} has no step {step!r} (it has {names})")
    raw["steps"] = raw["steps"][: names.index(step) + 1]
    path = out / f"{recipe}.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def agree(short: dict, long: dict) -> bool:
    """The longer run's median inside the short run's range, or the ranges overlapping."""
    (lo, hi), (lo4, hi4) = short["spread"], long["spread"]
    return lo <= long["seconds_per_step"] <= hi or (lo4 <= hi and lo <= hi4)


def rehearse(path: Path, recipe: str, step: str, steps: int, out: Path) -> dict:
    from compress.__main__ import main

    argv = ["run", str(path), "--rehearse", "--rehearse-steps", str(steps), "--no-eval"]
    rc = main([*argv, "--out", str(out)])
    if rc != 0:
        raise SystemExit(f"plan_agreement: the rehearsal at {steps} steps failed (rc {rc})")
    plan = json.loads((out / "rehearsal" / recipe / "plan.json").read_text(encoding="utf-8"))
    (found,) = [s for s in plan["steps"] if s["step"] == step]
    return found["runs"][-1]  # the step's own run (after any search trials)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="quantize-small")
    parser.add_argument("--step", default="lert-small")
    parser.add_argument("--steps", type=int, default=3, help="N (the longer run takes 4N)")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps: give at least 2 (the first step is warm-up)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.steps, 4 * args.steps):
            out = Path(tmp) / f"n{n}"
            out.mkdir()
            path = cut_recipe(args.recipe, args.step, out)
            rows.append((n, rehearse(path, args.recipe, args.step, n, out)))
    print(f"\n{args.recipe}, step {args.step}: seconds per optimizer step")
    print("| steps | s / step (median) | range | tokens / step |")
    print("|---:|---:|---|---:|")
    for n, run in rows:
        lo, hi = run["spread"]
        median, tokens = run["seconds_per_step"], run["tokens_per_step"]
        print(f"| {n} | {median:.2f} | {lo:.2f}–{hi:.2f} | {tokens:,} |")
    verdict = "agree" if agree(rows[0][1], rows[1][1]) else "do NOT agree"
    print(
        f"\nN and 4N {verdict} (the 4N median inside the N range, or the two ranges overlapping)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
