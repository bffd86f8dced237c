import importlib
import json

import pytest
import torch

from compress.data import IGNORE, batches, encode
from compress.distillation import (
    build_distiller,
    make_adaptor,
    textbrewer_matches,
    uniform_layer_map,
)
from compress.errors import RecipeError
from compress.models import ShapeSpec, char_tokenizer, init_from_shape
from compress.recipe import parse_recipe
from compress.runner import run_recipe
from compress.stages.distill import DistillConfig
from compress.students import StudentConfig, cut_from_teacher
from compress.tasks import load_task
from tests.conftest import TINY_SHAPE, tiny_recipe


@pytest.mark.parametrize(
    "t,s,expected",
    [
        (24, 12, [(2 * i, i) for i in range(13)]),
        (12, 3, [(0, 0), (4, 1), (8, 2), (12, 3)]),
        (12, 4, [(0, 0), (3, 1), (6, 2), (9, 3), (12, 4)]),
        (24, 6, [(0, 0), (4, 1), (8, 2), (12, 3), (16, 4), (20, 5), (24, 6)]),
        (4, 3, [(0, 0), (1, 1), (3, 2), (4, 3)]),
    ],
)
def test_uniform_layer_map(t, s, expected):
    assert uniform_layer_map(t, s) == expected


def _models(task, tmp_path, teacher_shape, student_shape):
    tok = char_tokenizer(task.texts(), 1, tmp_path / "vocab")
    teacher = init_from_shape(ShapeSpec(**teacher_shape), tok, task.type, task.labels)
    student = init_from_shape(ShapeSpec(**student_shape), tok, task.type, task.labels)
    return teacher, student, tok


def test_projection_added_only_when_widths_differ(tmp_path, cls_files):
    task = load_task(parse_recipe(tiny_recipe(cls_files)).task)
    teacher, student, _ = _models(
        task, tmp_path, {"layers": 4, "hidden": 128, "heads": 4, "ffn": 64}, TINY_SHAPE
    )
    cfg = DistillConfig(student=StudentConfig(shape=TINY_SHAPE))
    matches = textbrewer_matches(cfg, teacher.config, student.config)
    assert [(m["layer_T"], m["layer_S"]) for m in matches] == [(0, 0), (2, 1), (4, 2)]
    assert all(m["proj"] == ["linear", 64, 128, {}] for m in matches)
    same = textbrewer_matches(cfg, student.config, student.config)
    assert all("proj" not in m for m in same)


def _one_loss(distiller, batch, cached: bool):
    if cached:
        distiller.cache_logits(batch, {}, None)
        loss, _ = distiller.train_on_batch(distiller.logits_cache[0], {})
    else:
        loss, _ = distiller.train_on_batch(batch, {})
    return loss.item()


def test_logits_cache_gives_the_same_loss(tmp_path, cls_files):
    task = load_task(parse_recipe(tiny_recipe(cls_files)).task)
    teacher, student, tok = _models(task, tmp_path, TINY_SHAPE, TINY_SHAPE)
    batch = batches(encode(task.splits["train"][:8], tok, task, 32), 8)[0]
    losses = {}
    for cached in (True, False):
        cfg = DistillConfig(
            student=StudentConfig(shape=TINY_SHAPE),
            matches="none",
            cache_teacher_logits=cached,
            hard_label_weight=0.5,
        )
        distiller, _, used = build_distiller(cfg, teacher, student, task.type, tmp_path)
        assert used is cached
        teacher.eval()
        student.eval()  # no dropout: both paths see the same student outputs
        losses[cached] = _one_loss(distiller, batch, cached)
    assert losses[True] == pytest.approx(losses[False], rel=1e-6)


