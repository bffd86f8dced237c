"""Registered hub tasks loaded from local copies laid out exactly as the published repositories,
through the path a user takes (``task.dataset=/path/to/copy``, which ``datasets.load_dataset``
reads like the hub repository it copies)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compress.tasks import load_task
from compress.tasks.config import TaskConfig

datasets = pytest.importorskip("datasets")


def _parquet(path: Path, columns: dict, features) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict(columns, features=features).to_parquet(str(path))


@pytest.fixture
def chnsenticorp_copy(tmp_path) -> Path:
    """lansinuote/ChnSentiCorp at b0c4c11 (huggingface.co/datasets/lansinuote/ChnSentiCorp):
    ``data/{train,validation,test}-00000-of-00001-<hash>.parquet`` with ``text`` (string) and
    ``label`` (int64), and a legacy ``dataset_infos.json`` declaring
    ``label: ClassLabel(names=["negative", "positive"])`` under the key
    ``lansinuote--ChnSentiCorp`` (split sizes here are the fixture's, not 9600/1200/1200)."""
    root = tmp_path / "ChnSentiCorp"
    rows = {"text": ["酒店很干净，服务周到", "房间太小，隔音很差"] * 3, "label": [1, 0] * 3}
    plain = datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("int64")})
    hashes = {
        "train": "02f200ca5f2a7868",
        "validation": "405befbaa3bcf1a2",
        "test": "5372924f059fe767",
    }
    for split, digest in hashes.items():
        _parquet(root / f"data/{split}-00000-of-00001-{digest}.parquet", rows, plain)
    info = {
        "description": "",
        "citation": "",
        "homepage": "",
        "license": "",
        "features": {
            "text": {"dtype": "string", "id": None, "_type": "Value"},
            "label": {
                "num_classes": 2,
                "names": ["negative", "positive"],
                "id": None,
                "_type": "ClassLabel",
            },
        },
        "post_processed": None,
        "supervised_keys": None,
        "task_templates": None,
        "builder_name": "chn_senti_corp",
        "config_name": "default",
        "version": {
            "version_str": "0.0.0",
            "description": None,
            "major": 0,
            "minor": 0,
            "patch": 0,
        },
        "splits": {
            s: {"name": s, "num_bytes": 0, "num_examples": 6, "dataset_name": "ChnSentiCorp"}
            for s in hashes
        },
        "download_checksums": None,
        "download_size": 0,
        "post_processing_size": None,
        "dataset_size": 0,
        "size_in_bytes": 0,
    }
    (root / "dataset_infos.json").write_text(json.dumps({"lansinuote--ChnSentiCorp": info}))
    return root


def test_chnsenticorp_classlabel_names_map_to_the_release_ids(chnsenticorp_copy):
    task = load_task(TaskConfig(name="chnsenticorp", dataset=str(chnsenticorp_copy)))
    assert task.labels == ["0", "1"]
    assert [ex.label for ex in task.splits["train"][:2]] == ["1", "0"]
    assert {s: len(v) for s, v in task.splits.items()} == {"train": 6, "dev": 6, "test": 6}


MSRA_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


@pytest.fixture
def msra_copy(tmp_path) -> Path:
    """levow/msra_ner on its ``refs/convert/parquet`` revision (main holds only the loading
    script ``msra_ner.py``): ``msra_ner/train/0000.parquet`` and ``msra_ner/test/0000.parquet``
    with ``id`` (string), ``tokens`` (sequence of string) and ``ner_tags`` (sequence of
    ``ClassLabel(O, B-PER, I-PER, B-ORG, I-ORG, B-LOC, I-LOC)``), as the dataset card's
    ``dataset_info`` declares; no validation split. The script era ended each split with one
    empty sentence, which the copy keeps."""
    root = tmp_path / "msra_ner"
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=MSRA_TAGS)),
        }
    )
    sentences = [
        (list("张伟在北京工作"), [1, 2, 0, 5, 6, 0, 0]),
        (list("新华社报道"), [3, 4, 4, 0, 0]),
    ] * 10 + [([], [])]  # the trailing empty sentence
    for split in ("train", "test"):
        _parquet(
            root / f"msra_ner/{split}/0000.parquet",
            {
                "id": [str(i) for i in range(len(sentences))],
                "tokens": [t for t, _ in sentences],
                "ner_tags": [g for _, g in sentences],
            },
            features,
        )
    return root


