"""python -m compress run RECIPE [a.b=c ...] | report ARTIFACTS_DIR | tasks | stages"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from compress.cli import main_guard, setup_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m compress", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a recipe, evaluate and report")
    run.add_argument("recipe", help="a recipe file, or a name under recipes/")
    run.add_argument("overrides", nargs="*", help="a.b.c=value (YAML value); steps.NAME.key=value")
    run.add_argument("--out", type=Path, default=Path("artifacts"), help="artifacts root")
    run.add_argument("--no-eval", action="store_true", help="run the steps only")
    report = sub.add_parser("report", help="re-render the report from eval/metrics.json only")
    report.add_argument("artifacts", type=Path)
    sub.add_parser("tasks", help="list the registered tasks")
    conv = sub.add_parser("convert-tf", help="LERT's TensorFlow 1.x release -> HF directory")
    conv.add_argument("ckpt_dir", type=Path, help="lert_model.ckpt.*, lert_config.json, vocab.txt")
    conv.add_argument("out_dir", type=Path)
    conv.add_argument(
        "--keep-extra-heads",
        action="store_true",
        help="save non-BERT variables (linguistic heads) to extra_heads.safetensors",
    )
    sub.add_parser("stages", help="list the registered stages")
    return parser


def recipe_path(name: str) -> Path:
    path = Path(name)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    return Path(__file__).resolve().parent.parent / "recipes" / f"{name}.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    stray = [x for x in extra if x.startswith("-") or "=" not in x or args.command != "run"]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if args.command == "run":
        args.overrides += extra  # overrides given after options
    setup_logging(args.verbose)

    def dispatch() -> int:
        if args.command == "run":
            from compress.recipe import load_recipe
            from compress.runner import run_recipe

            recipe = load_recipe(recipe_path(args.recipe), args.overrides)
            root = run_recipe(recipe, args.out, evaluate=not args.no_eval)
            print(f"done: {root}" + ("" if args.no_eval else f" (report: {root / 'report.md'})"))
        elif args.command == "report":
            from eval.report import render_report

            render_report(args.artifacts)
            print(f"report: {args.artifacts / 'report.md'}")
        elif args.command == "tasks":
            from compress.tasks import registered_tasks

            print(f"{'task':19s} {'type':15s} {'metric':10s} description [sources]")
            for name, entry in sorted(registered_tasks().items()):
                print(f"{name:19s} {entry.type:15s} {entry.metric:10s} {entry.description}")
        elif args.command == "convert-tf":
            from compress.convert_tf import convert

            report = convert(args.ckpt_dir, args.out_dir, args.keep_extra_heads)
            print(
                f"converted {report['converted']} tensors to {args.out_dir}; "
                f"skipped {report['skipped_optimizer']} optimizer variables and "
                f"{len(report['extra_heads'])} other variables"
                f"{' (kept in extra_heads.safetensors)' if report['extra_heads_kept'] else ''}"
            )
        elif args.command == "stages":
            from compress.registry import load_stages

            for name, st in sorted(load_stages().items()):
                doc = (st.config.__doc__ or "").strip().splitlines()
                print(f"{name:12s} {doc[0] if doc else ''}")
        return 0

    return main_guard(dispatch)


if __name__ == "__main__":
    sys.exit(main())
