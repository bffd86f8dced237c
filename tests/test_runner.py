import json
import os
import subprocess
import sys

import pytest
import torch

from compress.errors import LockError
from compress.lock import artifacts_lock
from compress.recipe import parse_recipe
from compress.registry import Stage
from compress.runner import run_recipe
from compress.stages import CATALOGUE
from tests.conftest import TINY_SHAPE, tiny_recipe


def _two_steps(cls_files):
    steps = tiny_recipe(cls_files)["steps"] + [
        {"name": "more", "stage": "finetune", "epochs": 1, "batch_size": 16, "lr": 1e-3}
    ]
    return parse_recipe(tiny_recipe(cls_files, steps=steps))


def test_end_to_end_tiny_recipe(tmp_path, cls_files):
    raw = tiny_recipe(cls_files)
    raw["evaluate"]["memory"] = True
    recipe = parse_recipe(raw)
    root = run_recipe(recipe, tmp_path / "art")
    for name in (
        "recipe.resolved.yaml",
        "manifest.json",
        "eval/metrics.json",
        "report.md",
        "report.json",
        "pareto.png",
        "01_teacher/model/README.md",
    ):
        assert (root / name).exists(), name
    report = json.loads((root / "report.json").read_text())
    (row,) = report["rows"]
    assert report["metric"] == "accuracy" and report["hardware"]["threads"] >= 1
    assert row["variant"] == "teacher" and row["runtime"] == "pytorch"
    assert row["score"] >= 0.8  # the synthetic task is separable
    assert set(row["latency_ms"]) == {"b1", "b4"} and row["latency_ms"]["b1"]["p50"] > 0
    assert row["memory_mb"] > 0
    entry = json.loads((root / "manifest.json").read_text())["steps"]["teacher"]
    assert entry["status"] == "done" and entry["versions"]["torch"] and entry["seconds"] > 0


def test_saved_model_reloads_with_plain_transformers(tmp_path, cls_files):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from compress.data import collate, encode
    from compress.models import save_model
    from compress.tasks import load_task
    from compress.trainer import fit

    recipe = parse_recipe(tiny_recipe(cls_files))
    task = load_task(recipe.task)
    from compress.models import model_for_task

    model, tok = model_for_task(recipe.steps[0].config.model, task, tmp_path / "m")
    cfg = recipe.steps[0].config.model_copy(update={"epochs": 1})
    enc = {s: encode(task.splits[s], tok, task, 32) for s in ("train", "dev")}
    fit(model, task, enc, cfg, seed=0)
    save_model(model, tok, tmp_path / "m")
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m").eval()
    assert again.config.id2label == {0: "negative", 1: "positive"}
    batch = collate(
        encode(task.splits["test"][:8], AutoTokenizer.from_pretrained(tmp_path / "m"), task, 32),
        list(range(8)),
        with_labels=False,
    )
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, again(**batch).logits, atol=1e-6)


def test_resume_after_crash_skips_finished_steps(tmp_path, cls_files, monkeypatch):
    recipe = _two_steps(cls_files)
    real = CATALOGUE["finetune"]

    def crash_on_second(cfg, src, ctx):
        if ctx.step_name == "more":
            (ctx.step_dir / "half-written").write_text("x")
            raise RuntimeError("simulated crash")
        return real.fn(cfg, src, ctx)

    monkeypatch.setitem(CATALOGUE, "finetune", Stage("finetune", real.config, crash_on_second))
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_recipe(recipe, tmp_path / "art", evaluate=False)
    root = tmp_path / "art" / "tiny"
    manifest = json.loads((root / "manifest.json").read_text())["steps"]
    assert manifest["teacher"]["status"] == "done" and manifest["more"]["status"] == "failed"
    assert not (root / "02_more").exists() and not list(root.glob(".*partial"))
    assert not (root / ".lock.owner").exists()  # the lock was released
    teacher_weights = (root / "01_teacher/model/model.safetensors").stat().st_mtime_ns

    monkeypatch.setitem(CATALOGUE, "finetune", real)
    run_recipe(recipe, tmp_path / "art", evaluate=False)
    manifest = json.loads((root / "manifest.json").read_text())["steps"]
    assert manifest["more"]["status"] == "done" and (root / "02_more/model").is_dir()
    assert (root / "01_teacher/model/model.safetensors").stat().st_mtime_ns == teacher_weights


def test_changed_config_reruns_step_and_its_dependants(tmp_path, cls_files):
    recipe = _two_steps(cls_files)
    run_recipe(recipe, tmp_path / "art", evaluate=False)
    root = tmp_path / "art" / "tiny"
    before = json.loads((root / "manifest.json").read_text())["steps"]
    raw = recipe.resolved()
    raw["steps"][0]["lr"] = 2e-3
    run_recipe(parse_recipe(raw), tmp_path / "art", evaluate=False)
    after = json.loads((root / "manifest.json").read_text())["steps"]
    assert after["teacher"]["hash"] != before["teacher"]["hash"]
    assert after["more"]["hash"] != before["more"]["hash"]


def test_lock_refuses_second_run_and_survives_stale_files(tmp_path):
    with (
        artifacts_lock(tmp_path),
        pytest.raises(LockError, match=f"in use by another run \\(pid {os.getpid()}"),
        artifacts_lock(tmp_path),
    ):
        pass
    # what a full disk or a killed run leaves behind does not block the next run
    (tmp_path / ".lock").write_text("")
    (tmp_path / ".lock.owner").write_text("{garbage")
    with artifacts_lock(tmp_path):
        assert json.loads((tmp_path / ".lock.owner").read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".lock.owner").exists()


def test_lock_is_released_when_its_holder_is_killed(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path\n"
            "from compress.lock import artifacts_lock\n"
            "with artifacts_lock(Path(sys.argv[1])):\n"
            "    print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(LockError, match=f"pid {holder.pid}"), artifacts_lock(tmp_path):
        pass
    holder.kill()  # kill -9: no cleanup runs
    holder.wait()
    with artifacts_lock(tmp_path):
        pass


def test_cli_reports_bad_recipe_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: {name: snownlp-sentiment}\nsteps: [{stage: finetune, epoch: 1}]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "compress", "run", str(bad), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "epoch: unknown key; did you mean 'epochs'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_same_recipe_and_seed_give_the_same_model(tmp_path, cls_files):
    from safetensors.torch import load_file

    recipe = parse_recipe(
        tiny_recipe(
            cls_files,
            steps=[
                {
                    "name": "teacher",
                    "stage": "finetune",
                    "model": {"shape": TINY_SHAPE, "min_count": 1},
                    "max_steps": 3,
                    "batch_size": 16,
                }
            ],
        )
    )
    weights = []
    for run in ("a", "b"):
        root = run_recipe(recipe, tmp_path / run, evaluate=False)
        weights.append(load_file(root / "01_teacher/model/model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_hashes_ignore_options_left_at_their_defaults(cls_files):
    """Writing an option's default value changes nothing; a release adding an option neither."""
    from compress.lineage import step_hashes

    raw = tiny_recipe(cls_files)
    plain = step_hashes(parse_recipe(raw))
    raw["task"]["encoding"] = "utf-8"  # the default, written out
    raw["steps"][0]["weight_decay"] = 0.01
    assert step_hashes(parse_recipe(raw)) == plain
    raw["steps"][0]["weight_decay"] = 0.02
    assert step_hashes(parse_recipe(raw)) != plain
