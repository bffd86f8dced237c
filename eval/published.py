"""Published LERT scores (ymcui/LERT README, arXiv 2211.05344), shown only beside matching runs.

These are other people's numbers: the report prints them in their own table, labelled
"published", and never mixes them with measured rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from eval.schema import PublishedRow

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
    return [
        PublishedRow(model=m, task=task, score=PUBLISHED[(m, task)], source=SOURCE)
        for m in models
        if (m, task) in PUBLISHED
    ]
