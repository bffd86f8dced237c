"""Published LERT scores (ymcui/LERT README, arXiv 2211.05344), shown only beside matching runs.

These are other people's numbers: the report prints them in their own table, labelled
"published", and never mixes them with measured rows.
"""

from __future__ import annotations

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


def _model_ids(recipe: dict) -> set[str]:
    """Hub ids a recipe's steps load (a local directory counts by its folder name)."""
    ids = set()
    for step in recipe.get("steps", []):
        for key in ("model", "student", "init"):
            value = step.get(key)
            source = value.get("source") if isinstance(value, dict) else value
            if isinstance(source, str):
                name = source.rstrip("/").split("/")[-1]
                ids.add(source if source.startswith("hfl/") else f"hfl/{name}")
    return ids


def published_rows(recipe: dict) -> list[dict]:
    task = str(recipe.get("task", {}).get("name", "")).lower()
    return [
        {"model": model, "task": task, "score": PUBLISHED[(model, task)], "source": SOURCE}
        for model in sorted(_model_ids(recipe))
        if (model, task) in PUBLISHED
    ]
