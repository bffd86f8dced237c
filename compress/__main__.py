"""lert-compress (or python -m compress): run RECIPE [a.b=c ...] | check RECIPE [a.b=c ...] |
eval ... | report DIR | tasks | stages [NAME] | bench RECIPE --out DIR |
fit-worker RECIPE --storage URL --artifacts DIR | convert-tf CKPT_DIR OUT_DIR"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from compress.cli import main_guard, setup_logging


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a recipe, evaluate and report")
    run.add_argument("recipe", help="a recipe file, or a name under recipes/")
    run.add_argument("overrides", nargs="*", help="a.b.c=value (YAML value); steps.NAME.key=value")
    run.add_argument("--out", type=Path, default=Path("artifacts"), help="artifacts root")
    run.add_argument("--no-eval", action="store_true", help="run the steps only")
    run.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="processes on this machine (torchrun --nproc-per-node N): data-parallel training",
    )
    run.add_argument(
        "--nnodes",
        type=int,
        default=1,
        help="machines in the run (torchrun --nnodes, c10d rendezvous): start this same "
        "command on each, with its --node-rank and one --rdzv-endpoint",
    )
    run.add_argument(
        "--node-rank", type=int, default=0, help="this machine's number, 0 to nnodes - 1"
    )
    run.add_argument(
        "--rdzv-endpoint",
        metavar="HOST:PORT",
        help="where the machines meet: a host every node reaches (node 0's address) and a free "
        "port; node 0 listens there",
    )
    run.add_argument(
        "--rdzv-id", default=None, help="the run's name at the rendezvous (default: the recipe's)"
    )
    run.add_argument(
        "--backend",
        choices=["auto", "nccl", "gloo"],
        default="auto",
        help="process-group backend with --nproc: auto is NCCL where CUDA is (one GPU per "
        "process), else gloo",
    )
    run.add_argument(
        "--dist-timeout",
        type=float,
        default=None,
        metavar="MINUTES",
        help="how long the other processes wait while the first runs a single-process step "
        "(export, quantize); default 240",
    )
    run.add_argument(
        "--rehearse",
        action="store_true",
        help="rehearse the real run: every hub model replaced by random weights of its exact "
        "config, hub data by generated files in the task's release format, each training run "
        "capped; writes OUT/rehearsal/RECIPE with the report and the real run's cost plan",
    )
    run.add_argument(
        "--rehearse-steps",
        type=int,
        default=2,
        metavar="N",
        help="optimizer steps per training run in a rehearsal (default 2)",
    )
    worker = sub.add_parser(
        "fit-worker",
        help="join a fit step's search in a shared database (storage) and train its candidates",
    )
    worker.add_argument("recipe", help="the driver's recipe (a file or a name)")
    worker.add_argument("overrides", nargs="*", help="the driver's overrides, the same ones")
    worker.add_argument("--storage", metavar="URL", help="the study's database (SQLAlchemy URL)")
    worker.add_argument(
        "--artifacts", help="the folder the driver and every worker share, or s3://BUCKET"
    )
    worker.add_argument("--step", help="the fit step (default: the recipe's only one)")
    worker.add_argument(
        "--out", type=Path, default=Path("artifacts"), help="this worker's own folder root"
    )
    worker.add_argument(
        "--wait",
        type=float,
        default=600,
        metavar="SECONDS",
        help="how long to wait for the driver to publish the search (default 600)",
    )
    check = sub.add_parser(
        "check", help="validate a recipe and its overrides as run would, without running it"
    )
    check.add_argument("recipe", help="a recipe file, or a name under recipes/")
    check.add_argument("overrides", nargs="*", help="a.b.c=value, as for run")
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
    stages = sub.add_parser("stages", help="list the stages, or one stage's options")
    stages.add_argument("name", nargs="?", help="a stage name: print its options")
    sub.add_parser("eval", help="re-evaluate a run, or one model: eval --help", add_help=False)
    bench = sub.add_parser(
        "bench",
        help="write a folder that times a fit step's candidates on the target device "
        "(copy it there, run run_bench.py, give its profile.json to budget.device)",
    )
    bench.add_argument("recipe", help="the recipe with the fit step (a file or a name)")
    bench.add_argument("overrides", nargs="*", help="recipe overrides, as for run")
    bench.add_argument("--out", type=Path, required=True, help="the folder to write (new)")
    bench.add_argument(
        "--artifacts",
        type=Path,
        default=Path("artifacts"),
        help="where the recipe ran (run's --out): the fit step's input is read from there",
    )
    bench.add_argument("--step", help="the fit step (default: the recipe's only one)")
    bench.add_argument("--texts", type=int, default=300, help="dev texts for end-to-end timing")
    bench.add_argument(
        "--target",
        choices=["avx2", "avx512", "avx512_vnni", "arm64"],
        help="the instruction set int8 is quantized for (default: the fit step's target)",
    )
    bench.add_argument("--batch-sizes", type=int, nargs="+", help="default: the budget's")
    return parser


def recipe_path(name: str) -> Path:
    """A recipe file, or the recipe of that name shipped with the package."""
    from compress.errors import RecipeError
    from compress.recipe import RECIPE_DIRS
    from compress.validation import suggest

    path = Path(name)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    folder = next((d for d in RECIPE_DIRS if d.is_dir()), None)
    known = sorted(p.stem for p in folder.glob("*.yaml")) if folder else []
    if name not in known:
        hint = suggest(name, known)
        raise RecipeError(f"no recipe named {name!r}{hint} (give a recipe name or a file path)")
    assert folder is not None
    return folder / f"{name}.yaml"


# the launcher's own options: torchrun gets them, the processes it starts do not
LAUNCHER_OPTIONS = ("--nproc", "--nnodes", "--node-rank", "--rdzv-endpoint", "--rdzv-id")


def _without_launcher_options(argv: list[str]) -> list[str]:
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in LAUNCHER_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{o}=" for o in LAUNCHER_OPTIONS)):
            rest.append(arg)
    return rest


def rendezvous(args) -> list[str]:
    """torchrun's options for ``args``: one machine (--standalone), or a c10d rendezvous of
    ``--nnodes`` machines at ``--rdzv-endpoint``; bad values are one line each."""
    from compress.errors import CompressError

    if args.nproc < 1 or args.nnodes < 1:
        raise CompressError("--nproc and --nnodes: give at least 1")
    if args.nnodes == 1:
        return ["--standalone", f"--nproc-per-node={args.nproc}"]
    if not 0 <= args.node_rank < args.nnodes:
        raise CompressError(
            f"--node-rank {args.node_rank}: with --nnodes {args.nnodes} give 0 to {args.nnodes - 1}"
        )
    host, _, port = (args.rdzv_endpoint or "").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CompressError(
            f"--nnodes {args.nnodes}: give --rdzv-endpoint HOST:PORT (node 0's address, which "
            f"every machine reaches, and a free port), not {args.rdzv_endpoint!r}"
        )
    run_id = args.rdzv_id or Path(args.recipe).stem
    return [
        f"--nnodes={args.nnodes}",
        f"--node-rank={args.node_rank}",
        f"--nproc-per-node={args.nproc}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={args.rdzv_endpoint}",
        f"--rdzv-id={run_id}",
    ]


def launch_torchrun(args, argv: list[str]) -> int:
    """Run this command again under torchrun: ``--nproc`` processes on this machine, on each of
    ``--nnodes`` machines (each process gets the same options, ``--backend`` and
    ``--dist-timeout`` included), after checking that each NCCL process can have a GPU of its
    own."""
    import os

    from compress import dist
    from compress.cli import main_guard

    options: list[str] = []

    def check() -> int:
        from compress.errors import CompressError

        options.extend(rendezvous(args))
        problem = dist.gpu_problem(args.nproc, dist.chosen_backend(args.backend))
        if problem:
            raise CompressError(f"--nproc {args.nproc}: {problem}")
        return 0

    if main_guard(check):
        return 2
    command = [sys.executable, "-m", "torch.distributed.run", *options]
    command += ["-m", "compress", *_without_launcher_options(argv)]
    print("launching: " + " ".join(command[1:]), file=sys.stderr)
    os.execv(sys.executable, command)
    return 0  # not reached


def parse_command(argv: list[str], prog: str = "lert-compress") -> argparse.Namespace:
    """The parsed command line (overrides given after options joined to the rest); a bad
    option exits with argparse's usage line."""
    parser = _parser(prog)
    args, extra = parser.parse_known_args(argv)
    takes_overrides = args.command in ("run", "bench", "check", "fit-worker")
    stray = [x for x in extra if x.startswith("-") or "=" not in x or not takes_overrides]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if takes_overrides:
        args.overrides += extra  # overrides given after options
    return args