def test_ner_kd_loss_ignores_padding_and_special_tokens(tmp_path, ner_files):
    raw = tiny_recipe(ner_files, task_type="ner")
    task = load_task(parse_recipe(raw).task)
    teacher, student, tok = _models(task, tmp_path, TINY_SHAPE, TINY_SHAPE)
    enc = encode(task.splits["train"][:6], tok, task, 32)
    batch = batches(enc, 6)[0]
    batch["input_ids"][0, -1] = 0  # make sure there is padding on row 0
    adaptor = make_adaptor("ner")
    cfg = DistillConfig(
        student=StudentConfig(shape=TINY_SHAPE), matches="none", cache_teacher_logits=False
    )
    distiller, _, _ = build_distiller(cfg, teacher, student, "ner", tmp_path)
    teacher.eval()
    student.eval()
    with torch.no_grad():
        out_t, out_s = teacher(**batch), student(**batch)
    mask = batch["labels"] != IGNORE
    assert torch.equal(adaptor(batch, out_s)["logits_mask"][0], mask)
    assert not mask[:, 0].any()  # [CLS] never counts
    base = distiller.compute_loss(adaptor(batch, out_s), adaptor(batch, out_t))[0]
    out_s.logits[~mask] = 1e4  # garbage where the mask is off must not matter
    again = distiller.compute_loss(adaptor(batch, out_s), adaptor(batch, out_t))[0]
    assert again.item() == pytest.approx(base.item())


def test_cut_from_teacher_keeps_chosen_layers(tmp_path, cls_files):
    task = load_task(parse_recipe(tiny_recipe(cls_files)).task)
    teacher, _, _ = _models(
        task, tmp_path, {"layers": 4, "hidden": 64, "heads": 2, "ffn": 64}, TINY_SHAPE
    )
    student = cut_from_teacher(teacher, [0, 3])
    assert student.config.num_hidden_layers == 2 and teacher.config.num_hidden_layers == 4
    for s, t in ((0, 0), (1, 3)):
        a = student.bert.encoder.layer[s].output.dense.weight
        assert torch.equal(a, teacher.bert.encoder.layer[t].output.dense.weight)


def distill_recipe(files, matches="uniform", **student):
    steps = tiny_recipe(files)["steps"] + [
        {
            "name": "student",
            "stage": "distill",
            "student": student or {"shape": TINY_SHAPE},
            "epochs": 8,
            "batch_size": 16,
            "lr": 3e-3,
            "matches": matches,
        },
        {"name": "no-kd", "stage": "baseline", "like": "student"},
    ]
    return tiny_recipe(files, steps=steps)


def test_tiny_distillation_improves_the_student(tmp_path, cls_files):
    root = run_recipe(parse_recipe(distill_recipe(cls_files)), tmp_path / "art")
    report = json.loads((root / "report.json").read_text())
    scores = {r["variant"]: r["score"] for r in report["rows"]}
    assert set(scores) == {"teacher", "student", "no-kd"}
    assert scores["student"] >= 0.8  # a random student is at 0.5 on this balanced task
    manifest = json.loads((root / "manifest.json").read_text())["steps"]
    assert manifest["no-kd"]["input_step"] == "teacher"
    assert len(manifest["student"]["details"]["matches"]) == 3
    assert list((root / "02_student/logs").iterdir())  # TensorBoard events
    assert not (root / "02_student/checkpoints").exists()


def test_baseline_must_name_a_distill_step(cls_files):
    raw = distill_recipe(cls_files)
    raw["steps"][2]["like"] = "teacher"
    with pytest.raises(Exception, match="'teacher' is not a distill step"):
        parse_recipe(raw)


def test_distill_with_max_steps_evaluates_and_keeps_best(tmp_path, cls_files):
    raw = distill_recipe(cls_files, matches="none")
    raw["steps"][1]["max_steps"] = 12  # 10 steps an epoch: checkpoints at 10 and 12
    raw["steps"] = raw["steps"][:2]
    root = run_recipe(parse_recipe(raw), tmp_path / "art", evaluate=False)
    details = json.loads((root / "manifest.json").read_text())["steps"]["student"]["details"]
    assert [h["step"] for h in details["history"]] == [10, 12]
    assert details["teacher_logits_cached"] is True  # the cache replays for any step count


