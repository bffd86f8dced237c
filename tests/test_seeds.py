"""``seeds:``: every step repeated per seed, scores summarised as mean and sd per variant."""

import json
import statistics

import pytest
from compress.eval.seeds import seed_summary

from compress.errors import RecipeError
from compress.recipe import parse_recipe
from compress.runner import run_recipe
from tests.conftest import kd_recipe, metric_row, metrics_of, tiny_recipe


def _metrics(scores: dict[str, float]):
    return metrics_of([metric_row(v, score) for v, score in scores.items()], "teacher")


def test_seed_summary_by_hand():
    runs = {
        1: _metrics({"teacher": 0.80, "kd": 0.78, "nokd": 0.75}),
        2: _metrics({"teacher": 0.82, "kd": 0.77, "nokd": 0.78}),
        3: _metrics({"teacher": 0.78, "kd": 0.79, "nokd": 0.74, "only-here": 0.5}),
    }
    rows, pairs = seed_summary(runs, "teacher", [("kd", "nokd")])
    by = {r.variant: r for r in rows}
    assert set(by) == {"teacher", "kd", "nokd"}  # a variant missing from a run is left out
    assert by["kd"].scores == [0.78, 0.77, 0.79]
    assert by["kd"].mean == pytest.approx(0.78) and by["kd"].sd == pytest.approx(0.01)
    assert by["kd"].deltas == pytest.approx([-0.02, -0.05, 0.01])
    assert by["kd"].delta_sd == pytest.approx(statistics.stdev([-0.02, -0.05, 0.01]), abs=1e-5)
    assert by["teacher"].delta_mean is None
    (pair,) = pairs
    assert pair.differences == pytest.approx([0.03, -0.01, 0.05]) and pair.kd_better == 2
    assert pair.mean == pytest.approx(0.07 / 3, abs=1e-5)


def test_seeds_must_differ(cls_files):
    with pytest.raises(RecipeError, match=r"seeds: .*repeats a seed"):
        parse_recipe(tiny_recipe(cls_files, seeds=[3, 3]))


def test_seeds_repeat_every_step_and_report_the_spread(tmp_path, cls_files):
    raw = {**kd_recipe(cls_files), "seeds": [5, 6]}
    raw["evaluate"]["latency"] = False
    root = run_recipe(parse_recipe(raw), tmp_path / "art")
    repeat = root / "seeds" / "seed-6"
    main_entry = json.loads((root / "manifest.json").read_text())["steps"]["teacher"]
    repeat_entry = json.loads((repeat / "manifest.json").read_text())["steps"]["teacher"]
    # the repeat really ran with its own seed: other weights, same recipe otherwise
    assert repeat_entry["config_hash"] == main_entry["config_hash"]
    assert repeat_entry["digest"] != main_entry["digest"]
    report = json.loads((root / "report.json").read_text())
    repeat_metrics = json.loads((repeat / "eval" / "metrics.json").read_text())
    assert all(not r["latency_ms"] for r in repeat_metrics["rows"])  # scored, not timed
    rows = {r["variant"]: r for r in report["seed_rows"]}
    assert set(rows) == {"teacher", "student", "no-kd"}
    main_scores = {r["variant"]: r["score"] for r in report["rows"]}
    repeat_scores = {r["variant"]: r["score"] for r in repeat_metrics["rows"]}
    for name, row in rows.items():
        assert row["seeds"] == [5, 6]
        assert row["scores"] == [main_scores[name], repeat_scores[name]]
        assert row["mean"] == pytest.approx(statistics.fmean(row["scores"]), abs=1e-5)
    (pair,) = report["seed_pairs"]
    assert (pair["kd"], pair["no_kd"]) == ("student", "no-kd")
    md = (root / "report.md").read_text()
    assert "### Across 2 seeds (5, 6)" in md and "KD `student` minus no-KD `no-kd`" in md

    # dropping a seed removes its run; the main run is reused as it is
    raw["seeds"] = [5]
    run_recipe(parse_recipe(raw), tmp_path / "art", evaluate=False)
    assert not repeat.exists()
    assert json.loads((root / "manifest.json").read_text())["steps"]["teacher"] == main_entry