def test_msra_loads_from_the_parquet_revision_and_skips_the_empty_sentence(msra_copy):
    task = load_task(TaskConfig(name="msra-ner", dataset=str(msra_copy)))
    assert task.stats["empty"] == {"train": 1, "dev": 1, "test": 1}
    tags = {ex.text: ex.tags for ex in task.splits["test"]}
    assert tags["张伟在北京工作"] == ("B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O")
    assert tags["新华社报道"] == ("B-ORG", "I-ORG", "I-ORG", "O", "O")


def test_selection_never_uses_the_reported_split(msra_copy):
    """MSRA has no dev split: checkpoints are chosen on a slice held out from train, and the
    reported split keeps its real name."""
    task = load_task(TaskConfig(name="msra-ner", dataset=str(msra_copy)))
    assert len(task.splits["dev"]) == 2 and len(task.splits["train"]) == 18
    assert len(task.splits["test"]) == 20
    assert task.split_name("test").startswith("'test' split of")
    assert task.split_name("test").endswith("never used for selection")
    assert "held out from train" in task.split_name("dev")


# The official XNLI 1.0 release (XNLI-1.0/xnli.dev.tsv, xnli.test.tsv): one tab-separated file
# for all languages with a header row. Its readers (Google BERT's XnliProcessor, XLM's
# get-data-xnli.sh, which cuts fields 1, 2, 7, 8) take column 0 as the language, 1 as the
# gold label and 6/7 as sentence1/sentence2, and pandas readers of it address the columns
# "sentence1"/"sentence2" by name. The columns after the eighth are not read by anyone here;
# the fixture fills them as the MultiNLI layout it extends (parses, promptID, pairID, genre,
# annotator labels) plus XNLI's tokenized copies. The XNLI-MT training file
# (XNLI-MT-1.0/multinli/multinli.train.zh.tsv) has the header premise, hypo, label, with
# "contradictory" for contradiction.
XNLI_HEADER = [
    "language",
    "gold_label",
    "sentence1_binary_parse",
    "sentence2_binary_parse",
    "sentence1_parse",
    "sentence2_parse",
    "sentence1",
    "sentence2",
    "promptID",
    "pairID",
    "genre",
    "label1",
    "label2",
    "label3",
    "label4",
    "label5",
    "sentence1_tokenized",
    "sentence2_tokenized",
    "match",
]


def _xnli_row(language, label, s1, s2, pair_id):
    fields = dict.fromkeys(XNLI_HEADER, "")
    fields.update(
        language=language,
        gold_label=label,
        sentence1=s1,
        sentence2=s2,
        promptID="1",
        pairID=pair_id,
        genre="facetoface",
        label1=label,
        match="True",
        sentence1_tokenized=" ".join(s1),
        sentence2_tokenized=" ".join(s2),
    )
    return "\t".join(fields[c] for c in XNLI_HEADER)


def test_xnli_reads_both_published_layouts(tmp_path):
    train = tmp_path / "multinli.train.zh.tsv"
    pairs = [
        ("他在跑步", "他在运动", "entailment"),
        ("天很冷", "天很热", "contradictory"),
        ("她在读书", "她喜欢书", "neutral"),
    ] * 4
    train.write_text(
        "premise\thypo\tlabel\n" + "".join(f"{a}\t{b}\t{c}\n" for a, b, c in pairs),
        encoding="utf-8",
    )
    official = {}
    for split in ("dev", "test"):
        rows = [
            _xnli_row("en", "neutral", "He runs.", "He moves.", "1e"),
            _xnli_row("zh", "entailment", "他在跑步", "他在运动", "1e"),
            _xnli_row("zh", "contradiction", "天很冷", "天很热", "2c"),
            _xnli_row("fr", "neutral", "Il court.", "Il bouge.", "1n"),
        ]
        official[split] = tmp_path / f"xnli.{split}.tsv"
        official[split].write_text("\t".join(XNLI_HEADER) + "\n" + "\n".join(rows) + "\n")
    task = load_task(TaskConfig(name="xnli", train=train, **official))
    assert task.labels == ["contradiction", "entailment", "neutral"]
    assert [(e.text, e.text_pair, e.label) for e in task.splits["test"]] == [
        ("他在跑步", "他在运动", "entailment"),
        ("天很冷", "天很热", "contradiction"),
    ]
    assert task.stats["filtered"] == {"dev": 2, "test": 2}  # the en and fr rows
    assert task.splits["train"][1].label == "contradiction"


