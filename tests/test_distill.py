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
