"""Every command the project ships resolves and validates on a CPU, without training.

The README's and docs/'s command lines, scripts/*.sh and the commands in recipe comments
(``shipped_commands``), and every Makefile target: a ``make`` line is expanded with ``make -n``
and its commands checked in turn; a recipe run (``lert-compress``, ``python -m compress``,
torchrun) is parsed by the real parsers and its recipe and overrides validated as ``run`` would;
a benchmark or the bench folder's runner has its arguments parsed by its own parser; a pytest line
selects tests; a pin matches the Makefile's. A renamed step, key, file or option fails here, not
on the first GPU that runs ``scripts/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import ast
import functools
import io
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from tests.shipped_commands import ROOT, Shipped, all_commands

SHIPPED = all_commands()
# a word standing for what a person fills in: nothing to validate beyond its place
PLACEHOLDERS = {"NAME", "PATH", "PLACEHOLDER", "...", "HOST:29500"}
RECIPES = sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))
# files an earlier command of the same document writes (a bench folder's profile.json, made on
# the target by its run_bench.py): a later command may name them before they exist here
MADE: set[str] = set()


class Invalid(Exception):
    """A shipped command that would fail: the message says why."""


class _Parsed(Exception):
    def __init__(self, namespace):
        self.namespace = namespace


def parsed_by(run, argv: list[str]) -> argparse.Namespace:
    """What ``run()``'s own argparse parser makes of ``argv``, stopping right after parsing (no
    work done); a rejected argument is Invalid with argparse's message."""
    real = argparse.ArgumentParser.parse_args
    real_known = argparse.ArgumentParser.parse_known_args

    def restore():  # parse_args calls parse_known_args: the real one from here on
        argparse.ArgumentParser.parse_args = real
        argparse.ArgumentParser.parse_known_args = real_known

    def parse(self, args=None, namespace=None):
        restore()
        raise _Parsed(real(self, argv if args is None else args, namespace))

    def parse_known(self, args=None, namespace=None):
        restore()
        raise _Parsed(real_known(self, argv if args is None else args, namespace))

    errors = io.StringIO()
    old_argv, old_err = sys.argv, sys.stderr
    argparse.ArgumentParser.parse_args = parse
    argparse.ArgumentParser.parse_known_args = parse_known
    sys.argv, sys.stderr = ["prog", *argv], errors
    try:
        run()
    except _Parsed as done:
        return done.namespace
    except SystemExit as exc:
        raise Invalid(f"rejected: {errors.getvalue().strip() or exc}") from None
    finally:
        restore()
        sys.argv, sys.stderr = old_argv, old_err
    raise Invalid("its parser was never reached")


def check_cli(args: list[str]) -> None:
    """``lert-compress ARGS``: parsed by the real parser, the recipe and overrides validated."""
    from compress.__main__ import check_recipe, main, parse_command
    from compress.errors import RecipeError

    if args[:1] == ["eval"]:
        from compress.eval.__main__ import main as eval_main

        parsed_by(lambda: eval_main(args[1:]), args[1:])
        return
    if any(x in PLACEHOLDERS for x in args) and args[:1] != ["run"]:
        return  # `python -m compress ...`
    errors = io.StringIO()
    old = sys.stderr
    sys.stderr = errors
    try:
        parsed = parse_command(args)
    except SystemExit:
        raise Invalid(f"rejected: {errors.getvalue().strip()}") from None
    finally:
        sys.stderr = old
    if parsed.command in ("run", "bench", "check", "fit-worker"):
        if parsed.recipe in PLACEHOLDERS:
            return
        overrides = [_database_checked(x) for x in parsed.overrides]
        made = [x for x in overrides if x.partition("=")[2] in MADE]
        try:
            check_recipe(parsed.recipe, [x for x in overrides if x not in made])
            if made:  # the key must still be one the recipe has
                check_recipe(parsed.recipe, [f"{x.partition('=')[0]}=null" for x in made])
            if parsed.command == "fit-worker":
                from compress.fit_worker import fit_step

                _database_checked(f"--storage={parsed.storage}")
                fit_step(check_recipe(parsed.recipe, overrides), parsed.step)
        except RecipeError as exc:
            raise Invalid(str(exc)) from None
    elif parsed.command in ("stages", "tasks"):
        with redirect_stdout(io.StringIO()):
            if main(args) != 0:
                raise Invalid("exits non-zero")