def test_kd_student_and_no_kd_twin_take_the_same_steps(tmp_path, cls_files):
    """With a fractional epoch count both stop at ceil(1.5 x 10 batches) = 15 optimizer steps."""
    raw = distill_recipe(cls_files, matches="none")
    raw["steps"][1]["epochs"] = 1.5
    root = run_recipe(parse_recipe(raw), tmp_path / "art", evaluate=False)
    steps = json.loads((root / "manifest.json").read_text())["steps"]
    kd, no_kd = steps["student"]["details"], steps["no-kd"]["details"]["train"]
    assert kd["steps"] == no_kd["steps"] == 15
    assert [h["step"] for h in kd["history"]] == [h["step"] for h in no_kd["history"]] == [10, 15]


@pytest.mark.parametrize("scale,expected", [("t2", 1.0), ("none", 1 / 64)])
def test_the_kd_gradient_keeps_its_scale_across_temperatures(tmp_path, cls_files, scale, expected):
    """TextBrewer's kd_ce_loss has no T² factor: at T=8 its gradient is 1/64 of T=1's (for
    logits of similar size), too weak against the hard-label loss. kd_loss_scale: t2 (the
    default) restores Hinton's scaling, so the KD gradient no longer fades with T."""
    task = load_task(parse_recipe(tiny_recipe(cls_files)).task)
    teacher, student, _ = _models(task, tmp_path, TINY_SHAPE, TINY_SHAPE)
    g = torch.Generator().manual_seed(0)
    logits_t, base = 0.1 * torch.randn(16, 2, generator=g), 0.1 * torch.randn(16, 2, generator=g)

    def grad_norm(temperature: float) -> float:
        cfg = DistillConfig(
            student=StudentConfig(shape=TINY_SHAPE),
            matches="none",
            temperature=temperature,
            kd_loss_scale=scale,
        )
        distiller, _, _ = build_distiller(cfg, teacher, student, task.type, tmp_path)
        logits_s = base.clone().requires_grad_(True)
        loss, _ = distiller.compute_loss({"logits": [logits_s]}, {"logits": [logits_t]})
        loss.backward()
        return logits_s.grad.norm().item()

    assert grad_norm(8.0) / grad_norm(1.0) == pytest.approx(expected, rel=0.05)


def test_kd_with_transfer_beats_no_kd_when_the_teacher_saw_more_labels(tmp_path, cls_files):
    """The few-labels claim in small: a teacher on all 160 labelled rows; students on 12 of them,
    one also reading the other 148 as teacher-labelled transfer text."""
    from tests.conftest import Rows

    steps = tiny_recipe(cls_files)["steps"]
    student = {"shape": TINY_SHAPE}
    steps += [
        {
            "name": "kd-transfer",
            "stage": "distill",
            "student": student,
            "labelled_rows": 12,
            "transfer": {"rest_of_train": True, "ratio": 12},
            "matches": "none",
            "temperature": 2,
            "epochs": 4,
            "batch_size": 16,
            "lr": 3e-3,
        },
        {
            "name": "kd",
            "stage": "distill",
            "input": "teacher",
            "student": student,
            "labelled_rows": 12,
            "matches": "none",
            "epochs": 40,
            "batch_size": 16,
            "lr": 3e-3,
        },
        {"name": "no-kd", "stage": "baseline", "like": "kd"},
    ]
    raw = tiny_recipe(cls_files, steps=steps)
    raw["evaluate"]["latency"] = False
    root = run_recipe(parse_recipe(raw), tmp_path / "art")
    report = json.loads((root / "report.json").read_text())
    rows = Rows(report["rows"])
    manifest = json.loads((root / "manifest.json").read_text())["steps"]
    data = manifest["kd-transfer"]["details"]["data"]
    assert data["labelled_rows"] == 12 and data["transfer_rows"] == 148
    assert manifest["no-kd"]["details"]["data"]["labelled_rows"] == 12
    assert rows["kd-transfer"]["score"] > rows["no-kd"]["score"] + 0.1


