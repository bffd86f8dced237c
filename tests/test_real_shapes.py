"""Smoke runs of the real LERT recipes against LERT-shaped local checkpoints (slow)."""

import json

import pytest

from compress.errors import CompressError, ModelSourceError
from compress.recipe import load_recipe
from compress.runner import run_recipe
from compress.tasks import SPLITS
from tests.conftest import Rows, sentiment_rows
from tests.lert_shapes import build_lert

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def lert_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lert")
    # named like a download of the hub repos (hfl/chinese-lert-*), as a user's local copy is
    return {
        name: build_lert(name, root / f"chinese-{name}")
        for name in ("lert-small", "lert-base", "lert-large")
    }


@pytest.fixture(scope="session")
def chnsenticorp_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("chnsenticorp")
    files = {}
    for i, (split, n) in enumerate((("train", 24), ("dev", 8), ("test", 8))):
        lines = ["label\ttext_a"] + [
            f"{int(label == 'positive')}\t{text}" for text, label in sentiment_rows(n, i)
        ]
        files[split] = root / f"{split}.tsv"
        files[split].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [f"task.{s}={p}" for s, p in files.items()]


QUICK = [
    "task.max_seq_len=32",
    "evaluate.latency=false",
    "evaluate.devices=[cpu]",
    "evaluate.memory=false",
]


# distill-large-to-small's fit step, cut to one candidate, two recovery steps and no accuracy
# budget (two training steps learn nothing)
QUICK_FIT = [
    "steps.fit.space={layers: [4], heads: [2], ffn: [512], vocabulary: [null], "
    "runtimes: [ort-dynamic]}",
    "steps.fit.max_trials=1",
    "steps.fit.budget.max_drop=100",
    "steps.fit.budget.latency_ms=1000",
    "steps.fit.recover.max_steps=2",
    "steps.fit.recover.batch_size=4",
    "steps.fit.probe.repeats=3",
]


def _steps(names, **options):
    return [f"steps.{n}.{k}={v}" for n in names for k, v in options.items()]


# the distill recipes' prune step, cut to a few batches and steps
QUICK_PRUNE = _steps(
    ["pruned"],
    **{
        "transformer.n_iters": 2,
        "transformer.batches": 2,
        "transformer.batch_size": 4,
        "recover.max_steps": 2,
        "recover.batch_size": 4,
    },
)


def test_distill_recipe_offline_fails_at_the_hub_with_a_clear_message(tmp_path, chnsenticorp_files):
    # LERT-large's fine-tune at 32 x 256 needs about 27 GB, so on a 24 GB machine the memory
    # check refuses it before any download; checkpointing (about 8 GB) lets it go on to the hub
    fits = ["steps.teacher.gradient_checkpointing=true"]
    with pytest.raises(CompressError, match="lansinuote/ChnSentiCorp"):
        run_recipe(load_recipe("recipes/distill-large-to-small.yaml", fits), tmp_path)
    recipe = load_recipe("recipes/distill-large-to-small.yaml", chnsenticorp_files + fits)
    with pytest.raises(ModelSourceError, match="(?s)hfl/chinese-lert-large.*HF_ENDPOINT") as err:
        run_recipe(recipe, tmp_path)
    assert "step 'teacher' (finetune)" in str(err.value)
    assert "make recipe=distill-large-to-small ARGS='steps.teacher.model=" in str(err.value)