def check_recipe(name: str, overrides: list[str]):
    """The recipe as ``run`` would read it, validated with everything that can be known before
    any work (options, steps, inputs, the models' limits); nothing is written."""
    from compress.recipe import load_recipe

    return load_recipe(recipe_path(name), overrides)


def main(argv: list[str] | None = None, prog: str = "lert-compress") -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["eval"]:
        from compress.eval.__main__ import main as eval_main

        return eval_main(argv[1:], prog=f"{prog} eval")
    args = parse_command(argv, prog)
    if args.command == "run" and (args.nproc != 1 or args.nnodes != 1):
        return launch_torchrun(args, argv)
    setup_logging(args.verbose)

    def dispatch() -> int:
        if args.command == "run":
            from compress import dist
            from compress.runner import run_recipe

            dist.init(args.backend, args.dist_timeout)
            if not dist.is_main():  # the first process logs for all
                logging.getLogger().setLevel(logging.WARNING)
            if args.rehearse:
                from compress.rehearse import rehearse

                root = rehearse(
                    check_recipe,
                    args.recipe,
                    args.overrides,
                    args.out,
                    args.rehearse_steps,
                    evaluate=not args.no_eval,
                )
            else:
                recipe = check_recipe(args.recipe, args.overrides)
                root = run_recipe(recipe, args.out, evaluate=not args.no_eval)
            if dist.is_main():
                report = "" if args.no_eval else f" (report: {root / 'report.md'})"
                print(f"done: {root}{report}")
        elif args.command == "check":
            from compress.runner import refuse_machine_problems

            recipe = check_recipe(args.recipe, args.overrides)
            refuse_machine_problems(recipe)
            steps = ", ".join(f"{s.name} ({s.stage})" for s in recipe.steps)
            print(f"ok: {recipe.name}: {len(recipe.steps)} steps: {steps}")
        elif args.command == "report":
            from compress.eval.report import render_report
            from compress.lock import artifacts_lock

            with artifacts_lock(args.artifacts):
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
            heads = "; ".join(report["extra_heads"]) or "none"
            kept = "kept in extra_heads.safetensors" if report["extra_heads_kept"] else "dropped"
            print(
                f"converted {report['converted']} tensors to {args.out_dir} "
                f"({report['architecture']}); skipped {report['skipped_optimizer']} optimizer "
                f"variables; heads that are not BERT's, {kept}: {heads}"
            )
        elif args.command == "fit-worker":
            from compress.fit_worker import fit_worker

            recipe = check_recipe(args.recipe, args.overrides)
            trained = fit_worker(
                recipe, args.step, args.storage, args.artifacts, args.out, args.wait
            )
            print(f"fit-worker: the search is over; this worker trained {trained} candidates")
        elif args.command == "bench":
            from compress.bench import write_bench

            recipe = check_recipe(args.recipe, args.overrides)
            out = write_bench(
                recipe,
                args.artifacts,
                args.out,
                args.step,
                args.texts,
                args.target,
                args.batch_sizes,
            )
            print(
                f"bench folder: {out}\n  copy it to the target and run there (see README.txt):"
                f"\n  pip install -r requirements.txt && python run_bench.py --threads 2"
            )
        elif args.command == "stages":
            print_stages(args.name)
        return 0

    return main_guard(dispatch)


def print_stages(name: str | None) -> None:
    """Every stage with its summary, or one stage's options from its config schema."""
    from compress.cli import options_text
    from compress.errors import RecipeError
    from compress.stages import CATALOGUE
    from compress.validation import suggest

    if name is None:
        for stage_name, st in CATALOGUE.items():
            print(f"{stage_name:10s} {st.summary}")
        print("\nOptions of one stage: stages NAME")
        return
    if name not in CATALOGUE:
        raise RecipeError(f"unknown stage {name!r}{suggest(name, list(CATALOGUE))}")
    st = CATALOGUE[name]
    print(f"{name}: {st.summary}\n")
    for label, config in st.variants.items() or [(None, st.config)]:
        if label is not None:
            print(f"{st.discriminator}: {label} - {(config.__doc__ or '').strip().splitlines()[0]}")
        print("\n".join(options_text(config)) + "\n")


if __name__ == "__main__":
    sys.exit(main(prog="python -m compress"))
