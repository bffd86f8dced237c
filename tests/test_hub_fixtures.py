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
        ([], []),  # the trailing empty sentence
    ]
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
    train = task.splits["train"]
    assert len(train) == 2 and task.stats["empty"] == {"train": 1, "dev": 1, "test": 1}
    assert train[0].tags == ("B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O")
    assert train[1].tags == ("B-ORG", "I-ORG", "I-ORG", "O", "O")