@pytest.mark.parametrize("student", ["lert-small", "lert-base"])
def test_distill_large_to_student_real_shapes(tmp_path, lert_dirs, chnsenticorp_files, student):
    recipe_name = f"distill-large-to-{student.split('-')[1]}"
    overrides = (
        chnsenticorp_files
        + QUICK
        + [
            f"steps.teacher.model={lert_dirs['lert-large']}",
            f"steps.student.student.init={lert_dirs[student]}",
        ]
        + _steps(["teacher", "student"], max_steps=2, batch_size=4)
        + QUICK_PRUNE
        + (QUICK_FIT if student == "lert-small" else [])
    )
    root = run_recipe(load_recipe(f"recipes/{recipe_name}.yaml", overrides), tmp_path)
    steps = json.loads((root / "manifest.json").read_text())["steps"]
    matches = steps["student"]["details"]["matches"]
    assert [(m["layer_T"], m["layer_S"]) for m in matches] == [(2 * i, i) for i in range(13)]
    width = {"lert-small": 256, "lert-base": 768}[student]
    assert matches[0]["proj"] == ["linear", width, 1024, {}]
    rows = Rows(json.loads((root / "report.json").read_text())["rows"])
    assert {r["variant"] for r in rows.rows} == {
        "teacher",
        "student",
        "student-no-kd",
        "pruned",
        "pruned (before recovery)",
        "pruned-onnx",
        "pruned-int8",
    } | ({"fit"} if student == "lert-small" else set())
    assert 320e6 < rows["teacher"]["params"] < 330e6
    assert rows["pruned-int8"]["precision"] == "int8"
    assert rows["pruned"]["params"] < rows["student"]["params"]
    published = json.loads((root / "report.json").read_text())["published"]
    assert {p["model"] for p in published} == {"hfl/chinese-lert-large", f"hfl/chinese-{student}"}


def test_prune_base_real_shape(tmp_path, lert_dirs, chnsenticorp_files):
    overrides = (
        chnsenticorp_files
        + QUICK
        + [
            f"steps.lert-base.model={lert_dirs['lert-base']}",
            "steps.lert-base.max_steps=2",
            "steps.lert-base.batch_size=4",
            "steps.pruned.transformer.n_iters=2",
            "steps.pruned.transformer.batches=2",
            "steps.pruned.transformer.batch_size=4",
            "steps.pruned.recover.max_steps=2",
            "steps.pruned.recover.batch_size=4",
        ]
    )
    root = run_recipe(load_recipe("recipes/prune-base.yaml", overrides), tmp_path)
    details = json.loads((root / "manifest.json").read_text())["steps"]["pruned"]["details"]
    assert details["transformer"]["heads_per_layer"] == [8] * 12
    assert details["transformer"]["ffn_size"] == 2048
    assert details["after"]["vocab_size"] < 21128
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(root / "02_pruned/model")
    assert model.config.intermediate_size == 2048
    assert model.bert.encoder.layer[0].attention.self.num_attention_heads == 8


def test_quantize_small_real_shape(tmp_path, lert_dirs, chnsenticorp_files):
    overrides = (
        chnsenticorp_files
        + QUICK
        + [
            f"steps.lert-small.model={lert_dirs['lert-small']}",
            "steps.lert-small.max_steps=2",
            "steps.lert-small.batch_size=4",
            "steps.int8-static.calibration_examples=8",
        ]
    )
    root = run_recipe(load_recipe("recipes/quantize-small.yaml", overrides), tmp_path)
    rows = Rows(json.loads((root / "report.json").read_text())["rows"])
    assert rows["int8-dynamic"]["precision"] == rows["int8-static"]["precision"] == "int8"
    assert rows["int8-dynamic"]["size_mb"] < 0.5 * rows["onnx"]["size_mb"]


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_task_generic_distill_on_lcqmc(tmp_path, lert_dirs):
    pairs = "\n".join(["怎么开户\t如何开户\t1", "怎么开户\t今天天气\t0"] * 6) + "\n"
    files = [f"task.{s}={_write(tmp_path / f'{s}.txt', pairs)}" for s in ("train", "dev", "test")]
    overrides = [
        "task.name=lcqmc",
        *files,
        *QUICK,
        f"steps.teacher.model={lert_dirs['lert-base']}",
        f"steps.student.student.init={lert_dirs['lert-small']}",
        *_steps(["teacher", "student"], max_steps=2, batch_size=4),
        *QUICK_PRUNE,
        *QUICK_FIT,
    ]
    root = run_recipe(load_recipe("recipes/distill-large-to-small.yaml", overrides), tmp_path)
    report = json.loads((root / "report.json").read_text())
    assert report["task"] == "lcqmc"
    variants = {r["variant"] for r in report["rows"]}
    assert len(report["rows"]) == 8 and {"pruned-int8", "fit"} <= variants


