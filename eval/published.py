"""Published LERT scores (ymcui/LERT README, arXiv 2211.05344), shown only beside matching runs,
and TextBrewer's published reading-comprehension students, shown beside CMRC 2018 / DRCD runs.

These are other people's numbers: the report prints them in their own table, labelled
"published", and never mixes them with measured rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from compress.eval.schema import PublishedRow

SOURCE = "LERT README / arXiv 2211.05344 (dev; max, average in brackets)"

# (model id, task name) -> published score as printed
PUBLISHED: dict[tuple[str, str], str] = {
    ("hfl/chinese-lert-base", "chnsenticorp"): "94.9 (94.7)",
    ("hfl/chinese-lert-base", "tnews"): "57.5",
    ("hfl/chinese-lert-base", "xnli"): "80.2 (79.5)",
    ("hfl/chinese-lert-base", "ocnli"): "78.2",
    ("hfl/chinese-lert-base", "msra-ner"): "95.7 (test)",
    ("hfl/chinese-lert-large", "chnsenticorp"): "95.6 (94.9)",
    ("hfl/chinese-lert-large", "tnews"): "58.7",
    ("hfl/chinese-lert-large", "xnli"): "81.7 (81.2)",
    ("hfl/chinese-lert-large", "ocnli"): "79.4",
    ("hfl/chinese-lert-large", "msra-ner"): "96.3 (96.0) (test)",
    ("hfl/chinese-lert-small", "chnsenticorp"): "94.0 (test)",
    ("hfl/chinese-lert-small", "xnli"): "75.2 (test)",
    ("hfl/chinese-lert-small", "lcqmc"): "85.3 (test)",
    ("hfl/chinese-lert-small", "bq"): "83.4 (test)",
    # extractive MRC: EM/F1 with the official CMRC 2018 script
    ("hfl/chinese-lert-base", "cmrc2018"): "EM 69.2 / F1 88.1",
    ("hfl/chinese-lert-large", "cmrc2018"): "EM 71.2 / F1 89.5",
    ("hfl/chinese-lert-small", "cmrc2018"): "EM 67.8 / F1 85.2 (test)",
    ("hfl/chinese-lert-small", "drcd"): "EM 83.2 / F1 89.4 (test)",
}


# Task-level references shown beside every run of the task, whatever it loads: TextBrewer's
# published distillation results (RoBERTa-wwm-ext teacher; airaria/TextBrewer README, EM/F1 dev).
TEXTBREWER = "TextBrewer README (RoBERTa-wwm-ext teacher, dev EM/F1)"
TASK_REFERENCES: dict[str, list[tuple[str, str]]] = {
    "cmrc2018": [
        ("RoBERTa-wwm-ext (teacher)", "EM 68.8 / F1 86.4"),
        ("T3 (3 layers, 768)", "EM 66.4 / F1 84.2"),
        ("T3-small (3 layers, 384)", "EM 58.0 / F1 79.3"),
        ("T4-tiny (4 layers, 312)", "EM 61.8 / F1 81.8"),
        ("Electra-small", "EM 66.5 / F1 84.9"),
    ],
    "drcd": [
        ("RoBERTa-wwm-ext (teacher)", "EM 86.5 / F1 92.5"),
        ("T3 (3 layers, 768)", "EM 78.2 / F1 86.4"),
        ("T3-small (3 layers, 384)", "EM 75.8 / F1 84.8"),
        ("T4-tiny (4 layers, 312)", "EM 77.3 / F1 86.1"),
        ("Electra-small", "EM 85.5 / F1 91.3"),
    ],
}


def model_id(source: str) -> str:
    """The hub id a source stands for: itself, or ``hfl/<folder>`` for a local directory."""
    if source.startswith("hfl/"):
        return source
    return f"hfl/{Path(source).expanduser().name}"


def published_rows(sources: Iterable[str], task: str) -> list[PublishedRow]:
    """Published scores of the models a run loaded (``sources``) on its task."""
    task = task.lower()
    models = sorted({model_id(s) for s in sources})
    rows = [
        PublishedRow(model=m, task=task, score=PUBLISHED[(m, task)], source=SOURCE)
        for m in models
        if (m, task) in PUBLISHED
    ]
    return rows + [
        PublishedRow(model=m, task=task, score=score, source=TEXTBREWER)
        for m, score in TASK_REFERENCES.get(task, [])
    ]