# HFL's People's Daily NER (Chinese-BERT-wwm data/peopledaily/peopledaily.zip, the copy of
# ProHiryu/bert-chinese-ner data/): train.txt and dev.txt, one "char tag" pair per line separated
# by a space, a blank line between sentences, BIO tags over PER/LOC/ORG, no test file. The lines
# below are the first sentence of ProHiryu/bert-chinese-ner data/dev.txt.
PD_SENTENCE = [
    ("中", "B-ORG"),
    ("共", "I-ORG"),
    ("中", "I-ORG"),
    ("央", "I-ORG"),
    ("致", "O"),
    ("中", "B-ORG"),
    ("国", "I-ORG"),
    ("致", "I-ORG"),
    ("公", "I-ORG"),
    ("党", "I-ORG"),
    ("十", "I-ORG"),
    ("一", "I-ORG"),
    ("大", "I-ORG"),
    ("的", "O"),
    ("贺", "O"),
    ("词", "O"),
]
PD_OTHER = [
    ("邓", "B-PER"),
    ("小", "I-PER"),
    ("平", "I-PER"),
    ("在", "O"),
    ("北", "B-LOC"),
    ("京", "I-LOC"),
]


def test_peoples_daily_reads_hfl_files_and_reports_their_dev(tmp_path):
    def write(name, n):
        block = lambda sent: "\n".join(f"{c} {t}" for c, t in sent)  # noqa: E731
        text = "\n\n".join(block(PD_SENTENCE if i % 2 else PD_OTHER) for i in range(n))
        (tmp_path / name).write_text(text + "\n", encoding="utf-8")
        return tmp_path / name

    task = load_task(
        TaskConfig(name="peoples-daily-ner", train=write("train.txt", 40), dev=write("dev.txt", 6))
    )
    assert len(task.splits["test"]) == 6  # HFL's dev.txt is what gets scored
    assert len(task.splits["dev"]) == 4 and len(task.splits["train"]) == 36  # selection slice
    assert task.split_name("test") == "dev.txt of peoples-daily-ner, never used for selection"
    assert task.splits["test"][1].tags == tuple(t for _, t in PD_SENTENCE)


def _card(root: Path, configs: dict[str, dict[str, str]], info: str) -> None:
    """README.md front matter as the hub writes it: ``dataset_info`` (features) and ``configs``
    (config name -> split -> data file pattern)."""
    import yaml

    block = [
        {"config_name": name, "data_files": [{"split": s, "path": p} for s, p in files.items()]}
        for name, files in configs.items()
    ]
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text(
        f"---\n{info}{yaml.safe_dump({'configs': block}, sort_keys=False)}---\n",
        encoding="utf-8",
    )


TNEWS_CODES = [
    "100",
    "101",
    "102",
    "103",
    "104",
    "106",
    "107",
    "108",
    "109",
    "110",
    "112",
    "113",
    "114",
    "115",
    "116",
]


