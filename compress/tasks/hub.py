"""Datasets from the Hugging Face hub through ``datasets.load_dataset``."""

from __future__ import annotations

import logging

from compress.errors import DataError
from compress.tasks import Example, TaskData, check_bio, hold_out_selection, register_task
from compress.tasks.config import TaskConfig
from compress.tasks.files import BadRows, check_labels, derive_labels
from compress.texts import text_problem, token_problem

log = logging.getLogger(__name__)

DEFAULT_SPLIT_NAMES = {"train": "train", "dev": "validation", "test": "test"}


def load_hub_splits(cfg: TaskConfig) -> dict:
    """``{split: datasets.Dataset}``; a clear error when the hub cannot be reached."""
    import datasets

    names = {**DEFAULT_SPLIT_NAMES, **cfg.split_names}
    try:
        loaded = datasets.load_dataset(
            cfg.dataset, cfg.subset, revision=cfg.revision, data_files=cfg.data_files
        )
    except Exception as exc:  # network, auth and missing-dataset errors all land here
        raise DataError(
            f"could not load dataset {cfg.dataset!r}"
            f"{f' ({cfg.subset})' if cfg.subset else ''} from the hub: {exc}. "
            "Offline, download it where the hub is reachable and use task.name: local with "
            "task.train/dev/test files, or set HF_ENDPOINT to a mirror."
        ) from exc
    missing = [f"{ours}->{theirs}" for ours, theirs in names.items() if theirs not in loaded]
    if missing:
        raise DataError(
            f"dataset {cfg.dataset!r} has splits {list(loaded)}; missing {missing}. "
            "Map them with task.split_names: {dev: <name>, ...}"
        )
    return {ours: loaded[theirs] for ours, theirs in names.items()}


def hub_examples(
    rows, split: str, cfg: TaskConfig, names: list[str] | None, bad: BadRows
) -> list[Example]:
    """Rows to examples; integer class labels become names through the dataset's features."""
    out = []
    for i, row in enumerate(rows):
        where = f"{cfg.dataset}[{split}] row {i}"
        if cfg.type == "ner":
            if not row[cfg.tokens_column]:  # e.g. the empty last sentence of MSRA's script era
                bad.empty[split] = bad.empty.get(split, 0) + 1
                continue
            tags = [
                names[t] if names and isinstance(t, int) else str(t) for t in row[cfg.tags_column]
            ]
            tags = [cfg.label_map.get(t, t) for t in tags]
            check_bio(tags, where)
            tokens = tuple(str(t) for t in row[cfg.tokens_column])
            problem = next((p for t in tokens if (p := token_problem(t)) is not None), None)
            if problem:
                bad(split, f"{where}: {problem}")
                continue
            out.append(Example(text="".join(tokens), tokens=tokens, tags=tuple(tags)))
            continue
        label = row[cfg.label_column]
        if str(label) in cfg.drop_labels:
            bad.dropped[split] = bad.dropped.get(split, 0) + 1
            continue
        label = names[label] if names and isinstance(label, int) and label >= 0 else str(label)
        pair = row[cfg.text_pair_column] if cfg.text_pair_column else None
        fields = [(cfg.text_column, row[cfg.text_column])]
        fields += [(cfg.text_pair_column, pair)] if pair is not None else []
        problem = next(
            (f"column {c!r} {p}" for c, v in fields if (p := text_problem(v)) is not None), None
        )
        if problem:
            bad(split, f"{where}: {problem}")
            continue
        out.append(
            Example(
                text=str(row[cfg.text_column]),
                text_pair=pair,
                label=cfg.label_map.get(label, label),
            )
        )
    return out


def _label_names(dataset, column: str) -> list[str] | None:
    feature = dataset.features.get(column)
    feature = getattr(feature, "feature", feature)  # a Sequence of ClassLabel for NER tags
    return list(getattr(feature, "names", []) or []) or None


@register_task(
    "hub", "any datasets id: task.dataset (+ subset, columns, split_names)", sources=("hub",)
)
def hub_task(cfg: TaskConfig) -> TaskData:
    loaded = load_hub_splits(cfg)
    bad = BadRows(cfg.on_bad_rows == "skip")
    column = cfg.tags_column if cfg.type == "ner" else cfg.label_column
    names = {s: _label_names(d, column) for s, d in loaded.items()}
    splits = {s: hub_examples(d, s, cfg, names[s], bad) for s, d in loaded.items()}
    labels = cfg.labels or (
        names["train"]
        if cfg.type == "classification" and names["train"]
        else derive_labels(cfg, splits["train"], f"{cfg.dataset}[train]")
    )
    data = TaskData(cfg.dataset, cfg.type, list(labels), splits)
    source_names = {**DEFAULT_SPLIT_NAMES, **cfg.split_names}
    data.split_names = {s: f"{source_names[s]} split of {cfg.dataset}" for s in ("dev", "test")}
    if source_names["dev"] == source_names["test"]:
        hold_out_selection(data, cfg, f"{source_names['test']!r} split of {cfg.dataset}")
    check_labels(
        data, bad, {"train": f"{cfg.dataset}[train]"}, given=bool(cfg.labels or names["train"])
    )
    data.stats.update(
        skipped=bad.skipped, dropped_labels=bad.dropped, empty=bad.empty, source=cfg.dataset
    )
    if bad.empty:
        log.info("skipped empty sentences: %s", bad.empty)
    return data
