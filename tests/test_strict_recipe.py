"""What a person did not mean is refused before the first step, in one line, with nothing written:
YAML that PyYAML reads silently otherwise, and task values a model of the recipe cannot take."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from compress.__main__ import main
from tests.conftest import TINY_SHAPE, tiny_recipe


def _text(files) -> str:
    return yaml.safe_dump(tiny_recipe(files), allow_unicode=True, sort_keys=False)


def _refused(tmp_path: Path, capsys, recipe: Path, *overrides: str) -> str:
    """``run`` exits 2 with one error line, no traceback, and writes nothing under ``--out``."""
    out = tmp_path / "art"
    assert main(["run", str(recipe), "--out", str(out), *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert not out.exists()
    return err


def _edited(tmp_path: Path, files, old: str, new: str) -> Path:
    text = _text(files)
    assert text.count(old) == 1, old
    path = tmp_path / "r.yaml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def _line_of(path: Path, needle: str, nth: int = 1) -> int:
    lines = [i for i, x in enumerate(path.read_text().splitlines(), 1) if needle in x]
    return lines[nth - 1]


@pytest.mark.parametrize(
    "old, new, needle, expected",
    [
        (
            "  epochs: 8\n",
            "  epochs: 8\n  epochs: 2\n",
            "epochs: 2",
            "key 'epochs' appears twice in one mapping (lines {a} and {line}); YAML keeps only "
            "the last: keep one",
        ),
        ("name: tiny\n", "name: no\n", "name: no", "no is read as false by YAML 1.1"),
        ("  epochs: 8\n", "  epochs: on\n", "epochs: on", "on is read as true by YAML 1.1"),
        ("seed: 0\n", "seed: 010\n", "seed: 010", "010 is read as 8 (octal) by YAML 1.1"),
        ("  epochs: 8\n", "  epochs: 1:30\n", "epochs: 1:30", "1:30 is read as 90 (base 60)"),
        (
            "name: tiny\n",
            "name: 2024-01-01\n",
            "name: 2024",
            "2024-01-01 is read as a date; quote it ('2024-01-01') for the text",
        ),
        ("  lr: 0.003\n", "  lr: .nan\n", "lr: .nan", ".nan is not a number"),
        (
            "  epochs: 8\n",
            "  epochs:\n",
            "epochs:",
            "epochs: has no value (read as null); give one, or write null where none is meant",
        ),
    ],
    ids=["duplicate-key", "no", "on", "octal", "base-60", "date", "nan", "empty"],
)
def test_yaml_a_person_did_not_mean_is_refused_with_its_line(
    tmp_path, cls_files, capsys, old, new, needle, expected
):
    path = _edited(tmp_path, cls_files, old, new)
    line = _line_of(path, needle)
    if "{a}" in expected:
        expected = expected.format(a=_line_of(path, "epochs: 8"), line=line)
    assert _refused(tmp_path, capsys, path).startswith(f"error: {path}:{line}: {expected}")


def test_what_yaml_1_1_misreads_is_still_accepted_as_meant(tmp_path, cls_files):
    """Quoted text stays text; 3e-3 is a number, as in YAML 1.2 (YAML 1.1 reads it as text)."""
    from compress.recipe import load_recipe

    path = _edited(tmp_path, cls_files, "  lr: 0.003\n", "  lr: 3e-3\n")
    path.write_text(path.read_text().replace("name: tiny", "name: 'no'"))
    recipe = load_recipe(path)
    assert recipe.name == "no" and recipe.steps[0].config.lr == 0.003


def test_several_yaml_problems_are_listed_together(tmp_path, cls_files):
    from compress.errors import RecipeError
    from compress.recipe import load_recipe

    path = _edited(tmp_path, cls_files, "seed: 0\n", "seed: 010\nevaluate:\n  memory: no\n")
    message = str(pytest.raises(RecipeError, load_recipe, path).value)
    assert message.startswith("several problems:")
    assert "seed: 010" not in message and "010 is read as 8" in message
    assert "key 'evaluate' appears twice" in message and "no is read as false" in message


def test_broken_yaml_is_one_line(tmp_path, cls_files, capsys):
    path = _edited(tmp_path, cls_files, "seed: 0\n", "seed: [0\n")
    err = _refused(tmp_path, capsys, path)
    assert err.startswith(f"error: {path}: not valid YAML: ")


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (
            ["steps.teacher.epochs=1", "steps.teacher.epochs=2"],
            "override steps.teacher.epochs is given twice ('steps.teacher.epochs=1' and "
            "'steps.teacher.epochs=2'); only the last would count: keep one",
        ),
        (
            ["evaluate.memory=no"],
            "override 'evaluate.memory=no': no is read as false by YAML 1.1; write false for "
            "the boolean, or quote it ('no') for the text",
        ),
        (["seed=010"], "override 'seed=010': 010 is read as 8 (octal)"),
    ],
    ids=["twice", "no", "octal"],
)
def test_overrides_are_read_as_strictly(tmp_path, cls_files, capsys, overrides, expected):
    path = tmp_path / "r.yaml"
    path.write_text(_text(cls_files), encoding="utf-8")
    assert _refused(tmp_path, capsys, path, *overrides).startswith(f"error: {expected}")


def test_the_same_override_twice_with_one_value_is_harmless(tmp_path, cls_files):
    from compress.recipe import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(_text(cls_files), encoding="utf-8")
    recipe = load_recipe(path, ["seed=3", "seed=3"])
    assert recipe.seed == 3


# --- the models' limits -----------------------------------------------------------------------


def _recipe(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def _model_dir(tmp_path: Path, name: str, tokens: int = 40, **config) -> Path:
    """A BERT model folder as save_pretrained writes it, as far as the checks read it: its
    config.json (keys as transformers' BertConfig names them) and a vocab.txt of ``tokens``
    lines (BertTokenizer's format, one token per line)."""
    folder = tmp_path / name
    folder.mkdir()
    data = {
        "model_type": "bert",
        "architectures": ["BertForMaskedLM"],
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "num_attention_heads": 2,
        "intermediate_size": 128,
        "max_position_embeddings": 512,
        "vocab_size": 40,
        "type_vocab_size": 2,
        **config,
    }
    (folder / "config.json").write_text(json.dumps(data), encoding="utf-8")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = specials + [chr(0x4E00 + i) for i in range(tokens - len(specials))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return folder


def _with_model(files, source) -> dict:
    raw = tiny_recipe(files)
    raw["steps"][0]["model"] = {"source": str(source)}
    return raw


def test_max_seq_len_beyond_the_built_shape_s_positions(tmp_path, cls_files, capsys):
    raw = tiny_recipe(cls_files)
    raw["steps"][0]["model"]["shape"] = {**TINY_SHAPE, "max_position": 64}
    raw["task"]["max_seq_len"] = 128
    err = _refused(tmp_path, capsys, _recipe(tmp_path, raw))
    assert err == (
        f"error: {tmp_path / 'r.yaml'}: invalid recipe: task.max_seq_len: step 'teacher' "
        "(shape 2x64) has 64 positions (max_position_embeddings), fewer than max_seq_len 128: "
        "texts longer than 64 tokens would fail at inference; lower task.max_seq_len to 64 or "
        "use a model with more positions"
    )


def test_max_seq_len_beyond_a_loaded_model_s_positions(tmp_path, cls_files, capsys):
    model = _model_dir(tmp_path, "short", max_position_embeddings=128)
    raw = _with_model(cls_files, model)
    raw["task"]["max_seq_len"] = 256
    err = _refused(tmp_path, capsys, _recipe(tmp_path, raw))
    assert f"task.max_seq_len: step 'teacher' ({model}) has 128 positions" in err


def test_latency_timed_beyond_the_positions(tmp_path, cls_files, capsys):
    raw = tiny_recipe(cls_files)
    raw["steps"][0]["model"]["shape"] = {**TINY_SHAPE, "max_position": 32}
    raw["evaluate"]["seq_len"] = 64
    err = _refused(tmp_path, capsys, _recipe(tmp_path, raw))
    assert "evaluate.seq_len: step 'teacher' (shape 2x64) has 32 positions" in err
    assert "latency at 64 tokens cannot be measured: lower evaluate.seq_len to 32 at most" in err


def test_a_pair_task_on_a_model_with_one_token_type(tmp_path, cls_files, capsys):
    rows = ["text,text2,label"] + [f"好{i},坏{i},{i % 2}" for i in range(8)]
    for split in ("train", "dev", "test"):
        Path(cls_files[split]).write_text("\n".join(rows) + "\n", encoding="utf-8")
    model = _model_dir(tmp_path, "one-type", type_vocab_size=1)
    raw = _with_model(cls_files, model)
    raw["task"]["text_pair_column"] = "text2"
    err = _refused(tmp_path, capsys, _recipe(tmp_path, raw))
    assert err.endswith(
        f"task: step 'teacher' ({model}) has type_vocab_size 1: the task feeds "
        "task.text_pair_column 'text2' as token type 1, which it has no embedding for; use a "
        "model with 2 token types"
    )


@pytest.mark.parametrize(
    "config, expected",
    [
        (
            {"tokens": 50},
            "has a tokenizer of 50 tokens but vocab_size 40: ids from 40 up have no embedding "
            "and fail when a text uses them; give it the tokenizer it was trained with",
        ),
        (
            {"num_attention_heads": 3},
            "has hidden_size 64, which its 3 attention heads do not divide; BERT cannot build "
            "it (fix num_attention_heads in its config.json)",
        ),
    ],
    ids=["tokenizer-beyond-vocabulary", "heads-not-dividing-width"],
)
def test_a_loaded_model_that_cannot_take_its_own_inputs(
    tmp_path, cls_files, capsys, config, expected
):
    model = _model_dir(tmp_path, "model", **config)
    err = _refused(tmp_path, capsys, _recipe(tmp_path, _with_model(cls_files, model)))
    assert err.endswith(f"model: step 'teacher' ({model}) {expected}")


def test_a_loaded_head_for_the_task_s_labels_in_another_order(tmp_path, cls_files, capsys):
    """A classifier saved by transformers (``architectures`` and ``id2label`` with string ids,
    as ``save_pretrained`` writes them) for the same labels in another order: of the same size,
    its head would be loaded as is, each output now read as another label."""
    model = _model_dir(
        tmp_path,
        "classifier",
        architectures=["BertForSequenceClassification"],
        id2label={"0": "positive", "1": "negative"},
        label2id={"positive": 0, "negative": 1},
    )
    raw = _with_model(cls_files, model)
    raw["task"]["labels"] = ["negative", "positive"]
    err = _refused(tmp_path, capsys, _recipe(tmp_path, raw))
    assert err.endswith(
        f"task.labels: step 'teacher' ({model}) has a head for the task's labels in another "
        "order (['positive', 'negative'], the task ['negative', 'positive']); its head would be "
        "reused with each output meaning another label: give task.labels as ['positive', "
        "'negative'], or a model without that head"
    )
    raw["task"]["labels"] = ["positive", "negative"]  # the head's own order: accepted
    from compress.recipe import parse_recipe

    assert parse_recipe(raw).task.labels == ["positive", "negative"]


def test_a_student_with_another_vocabulary_than_its_teacher(tmp_path, cls_files, capsys):
    raw = _with_model(cls_files, _model_dir(tmp_path, "teacher"))
    student = _model_dir(tmp_path, "student", tokens=30, vocab_size=30)
    raw["steps"].append(
        {
            "name": "student",
            "stage": "distill",
            "input": "teacher",
            "student": {"init": str(student)},
            "epochs": 1,
        }
    )
    err = _refused(tmp_path, capsys, _recipe(tmp_path, raw))
    assert err.endswith(
        f"steps(student): student.init: {student} has a vocabulary of 30 tokens, the teacher "
        "40; distillation feeds both the same ids, so use a student with the teacher's "
        "vocabulary (all LERT sizes share one)"
    )


def test_a_limit_of_a_model_an_earlier_step_produces(tmp_path, cls_files, capsys):
    """The student's shape is built by the distill step: its positions meet the task too."""
    raw = tiny_recipe(cls_files)
    student_shape = {**TINY_SHAPE, "max_position": 16}
    raw["steps"].append(
        {"name": "student", "stage": "distill", "student": {"shape": student_shape}, "epochs": 1}
    )
    err = _refused(tmp_path, capsys, _recipe(tmp_path, raw))
    assert "task.max_seq_len: step 'student' (shape 2x64) has 16 positions" in err


def test_the_fit_budget_s_sequence_beyond_its_input_s_positions(tmp_path, cls_files, capsys):
    raw = tiny_recipe(cls_files)
    raw["steps"][0]["model"]["shape"] = {**TINY_SHAPE, "max_position": 32}
    raw["steps"].append(
        {
            "name": "fit",
            "stage": "fit",
            "budget": {"size_mb": 1.0, "seq_len": 64},
            "space": {"layers": [1], "heads": [2], "ffn": [64], "runtimes": ["onnx-fp32"]},
        }
    )
    err = _refused(tmp_path, capsys, _recipe(tmp_path, raw))
    assert err.endswith(
        "steps(fit): budget.seq_len 64: the input has 32 positions (max_position_embeddings); "
        "give at most that"
    )


def test_lert_from_the_hub_is_checked_offline_by_its_published_shape(tmp_path, cls_files, capsys):
    """Every LERT size has vocab 21128, Google's Chinese BERT vocabulary (REFERENCES.md). The hub
    cannot be read here, so that published shape stands in for hfl/chinese-lert-small's config:
    a student from it cannot learn from a teacher with another vocabulary."""
    raw = _with_model(cls_files, _model_dir(tmp_path, "teacher"))
    raw["steps"].append(
        {
            "name": "student",
            "stage": "distill",
            "input": "teacher",
            "student": {"init": "hfl/chinese-lert-small"},
            "epochs": 1,
        }
    )
    err = _refused(tmp_path, capsys, _recipe(tmp_path, raw))
    assert "student.init: hfl/chinese-lert-small has a vocabulary of 21128 tokens" in err


def test_check_validates_without_running(tmp_path, cls_files, capsys):
    path = _recipe(tmp_path, tiny_recipe(cls_files))
    assert main(["check", str(path), "steps.teacher.epochs=1"]) == 0
    assert capsys.readouterr().out.strip() == "ok: tiny: 1 steps: teacher (finetune)"
    assert main(["check", str(path), "steps.teachr.epochs=1"]) == 2
    assert "teachr" in capsys.readouterr().err