@pytest.fixture
def clue_copy(tmp_path) -> Path:
    """clue/clue: one config per task. Its card's ``dataset_info`` declares tnews as
    ``sentence`` (string), ``label`` (ClassLabel '100'..'116', 15 names), ``idx`` (int32), and
    ocnli as ``sentence1``, ``sentence2``, ``label`` (ClassLabel neutral, entailment,
    contradiction), ``idx``; CLUE's test labels are hidden (-1). Data files follow the hub's
    per-config layout (``<config>/<split>-00000-of-00001.parquet``, as facebook/xnli has)."""
    root = tmp_path / "clue"
    tnews = datasets.Features(
        {
            "sentence": datasets.Value("string"),
            "label": datasets.ClassLabel(names=TNEWS_CODES),
            "idx": datasets.Value("int32"),
        }
    )
    ocnli = datasets.Features(
        {
            "sentence1": datasets.Value("string"),
            "sentence2": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["neutral", "entailment", "contradiction"]),
            "idx": datasets.Value("int32"),
        }
    )
    titles = ["股市大涨创新高", "球队赢得总冠军", "新款手机发布", "电影票房破纪录"] * 5
    pairs = [("他在跑步", "他在运动"), ("天很冷", "天很热")] * 10
    for split in ("train", "validation", "test"):
        hidden = split == "test"
        _parquet(
            root / f"tnews/{split}-00000-of-00001.parquet",
            {
                "sentence": titles,
                "label": [-1 if hidden else i % 4 for i in range(20)],
                "idx": list(range(20)),
            },
            tnews,
        )
        _parquet(
            root / f"ocnli/{split}-00000-of-00001.parquet",
            {
                "sentence1": [a for a, _ in pairs],
                "sentence2": [b for _, b in pairs],
                "label": [-1 if hidden else 1 + i % 2 for i in range(20)],
                "idx": list(range(20)),
            },
            ocnli,
        )
    splits = ("train", "validation", "test")
    _card(
        root,
        {c: {s: f"{c}/{s}-*" for s in splits} for c in ("tnews", "ocnli")},
        "",
    )
    return root


@pytest.mark.parametrize("name", ["tnews", "ocnli"])
def test_clue_tasks_score_on_dev_and_select_on_held_out_train(clue_copy, name):
    task = load_task(TaskConfig(name=name, dataset=str(clue_copy)))
    assert len(task.splits["test"]) == 20  # CLUE's validation split, as LERT reports it
    assert len(task.splits["dev"]) == 2 and len(task.splits["train"]) == 18
    assert task.split_name("test").startswith("'validation' split of")
    if name == "tnews":
        assert task.labels == TNEWS_CODES and task.splits["test"][0].label == "100"
    else:
        assert task.splits["test"][0].label == "entailment"


@pytest.fixture
def xnli_copy(tmp_path) -> Path:
    """facebook/xnli: config ``zh`` with ``zh/{train,test,validation}-00000-of-00001.parquet``
    (the "Add zh data files" commit) and features premise, hypothesis (strings) and label
    (ClassLabel entailment, neutral, contradiction), as its card declares."""
    root = tmp_path / "xnli"
    features = datasets.Features(
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
        }
    )
    rows = {
        "premise": ["他在跑步", "天很冷"] * 5,
        "hypothesis": ["他在运动", "天很热"] * 5,
        "label": [0, 2] * 5,
    }
    for split in ("train", "test", "validation"):
        _parquet(root / f"zh/{split}-00000-of-00001.parquet", rows, features)
    _card(root, {"zh": {s: f"zh/{s}-*" for s in ("train", "test", "validation")}}, "")
    return root


def test_hub_xnli_zh(xnli_copy):
    task = load_task(TaskConfig(name="xnli", dataset=str(xnli_copy)))
    first = task.splits["test"][0]
    assert (first.text, first.text_pair, first.label) == ("他在跑步", "他在运动", "entailment")
    assert len(task.splits["dev"]) == 10  # XNLI has its own validation split


@pytest.fixture
def lcqmc_copy(tmp_path) -> Path:
    """C-MTEB/LCQMC: ``data/{train,validation,test}-00000-of-00001-<hash>.parquet`` (the file
    names of its main branch) with ``sentence1``, ``sentence2`` and an integer ``score`` (0/1),
    the C-MTEB pair-classification layout (QBQTC's card declares score as int64)."""
    root = tmp_path / "LCQMC"
    features = datasets.Features(
        {
            "sentence1": datasets.Value("string"),
            "sentence2": datasets.Value("string"),
            "score": datasets.Value("int64"),
        }
    )
    rows = {
        "sentence1": ["怎么开通花呗", "今天天气"] * 5,
        "sentence2": ["花呗如何开通", "明天吃什么"] * 5,
        "score": [1, 0] * 5,
    }
    names = {
        "train": "83493a6b9e29a4d0",
        "validation": "ae04bea7d65ea894",
        "test": "cb3f2553acbb3663",
    }
    for split, digest in names.items():
        _parquet(root / f"data/{split}-00000-of-00001-{digest}.parquet", rows, features)
    _card(root, {"default": {s: f"data/{s}-*" for s in names}}, "")
    return root