def test_msra_ner_recipe(tmp_path, lert_dirs):
    conll = "张 B-PER\n伟 I-PER\n在 O\n北 B-LOC\n京 I-LOC\n\n新 B-ORG\n华 I-ORG\n社 I-ORG\n\n" * 4
    files = [f"task.{s}={_write(tmp_path / f'{s}.bio', conll)}" for s in ("train", "dev", "test")]
    overrides = [
        *files,
        *QUICK,
        f"steps.teacher.model={lert_dirs['lert-base']}",
        f"steps.student.student.init={lert_dirs['lert-small']}",
        *_steps(["teacher", "student"], max_steps=2, batch_size=4),
    ]
    root = run_recipe(load_recipe("recipes/distill-large-to-small-msra.yaml", overrides), tmp_path)
    report = json.loads((root / "report.json").read_text())
    assert report["metric"] == "entity_f1" and len(report["rows"]) == 3


def test_tnews_recipe(tmp_path, lert_dirs):
    rows = (
        "\n".join(
            json.dumps(
                {"label": c, "label_desc": "x", "sentence": s, "keywords": ""}, ensure_ascii=False
            )
            for c, s in [("102", "电影上映"), ("116", "新游戏发布")] * 4
        )
        + "\n"
    )
    files = [f"task.{s}={_write(tmp_path / f'{s}.json', rows)}" for s in ("train", "dev", "test")]
    overrides = [
        *files,
        *QUICK,
        f"steps.lert-base.model={lert_dirs['lert-base']}",
        "steps.lert-base.max_steps=2",
        "steps.lert-base.batch_size=4",
    ]
    root = run_recipe(load_recipe("recipes/finetune-lert-base-tnews.yaml", overrides), tmp_path)
    model_config = json.loads((root / "01_lert-base/model/config.json").read_text())
    assert len(model_config["id2label"]) == 15


@pytest.mark.parametrize("name", ["cmrc2018", "drcd"])
def test_reading_comprehension_recipe_real_shapes(tmp_path, lert_dirs, name):
    """LERT-large and LERT-small-shaped checkpoints through every stage of the QA recipe, on
    made-up files in the release layout, a few steps each."""
    from tests.conftest import qa_rows, write_qa

    files = {s: write_qa(tmp_path / f"{s}.json", qa_rows(12, i)) for i, s in enumerate(SPLITS)}
    overrides = [
        *(f"task.{s}={p}" for s, p in files.items()),
        *(x for x in QUICK if not x.startswith("task.max_seq_len=")),
        "task.max_seq_len=48",  # a question and a window of its context
        "task.doc_stride=16",
        f"steps.teacher.model={lert_dirs['lert-large']}",
        f"steps.student.student.init={lert_dirs['lert-small']}",
        *_steps(["teacher", "student"], max_steps=2, batch_size=4),
        *QUICK_PRUNE,
        "steps.pruned-ov-int8.calibration_examples=8",
    ]
    root = run_recipe(
        load_recipe(f"recipes/distill-large-to-small-{name}.yaml", overrides), tmp_path
    )
    report = json.loads((root / "report.json").read_text())
    rows = Rows(report["rows"])
    assert report["metric"] == "qa_f1" and 320e6 < rows["teacher"]["params"] < 330e6
    assert {"student", "student-no-kd", "pruned", "pruned-onnx", "pruned-int8"} <= {
        r["variant"] for r in rows.rows
    }
    assert rows["pruned-ov-int8"]["runtime"] == "openvino"
    steps = json.loads((root / "manifest.json").read_text())["steps"]
    assert [(m["layer_T"], m["layer_S"]) for m in steps["student"]["details"]["matches"]][:2] == [
        (0, 0),
        (2, 1),
    ]
    published = {p["model"]: p["score"] for p in report["published"]}
    assert published["hfl/chinese-lert-small"].startswith("EM ")