def test_kd_search_prunes_by_successive_halving_and_chooses_by_signal(monkeypatch):
    """The search's rounds without training: each trial's dev predictions are given. On 100
    dev rows (60 of class a), round one has no trial off the majority predictor (60.00); Optuna's
    pruner keeps half (judged in grid order: T=1 at 60, then T=8 as second best of four) and
    T=8 leaves it in round two, ahead of T=1 by its paired interval."""
    from types import SimpleNamespace as Row

    import numpy as np

    from compress import trainer

    distill = importlib.import_module("compress.stages.distill")  # the module, not the stage

    gold = ["a"] * 60 + ["b"] * 40
    task = Row(
        type="classification",
        labels=["a", "b"],
        metric="accuracy",
        splits={
            "train": [Row(label="a")] * 6 + [Row(label="b")] * 4,
            "dev": [Row(label=g) for g in gold],
        },
    )
    right = {  # dev rows each trial gets right, by round (rounds of 10 and 20 steps)
        1.0: {10: 60, 20: 60},
        2.0: {10: 58},
        4.0: {10: 55},
        8.0: {10: 59, 20: 90},
    }
    ran = []

    def fake_trial(cfg, point, steps, *_):
        ran.append((point["temperature"], steps))
        n = right[point["temperature"]][steps]
        counts = np.array([[1.0]] * n + [[0.0]] * (100 - n))
        return counts, {**point, "steps": steps, "dev": n / 100, "seconds": 1.0}

    monkeypatch.setattr(distill, "_kd_trial", fake_trial)
    monkeypatch.setattr(trainer, "shuffled_batches", lambda *a: Row(per_epoch=20))
    cfg = DistillConfig.model_validate(
        {
            "student": {"shape": TINY_SHAPE},
            "epochs": 4,
            "search": {"temperature": [1, 2, 4, 8], "trial_steps": 10},
        }
    )
    ctx = Row(seed=0, step_name="student")
    chosen_cfg, search = distill.search_on_dev(cfg, None, None, task, {"train": None}, ctx)
    assert ran == [(1.0, 10), (2.0, 10), (4.0, 10), (8.0, 10), (1.0, 20), (8.0, 20)]
    assert search["rounds"] == [10, 20] and search["cap_steps"] == 80
    assert search["trivial"]["dev"] == 0.6
    assert [t["pruned"] for t in search["trials"]] == [False, True, True, False]
    assert search["chosen"] == {"temperature": 8.0} and chosen_cfg.temperature == 8.0
    assert search["outcome"] == "finding" and search["lead_interval"][0] > 0
    assert search["why"].startswith("a finding: after 20 steps, dev 90.00")


def test_kd_search_starts_no_round_past_its_time_budget(tmp_path, cls_files):
    _, search = _searched(tmp_path, cls_files, lr=1e-9, trial_steps=2, max_seconds=0.01)
    assert search["rounds"] == [2] and search["cap_steps"] == 80
    assert search["outcome"] == "no signal" and len(search["history"]) == 4