def _database_checked(override: str) -> str:
    """A fit study's database in a shipped command (``...storage=URL``): a URL of a backend
    the project's extras give a driver for, checked for its form; the recipe is then checked
    with a local SQLite file in its place (the team's server is not reachable from here)."""
    key, _, url = override.partition("=")
    if not key.endswith("storage"):
        return override
    from sqlalchemy.engine import make_url

    try:
        backend = make_url(url).get_backend_name()
    except Exception as exc:  # noqa: BLE001
        raise Invalid(f"{url!r} is not a database URL: {exc}") from None
    if backend not in ("postgresql", "sqlite"):
        raise Invalid(f"{url!r}: no extra installs a driver for {backend}")
    return f"{key}=sqlite:///{tempfile.gettempdir()}/shipped-command-check.db"


def check_torchrun(args: list[str]) -> None:
    from torch.distributed.run import get_args_parser

    try:
        parsed = get_args_parser().parse_args(args)
    except SystemExit:
        raise Invalid("torchrun rejects its options") from None
    if not parsed.module or parsed.training_script != "compress":
        raise Invalid("torchrun does not run -m compress")
    check_cli(list(parsed.training_script_args))


def check_pytest(args: list[str]) -> None:
    """Collected, not run: the selection must hold at least one test."""
    if not _collected(tuple(x for x in args if x != "-q")):
        raise Invalid("selects no test")


@functools.cache
def _collected(args: tuple[str, ...]) -> int:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if done.returncode not in (0, 5):  # 5: nothing collected
        raise Invalid(f"pytest fails to collect: {done.stdout[-400:]}{done.stderr[-400:]}")
    found = re.search(r"(\d+)(?:/\d+)? tests? collected", done.stdout)
    return int(found.group(1)) if found else 0


def check_python(args: list[str]) -> None:
    """``python ARGS``: a module, a file with its arguments, or a one-line program."""
    if args[:2] == ["-m", "compress"]:
        return check_cli(args[2:])
    if args[:2] == ["-m", "pytest"]:
        return check_pytest(args[2:])
    if args[:2] == ["-m", "torch.distributed.run"]:
        return check_torchrun(args[2:])
    if args[:1] == ["-c"]:
        return check_manifest_reader(args[1])
    script = args[0]
    if script == "run_bench.py":  # written into a bench folder by `lert-compress bench`
        from compress import device_runner

        parsed_by(lambda: device_runner.main(args[1:]), args[1:])
        return
    path = ROOT / script
    if not path.is_file():
        raise Invalid(f"{script} does not exist")
    parsed_by(lambda: runpy.run_path(str(path), run_name="__main__"), args[1:])


def check_manifest_reader(code: str) -> None:
    """gpu_check.sh's one-liner reads the manifest: the keys it names must be what it holds."""
    from compress.manifest import StepEntry

    tree = ast.parse(code)
    keys = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)} - {"steps"}
    missing = sorted(k for k in keys if isinstance(k, str) and k not in StepEntry.model_fields)
    if missing:
        raise Invalid(f"reads manifest step keys that do not exist: {missing}")
    if '["steps"]' not in code:
        raise Invalid("does not read the manifest's steps")


@functools.cache
def _make_pins() -> dict[str, str]:
    return dict(re.findall(r"pip install -q (?:--no-deps )?([\w-]+)==(\S+)", _makefile()))


def _makefile() -> str:
    return (ROOT / "Makefile").read_text(encoding="utf-8")


def check_pip(args: list[str]) -> None:
    if args[:1] != ["install"]:
        raise Invalid("not a pip install")
    words = [x for x in args[1:] if x not in ("--no-deps", "-q", "-e")]
    if words[:1] == ["-r"]:
        if "requirements.txt" not in (ROOT / "compress" / "bench.py").read_text():
            raise Invalid("no bench folder holds a requirements.txt")
        return
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for word in words:
        if word.startswith("."):
            wanted = re.findall(r"[\w-]+", word.partition("[")[2])
            unknown = [x for x in wanted if x not in extras]
            if unknown:
                raise Invalid(f"pyproject.toml has no extra {unknown}")
            continue
        name, _, version = word.partition("==")
        pinned = _make_pins().get(name)
        if pinned != version:
            raise Invalid(f"{name}=={version} but the Makefile installs {name}=={pinned}")


