"""lert-compress eval ARTIFACTS_DIR (re-evaluate a run) | --model PATH --task NAME (one model)"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from compress.cli import main_guard, setup_logging


def main(argv: list[str] | None = None, prog: str = "lert-compress eval") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("artifacts", type=Path, nargs="?", help="a run's artifacts directory")
    parser.add_argument("--model", type=Path, help="an HF model directory or ONNX file")
    parser.add_argument("--task", help="registered task name for --model")
    parser.add_argument("--out", type=Path, default=Path("artifacts"), help="root for --model runs")
    parser.add_argument("overrides", nargs="*", default=[], help="evaluate.x=value ...")
    args = parser.parse_args(argv)
    if args.model is not None and args.artifacts is not None:  # an override, not a directory
        args.overrides.insert(0, str(args.artifacts))
        args.artifacts = None
    setup_logging()

    def dispatch() -> int:
        from compress.eval.evaluate import evaluate_recipe
        from compress.eval.report import render_report

        from compress.errors import RecipeError
        from compress.lock import artifacts_lock
        from compress.recipe import apply_override, parse_recipe
        from compress.tasks import load_task

        if args.model is not None:
            from compress.eval.single import evaluate_single

            if not args.task:
                raise RecipeError("--model needs --task NAME (see python -m compress tasks)")
            root = evaluate_single(args.model, args.task, args.out, args.overrides)
        elif args.artifacts is not None:
            root = args.artifacts
            resolved = root / "recipe.resolved.yaml"
            if not resolved.exists():
                raise RecipeError(f"{resolved} is missing: is {root} a run's artifacts directory?")
            raw = yaml.safe_load(resolved.read_text(encoding="utf-8"))
            for item in args.overrides:
                apply_override(raw, item)
            recipe = parse_recipe(raw, str(resolved))
            task = load_task(recipe.task)
            with artifacts_lock(root):
                evaluate_recipe(root, recipe, task)
                render_report(root)
        else:
            parser.error("give ARTIFACTS_DIR or --model PATH --task NAME")
        print(f"report: {root / 'report.md'}")
        return 0

    return main_guard(dispatch)


if __name__ == "__main__":
    sys.exit(main())
