"""The fit stage: budget and space validation, shape-first probes, a search that resumes and is
shared by two workers, and the winner as a step output the evaluator and report use."""

import json
import subprocess
import sys

import pytest

from compress.errors import RecipeError
from compress.manifest import Manifest
from compress.recipe import parse_recipe
from compress.runner import run_recipe
from tests.conftest import tiny_recipe

FIT = {
    "name": "fit",
    "stage": "fit",
    "budget": {"max_drop": 60, "threads": 1},
    "space": {"layers": [1, 2], "heads": [1, 2], "ffn": [64], "runtimes": ["onnx-fp32"]},
    "recover": {"method": "distill", "epochs": 1, "batch_size": 16, "lr": 3e-3},
    "probe": {"warmup": 1, "repeats": 5},
}


def fit_recipe(files, **options) -> dict:
    recipe = tiny_recipe(files)
    recipe["steps"][0]["epochs"] = 3
    step = json.loads(json.dumps(FIT))
    for key, value in options.items():
        if isinstance(value, dict) and isinstance(step.get(key), dict):
            step[key] |= value
        else:
            step[key] = value
    recipe["steps"].append(step)
    return recipe


def _problems(files, **options) -> str:
    with pytest.raises(RecipeError) as err:
        parse_recipe(fit_recipe(files, **options))
    return str(err.value)


def test_stages_fit_documents_every_option():
    out = subprocess.run(
        [sys.executable, "-m", "compress", "stages", "fit"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for option in (
        "budget:",
        "latency_ms:",
        "batch_size:",
        "size_mb:",
        "max_drop:",
        "LOWER bound",
        "reference:",
        "space:",
        "layers:",
        "heads:",
        "ffn:",
        "vocabulary:",
        "runtimes:",
        "objective:",
        "max_trials:",
        "recover:",
        "workers:",
    ):
        assert option in out, option


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"space": {"heads": []}}, "space.heads is empty"),
        ({"space": {"runtimes": []}}, "space.runtimes is empty"),
        ({"space": {"heads": [3]}}, "space.heads [3]: does not divide the width 64"),
        ({"space": {"layers": [3]}}, "space.layers [3]: more than"),
        ({"budget": {"latency_ms": 5}}, "budget.batch_size: a latency budget needs"),
        ({"budget": {"reference": "nope"}}, "budget.reference: 'nope' is not an earlier step"),
        ({"space": {"runtimes": ["tflite"]}}, "runtimes"),
    ],
)
def test_bad_budget_or_space_is_refused_at_validation(cls_files, options, message):
    assert message in _problems(cls_files, **options)


def _trained(root, entry) -> list[str]:
    """Every candidate a worker trained, one per training run (the step's trials/ files)."""
    return [json.loads(p.read_text())["key"] for p in (root / entry.dir / "trials").glob("*.json")]


def test_fit_chooses_within_the_budget_and_reports_it(tmp_path, cls_files):
    # the two-layer, two-head shape is over this size when probed: never trained
    recipe = fit_recipe(cls_files, budget={"size_mb": 0.3})
    root = run_recipe(parse_recipe(recipe), tmp_path / "a")
    entry = Manifest(root).steps["fit"]
    details = entry.details
    rows = {r["key"]: r for r in details["candidates"]}
    assert len(rows) == 4 and details["probed"] == 4
    over = [k for k, r in rows.items() if r["status"] == "over size"]
    assert over and all(rows[k]["size_mb"] > 0.3 for k in over)
    assert all("dev_score" not in rows[k] for k in over)
    winner = rows[details["winner"]]
    assert winner["status"] == "chosen" and winner["size_mb"] <= 0.3
    assert entry.kind == "onnx" and entry.output.endswith("model.onnx")
    assert (root / entry.dir / "study.db").is_file()
    report = json.loads((root / "report.json").read_text())
    assert report["fit"]["fit"]["winner"] == details["winner"]
    md = (root / "report.md").read_text()
    assert "## Fit" in md and details["winner"] in md and "over size" in md


def test_a_killed_fit_resumes_without_rerunning_finished_trials(tmp_path, cls_files, monkeypatch):
    import importlib

    import compress.fitting

    fit_stage = importlib.import_module("compress.stages.fit")  # the module, not the stage

    real_train, real_probe = fit_stage.train_candidate, compress.fitting.probe_artifacts
    trained, probed = [], []

    def train(plan, candidate):
        if len(trained) == 1 and not resumed:
            raise KeyboardInterrupt  # killed while training the second candidate
        trained.append(candidate.key)
        return real_train(plan, candidate)

    def probe(*args, **kwargs):
        probed.append(1)
        return real_probe(*args, **kwargs)

    monkeypatch.setattr(fit_stage, "train_candidate", train)
    monkeypatch.setattr(compress.fitting, "probe_artifacts", probe)
    recipe = parse_recipe(fit_recipe(cls_files))
    resumed = False
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, tmp_path / "a", evaluate=False)
    assert len(trained) == 1 and len(probed) == 1
    first = trained[0]
    resumed = True
    root = run_recipe(recipe, tmp_path / "a", evaluate=False)
    assert len(probed) == 1  # the probes were kept
    assert trained.count(first) == 1 and len(trained) == 4  # the rest, once each
    entry = Manifest(root).steps["fit"]
    assert sorted(_trained(root, entry)) == sorted(set(trained) - {first})
    assert entry.details["trained"] == 4


def test_two_workers_share_one_study_and_train_each_candidate_once(tmp_path, cls_files):
    import optuna

    recipe = fit_recipe(cls_files, workers=2)
    root = run_recipe(parse_recipe(recipe), tmp_path / "a", evaluate=False)
    entry = Manifest(root).steps["fit"]
    runs = _trained(root, entry)
    assert len(runs) == len(set(runs)) == 4  # every candidate trained, none twice
    pids = {json.loads(p.read_text())["worker"] for p in (root / entry.dir / "trials").iterdir()}
    study = optuna.load_study(
        study_name="fit", storage=f"sqlite:///{root / entry.dir / 'study.db'}"
    )
    done = [t.user_attrs["key"] for t in study.trials if t.state.name == "COMPLETE"]
    assert sorted(done) == sorted(runs)
    assert len(pids) == 2, "both workers took trials"