def make_lines(args: list[str]) -> list[list[str]]:
    """The commands ``make ARGS`` would run (``make -n``), each as words."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "recipe", "ARGS", "OUT", "NPROC"}
    }
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode:
        raise Invalid(f"make -n fails: {done.stderr.strip()}")
    return [shlex.split(x) for x in done.stdout.splitlines() if x.strip()]


def check_make(args: list[str]) -> None:
    for line in make_lines(args):
        while line and re.fullmatch(r"[A-Z_]+=\S*", line[0]):
            line = line[1:]
        head = line[0]
        if head.endswith("/lert-compress"):
            check_cli(line[1:])
        elif head.endswith("/python") and line[1:3] in (["-m", "pytest"], ["-m", "compress"]):
            check_python(line[1:])
        elif head == "bash":
            check_command(line)


def check_dashboard(args: list[str]) -> None:
    """``optuna-dashboard sqlite:///artifacts/RECIPE/NN_STEP/study.db``: installed by the
    dashboard extra, and pointed at a fit step's study (the step's path is checked by
    test_docs_paths_into_a_run_name_a_step_of_that_recipe)."""
    from compress.fit.space import STUDY

    if shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent)) is None:
        raise Invalid("optuna-dashboard is not installed by the dev extra")
    url = args[0] if args else ""
    if url.startswith("postgresql://"):  # a shared search's database
        _database_checked(f"storage={url}")
        return
    match = re.fullmatch(r"sqlite:///artifacts/([\w-]+)/\d\d_([\w-]+)/" + STUDY, url)
    if match is None:
        raise Invalid(f"{url!r} is not a run's sqlite:///artifacts/RECIPE/NN_STEP/{STUDY}")
    from compress.recipe import load_recipe

    recipe, step = match.groups()
    if load_recipe(ROOT / "recipes" / f"{recipe}.yaml").step(step).stage != "fit":
        raise Invalid(f"{recipe}'s step {step} is not a fit step: it has no study")


def check_command(argv: list[str]) -> None:
    """Raise Invalid when the shipped command would fail before its work starts."""
    head, rest = Path(argv[0]).name, list(argv[1:])
    if head == "make":
        check_make(rest)
    elif head == "lert-compress":
        check_cli(rest)
    elif head == "torchrun":
        check_torchrun(rest)
    elif head.startswith("python") or argv[0] in ("$PY", '"$PY"'):
        check_python(rest)
    elif head == "pytest":
        check_pytest(rest)
    elif head == "pip":
        check_pip(rest)
    elif head == "optuna-dashboard":
        check_dashboard(rest)
    elif head == "bash":
        if not (ROOT / rest[0]).is_file():
            raise Invalid(f"{rest[0]} does not exist")
    else:
        raise Invalid(f"no check knows the command {head!r}")


def test_the_project_ships_commands_of_every_kind():
    heads = {Path(c.argv[0]).name for c in SHIPPED}
    assert {"make", "lert-compress", "torchrun", "pip"} <= heads, heads
    assert any(c.where.startswith("scripts/gpu_check.sh") for c in SHIPPED)
    assert any(c.where.startswith("recipes/") for c in SHIPPED)


@pytest.mark.parametrize("shipped", SHIPPED, ids=[c.where for c in SHIPPED])
def test_shipped_command_resolves(shipped: Shipped, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "MADE", made_before(shipped))
    try:
        check_command(list(shipped.argv))
    except Invalid as exc:
        pytest.fail(f"{shipped}\n  would fail: {exc}", pytrace=False)


def made_before(shipped: Shipped) -> set[str]:
    """The profiles that the bench folders of earlier commands in the same file come back with."""
    here, line = shipped.where.rsplit(":", 1)
    made = set()
    for other in SHIPPED:
        there, at = other.where.rsplit(":", 1)
        argv = list(other.argv)
        if there == here and int(at) < int(line) and argv[1:2] == ["bench"] and "--out" in argv:
            made.add(f"{argv[argv.index('--out') + 1]}/profile.json")
    return made


def _targets() -> list[str]:
    phony = re.search(r"^\.PHONY:(.*)$", _makefile(), re.M)
    assert phony, "the Makefile declares its targets .PHONY"
    return phony.group(1).split()


@pytest.mark.parametrize("target", _targets())
def test_every_make_target_has_a_rule_that_resolves(target):
    assert re.search(rf"^{re.escape(target)}:", _makefile(), re.M), f"no rule for {target}"
    try:
        check_make([target])
    except Invalid as exc:
        pytest.fail(f"make {target}: {exc}", pytrace=False)


@pytest.mark.parametrize("recipe", RECIPES)
def test_make_runs_every_recipe(recipe):
    """``make recipe=NAME`` for each recipe shipped (the README names it with NAME)."""
    lines = make_lines([f"recipe={recipe}"])
    assert [x[1:3] for x in lines if x[0].endswith("/lert-compress")] == [["run", recipe]]
    check_make([f"recipe={recipe}"])


def _gpu_check_run() -> list[str]:
    return next(
        list(c.argv)
        for c in SHIPPED
        if c.where.startswith("scripts/gpu_check.sh") and "torch.distributed.run" in c.argv
    )


@pytest.mark.parametrize(
    "change, error",
    [
        (("steps.fit.recover.max_steps=10", "steps.pruned.recover.max_steps=10"), "pruned"),
        (("steps.teacher.max_steps=20", "steps.teacher.max_stepz=20"), "max_stepz"),
        (("--no-eval", "--no-evaluate"), "--no-evaluate"),
        (("compress", "compres"), "-m compress"),
    ],
)
def test_a_shipped_command_naming_what_is_not_there_fails(change, error):
    """The check above is not one that passes everything: gpu_check.sh's DDP line with a step
    (as it read before the demo's step became fit), a key, an option or its launcher wrong."""
    argv = _gpu_check_run()
    old, new = change
    at = argv.index(old)
    broken = [*argv[:at], new, *argv[at + 1 :]]
    check_command(argv)
    with pytest.raises(Invalid, match=re.escape(error)):
        check_command(broken)


def test_a_missing_benchmark_or_a_pin_that_drifted_fails():
    with pytest.raises(Invalid, match="does not exist"):
        check_command([".venv/bin/python", "benchmarks/renamed.py"])
    with pytest.raises(Invalid, match="unrecognized arguments"):
        check_command([".venv/bin/python", "benchmarks/lert_shapes.py", "--no-such-option"])
    with pytest.raises(Invalid, match="Makefile installs torch"):
        check_command(["pip", "install", "torch==2.0.0"])
    with pytest.raises(Invalid, match="selects no test"):
        check_command(["pytest", "tests/test_pretrain.py", "-k", "no_such_test_name"])
    check_command(["optuna-dashboard", "sqlite:///artifacts/demo/05_fit/study.db"])
    with pytest.raises(Invalid, match="step teacher is not a fit step"):
        check_command(["optuna-dashboard", "sqlite:///artifacts/demo/01_teacher/study.db"])
    with pytest.raises(Invalid, match="is not a run's"):
        check_command(["optuna-dashboard", "sqlite:///artifacts/demo/05_fit/fit.json"])


def test_docs_paths_into_a_run_name_a_step_of_that_recipe():
    """A path the README or docs/ give into a run (``artifacts/RECIPE/NN_STEP/...``) names the
    step the runner writes there: the recipe's step NN, called STEP (a renamed or reordered
    step breaks this, not a user's copy of the snippet)."""
    from compress.recipe import load_recipe

    found = 0
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        for recipe, number, step in re.findall(r"artifacts/([\w-]+)/(\d\d)_([\w-]+)/", text):
            steps = load_recipe(ROOT / "recipes" / f"{recipe}.yaml").steps
            where = f"{doc.relative_to(ROOT)}: artifacts/{recipe}/{number}_{step}/"
            assert int(number) <= len(steps), f"{where}: {recipe} has {len(steps)} steps"
            assert steps[int(number) - 1].name == step, f"{where}: step {number} is not {step}"
            found += 1
    assert found  # the README shows where the fit's folder is