def test_select_passes_the_better_student_on_dev_and_says_so(tmp_path, cls_files):
    """A KD student worse than its twin on dev is not pruned unknowingly: select scores both
    on dev, copies the winner, and the report and the next step's card name the choice."""
    from compress.data import encode_splits
    from compress.models import load_model, load_tokenizer
    from compress.scoring import evaluate_torch

    raw = distill_recipe(cls_files)
    raw["steps"] += [
        {"name": "pick", "stage": "select", "best_of": ["student", "no-kd"]},
        {"name": "pruned", "stage": "prune", "input": "pick", "vocabulary": {"min_count": 1}},
    ]
    raw["evaluate"]["latency"] = False
    root = run_recipe(parse_recipe(raw), tmp_path / "art")
    steps = json.loads((root / "manifest.json").read_text())["steps"]
    task = load_task(parse_recipe(raw).task)
    dev = {}
    for name in ("student", "no-kd"):
        path = root / steps[name]["output"]
        enc = encode_splits(task, load_tokenizer(path), 32, splits=("dev",))
        dev[name] = evaluate_torch(
            load_model(path, task.type), task, task.splits["dev"], enc["dev"]
        )
    details = steps["pick"]["details"]
    assert details["dev_scores"] == pytest.approx(dev, abs=1e-5)
    assert details["chosen"] == max(["student", "no-kd"], key=lambda n: dev[n])
    report = json.loads((root / "report.json").read_text())
    assert report["chosen_on_dev"]["pick"]["chosen"] == details["chosen"]
    assert "pick" not in {r["variant"] for r in report["rows"]}  # a copy: no row of its own
    md = (root / "report.md").read_text()
    assert f"- `pick` took `{details['chosen']}` of `student`, `no-kd`" in md
    card = (root / steps["pruned"]["output"] / "README.md").read_text()
    assert "`pick`: stage `select`" in card and f"took `{details['chosen']}`" in card
    # the copy select passes on has its own card: which step's model it is, and why
    own = (root / steps["pick"]["output"] / "README.md").read_text()
    assert f"It is a copy of `{details['chosen']}`'s model" in own and details["why"] in own
    assert "| pytorch |" in own  # the chosen step's measured row, under its runtime


def test_select_between_models_that_learned_nothing_says_no_signal(tmp_path, cls_files):
    """Two models trained with a learning rate too small to move them: neither leaves the
    majority predictor on dev, so select passes the first of best_of on and says why, rather
    than taking whichever random start happened to score higher."""
    steps = tiny_recipe(cls_files)["steps"]
    steps[0] |= {"name": "a", "lr": 1e-9, "epochs": 1}
    steps.append({**steps[0], "name": "b", "epochs": 2})
    steps.append({"name": "pick", "stage": "select", "best_of": ["a", "b"]})
    raw = tiny_recipe(cls_files, steps=steps)
    raw["evaluate"]["latency"] = False
    root = run_recipe(parse_recipe(raw), tmp_path / "art")
    details = json.loads((root / "manifest.json").read_text())["steps"]["pick"]["details"]
    assert details["outcome"] == "no signal" and details["chosen"] == "a"
    assert not any(v["left_baseline"] for v in details["vs_trivial"].values())
    assert details["why"].startswith("no signal: none left the majority baseline")
    md = (root / "report.md").read_text()
    assert "- `pick` took `a` of `a`, `b`: no signal: none left the majority baseline" in md


def test_select_refuses_what_it_cannot_compare(cls_files):
    raw = distill_recipe(cls_files)
    raw["steps"] += [
        {"name": "onnx", "stage": "export", "input": "student"},
        {"name": "pick", "stage": "select", "best_of": ["onnx", "no-kd"]},
    ]
    with pytest.raises(RecipeError, match=r"steps\(pick\).best_of: 'onnx' writes an ONNX file"):
        parse_recipe(raw)
    raw["steps"][-1]["best_of"] = ["student", "nothing"]
    with pytest.raises(RecipeError, match="best_of: 'nothing' is not an earlier step"):
        parse_recipe(raw)


def test_a_kd_student_below_its_twin_on_dev_is_named_in_the_report(tmp_path):
    from compress.eval.sections.kd import kd_below_no_kd

    from compress.manifest import Manifest

    (tmp_path / "manifest.json").write_text(
        json.dumps(
            {
                "steps": {
                    "student": {
                        "index": 1,
                        "stage": "distill",
                        "dir": "01_s",
                        "status": "done",
                        "hash": "a",
                        "config_hash": "a",
                        "details": {"best_dev": 0.70},
                    },
                    "no-kd": {
                        "index": 2,
                        "stage": "baseline",
                        "dir": "02_n",
                        "status": "done",
                        "hash": "b",
                        "config_hash": "b",
                        "details": {"like": "student", "train": {"best_dev": 0.74}},
                    },
                }
            }
        )
    )
    (worse,) = kd_below_no_kd(Manifest(tmp_path), ["student", "no-kd"])
    assert worse == {"kd": "student", "no_kd": "no-kd", "kd_dev": 0.70, "no_kd_dev": 0.74}