@pytest.mark.parametrize("name", ["lcqmc", "bq"])
def test_cmteb_pairs(lcqmc_copy, name):
    task = load_task(TaskConfig(name=name, dataset=str(lcqmc_copy)))
    assert task.labels == ["0", "1"]
    first = task.splits["test"][0]
    assert (first.text, first.text_pair, first.label) == ("怎么开通花呗", "花呗如何开通", "1")


SQUAD_FEATURES = {
    "id": "string",
    "context": "string",
    "question": "string",
}


def _squad_features():
    """``id``, ``context``, ``question`` (strings) and ``answers``: a sequence of ``{text: string,
    answer_start: int32}``, as the hfl/cmrc2018 card's ``dataset_info`` declares (clue/clue's
    cmrc2018 and drcd configs declare the same)."""
    return datasets.Features(
        {
            **{k: datasets.Value(v) for k, v in SQUAD_FEATURES.items()},
            "answers": datasets.Sequence(
                {"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}
            ),
        }
    )


def _squad_rows(prefix: str, n: int) -> dict:
    # the first dev question of CMRC 2018 as the hfl/cmrc2018 card shows it, repeated
    context = "《战国无双3》（）是由光荣和ω-force开发的战国无双系列的正统第三续作。"
    return {
        "id": [f"{prefix}_{i}_QUERY_0" for i in range(n)],
        "context": [context] * n,
        "question": ["《战国无双3》是由哪两个公司合作开发的？"] * n,
        "answers": [{"text": ["光荣和ω-force"] * 3, "answer_start": [11, 11, -1]}] * n,
    }


@pytest.fixture
def cmrc2018_copy(tmp_path) -> Path:
    """hfl/cmrc2018 on its ``refs/convert/parquet`` revision (main holds only ``cmrc2018.py``):
    ``default/{train,validation,test}/0000.parquet``; its "test" split is the trial set."""
    root = tmp_path / "cmrc2018"
    for split, n in (("train", 20), ("validation", 6), ("test", 4)):
        _parquet(root / f"default/{split}/0000.parquet", _squad_rows(split, n), _squad_features())
    return root


def test_cmrc2018_scores_dev_and_selects_on_held_out_train(cmrc2018_copy):
    task = load_task(TaskConfig(name="cmrc2018", dataset=str(cmrc2018_copy)))
    assert task.type == "qa" and task.metric == "qa_f1"
    assert len(task.splits["test"]) == 6  # CMRC 2018's dev set, as LERT reports it
    assert len(task.splits["dev"]) == 2 and len(task.splits["train"]) == 18
    assert task.split_name("test").startswith("'validation' split of")
    first = task.splits["test"][0]
    assert first.answers == ["光荣和ω-force"] * 3 and first.answer_start == 11
    assert first.context[first.answer_start :].startswith("光荣和ω-force")


def test_drcd_from_the_clue_copy(tmp_path):
    """clue/clue config ``drcd``: ``drcd/{train,validation,test}-00000-of-00001.parquet`` with
    answers in every split (DRCD publishes its test answers)."""
    root = tmp_path / "clue"
    for split, n in (("train", 10), ("validation", 4), ("test", 5)):
        _parquet(
            root / f"drcd/{split}-00000-of-00001.parquet", _squad_rows(split, n), _squad_features()
        )
    _card(root, {"drcd": {s: f"drcd/{s}-*" for s in ("train", "validation", "test")}}, "")
    task = load_task(TaskConfig(name="drcd", dataset=str(root)))
    assert [len(task.splits[s]) for s in ("train", "dev", "test")] == [10, 4, 5]
    assert task.split_name("test") == f"test split of {root}"
