"""The layering the design promises, read from the source: registry <- stages <- recipe <-
runner, core never imports the evaluator, and the evaluator never imports stages or the runner."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# the only places that may call the evaluator: the runner and the command line, and the fit
# stage, which chooses by the evaluator's own measurements (its timing loop, sizes and paired
# intervals), so that what it chose by is what the report shows; and compress/signal.py, which
# judges every other dev-scored choice (KD trials, select) against the trivial predictor by the
# evaluator's paired interval, for the same reason
EVAL_CALLERS = {
    "compress/signal.py",
    "compress/runner.py",
    "compress/__main__.py",
    "compress/fit/artifacts.py",
    "compress/fit/int8.py",
    "compress/fit/probing.py",
    "compress/fit/training.py",
    "compress/stages/fit.py",
    "compress/bench.py",
}


def imports(path: Path, *, typing_only: bool = False) -> set[str]:
    """Modules ``path`` imports (at run time; ``typing_only`` adds TYPE_CHECKING imports)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hidden: set[int] = set()
    if not typing_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                hidden |= {id(n) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", modules("compress"), ids=rel)
def test_core_and_stages_never_import_the_evaluator(path):
    if rel(path) in EVAL_CALLERS:
        return
    bad = {m for m in imports(path) if m == "compress.eval" or m.startswith("compress.eval.")}
    assert not bad, f"{rel(path)} imports the evaluator: {bad}"


def test_registry_is_a_leaf():
    own = {m for m in imports(ROOT / "compress/registry.py") if m.startswith("compress")}
    assert own == set()


@pytest.mark.parametrize("path", modules("compress/stages"), ids=rel)
def test_stages_do_not_import_recipe_or_runner(path):
    bad = {m for m in imports(path) if m in ("compress.recipe", "compress.runner")}
    assert not bad, f"{rel(path)} imports {bad}"


# the layers above the stages: the recipe (which reads the catalogue), the runner and the
# command line; everything else in compress/ is below them and never imports a stage
ABOVE_STAGES = {
    "compress/recipe.py",
    "compress/runner.py",
    "compress/rehearse.py",
    "compress/__main__.py",
}


@pytest.mark.parametrize("path", modules("compress"), ids=rel)
def test_nothing_below_the_stages_imports_them(path):
    """One-way imports: a stage uses the core (compress/*.py, compress/fit/, compress/tasks/),
    never the other way round, at module level or inside a function."""
    if rel(path) in ABOVE_STAGES or rel(path).startswith("compress/stages/"):
        return
    bad = {m for m in imports(path, typing_only=True) if m.startswith("compress.stages")}
    assert not bad, f"{rel(path)} imports {bad}: move what it needs below compress/stages/"


# the fit's rooms in the order one fit goes through them: each may use those before it only
FIT_ROOMS = ["space", "artifacts", "probing", "int8", "training", "shared", "study"]


@pytest.mark.parametrize("room", FIT_ROOMS)
def test_the_fit_s_rooms_import_only_those_before_them(room):
    path = ROOT / "compress" / "fit" / f"{room}.py"
    used = {
        m.removeprefix("compress.fit.")
        for m in imports(path, typing_only=True)
        if m.startswith("compress.fit.")
    }
    later = used - set(FIT_ROOMS[: FIT_ROOMS.index(room)])
    assert not later, f"compress/fit/{room}.py imports {sorted(later)}, a later room"


def test_every_fit_room_is_listed():
    rooms = {p.stem for p in (ROOT / "compress" / "fit").glob("*.py")} - {"__init__"}
    assert rooms == set(FIT_ROOMS)
    doc = (ROOT / "compress" / "fit" / "__init__.py").read_text(encoding="utf-8")
    assert [r for r in FIT_ROOMS if f"``{r}``" in doc] == FIT_ROOMS


# compress/ and eval/ in rooms a reader can take in: no file much over 400 lines
MAX_LINES = 450


@pytest.mark.parametrize("path", modules("compress") + modules("eval"), ids=rel)
def test_no_file_is_over_the_size_of_a_room(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{rel(path)} has {lines} lines: split it (at most {MAX_LINES})"


def test_recipe_does_not_import_the_runner():
    assert "compress.runner" not in imports(ROOT / "compress/recipe.py")


@pytest.mark.parametrize("path", modules("eval"), ids=rel)
def test_evaluator_uses_core_only(path):
    bad = {
        m
        for m in imports(path)
        if m.startswith(("compress.stages", "compress.runner", "compress.distillation"))
    }
    assert not bad, f"{rel(path)} imports {bad}"


def test_the_evaluator_installs_inside_the_project_s_name():
    """The package index has unrelated `eval` and `compress` distributions; ours puts only
    `compress` at the top of site-packages, the evaluator as compress.eval."""
    import importlib.metadata
    import importlib.util

    dist = importlib.metadata.distribution("lert-compress")
    assert (dist.read_text("top_level.txt") or "").split() == ["compress"]
    spec = importlib.util.find_spec("compress.eval.report")
    assert spec is not None and Path(spec.origin) == ROOT / "eval" / "report.py"
    scripts = {e.name: e.value for e in dist.entry_points if e.group == "console_scripts"}
    assert scripts == {"lert-compress": "compress.__main__:main"}


@pytest.mark.slow
def test_the_wheel_holds_no_top_level_eval(tmp_path):
    import subprocess
    import sys
    import zipfile

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("lert_compress-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith("eval/")]
    assert "compress/eval/report.py" in names and "compress/recipes/demo.yaml" in names
    top = next(n for n in names if n.endswith("top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top).decode().split() == ["compress"]


@pytest.mark.parametrize(
    "path",
    [*modules("compress"), *modules("eval"), *modules("tests"), *modules("benchmarks")],
    ids=rel,
)
def test_nothing_imports_a_top_level_eval(path):
    bad = {m for m in imports(path, typing_only=True) if m == "eval" or m.startswith("eval.")}
    assert not bad, f"{rel(path)} imports {bad}: use compress.eval"