def _searched(tmp_path, cls_files, lr: float, **search):
    """The tiny teacher and a KD student whose settings are searched on dev (no no-KD twin)."""
    raw = distill_recipe(cls_files, matches="none")
    raw["steps"] = raw["steps"][:2]
    raw["steps"][1]["lr"] = lr
    raw["steps"][1]["search"] = {"temperature": [1, 8], "hard_label_weight": [0, 1], **search}
    raw["evaluate"]["latency"] = False
    root = run_recipe(parse_recipe(raw), tmp_path / "art")
    manifest = json.loads((root / "manifest.json").read_text())["steps"]
    return root, manifest["student"]["details"]["search"]


def test_kd_trials_that_learned_nothing_go_on_until_one_leaves_the_baseline(tmp_path, cls_files):
    """Two-step trials still predict (near) one class: within noise of the majority predictor
    on 40 dev reviews. The pruner's rounds double their length until one leaves it, and the
    choice is made by that round's scores."""
    root, search = _searched(tmp_path, cls_files, lr=3e-3, trial_steps=2)
    grid = [(t["temperature"], t["hard_label_weight"]) for t in search["trials"]]
    assert grid == [(1, 0), (1, 1), (8, 0), (8, 1)] and search["split"] == "dev"
    first = [r for r in search["history"] if r["round"] == 0]
    assert len(first) == 4 and not any(r["left_baseline"] for r in first)
    assert search["rounds"][:2] == [2, 4] and len(search["rounds"]) >= 2
    assert search["cap_steps"] == 80  # the step's own 8 epochs of 10 batches
    last = [r for r in search["history"] if r["round"] == len(search["rounds"]) - 1]
    assert any(r["left_baseline"] for r in last)
    best = max(last, key=lambda r: r["dev"])
    assert search["outcome"] in ("finding", "within noise")
    assert search["chosen"] == {
        "temperature": best["temperature"],
        "hard_label_weight": best["hard_label_weight"],
    }
    assert search["trivial"]["name"] == "majority"
    md = (root / "report.md").read_text()
    assert "KD settings of `student`:" in md and "(chosen)" in md and "| yes |" in md
    assert f"rounds of {' → '.join(str(r) for r in search['rounds'])} steps" in md
    card = (root / "02_student" / "model" / "README.md").read_text()
    rounds = " then ".join(str(r) for r in search["rounds"])
    assert f"chosen on dev from 4 trials of {rounds} steps ({search['outcome']})" in card


def test_kd_search_with_no_signal_by_its_cap_says_so_and_uses_the_defaults(tmp_path, cls_files):
    """A learning rate too small to move the student: every round stays at the majority
    predictor up to the cap (half an epoch), and the stage's defaults are used, not the grid's
    first point."""
    root, search = _searched(tmp_path, cls_files, lr=1e-9, trial_steps=2, max_trial_epochs=0.5)
    assert search["rounds"] == [2, 4, 5] and search["cap_steps"] == 5
    assert not any(r["left_baseline"] for r in search["history"])
    assert search["outcome"] == "no signal"
    assert search["chosen"] == {"temperature": 8.0, "hard_label_weight": 0.0}
    md = (root / "report.md").read_text()
    assert "Choice: no signal: all trials at the majority baseline" in md
    assert "| no |" in md and "| yes |" not in md
    card = (root / "02_student" / "model" / "README.md").read_text()
    assert "no signal: all 4 trials of 2 then 4 then 5 steps at the majority baseline" in card


def test_a_setting_both_given_and_searched_is_refused(cls_files):
    raw = distill_recipe(cls_files, matches="none")
    raw["steps"][1].update(temperature=8, search={"temperature": [1, 8]})
    with pytest.raises(
        RecipeError, match="temperature: set here and searched in search.temperature"
    ):
        parse_recipe(raw)
