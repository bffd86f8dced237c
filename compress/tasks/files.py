"""Your own data: classification from CSV/TSV/JSONL, NER from CoNLL-style character files."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from compress.errors import DataError
from compress.tasks import Example, TaskData, bio_labels, check_bio, register_task, seeded_split
from compress.tasks.config import TaskConfig
from compress.texts import text_problem, token_problem

log = logging.getLogger(__name__)

Row = tuple[int, dict]  # (line number, fields)
PerFile = Callable[[Path, TaskConfig], TaskConfig]


class BadRows:
    """Raises on a bad row, or counts and skips it when the task says ``on_bad_rows: skip``."""

    def __init__(self, skip: bool):
        self.skip = skip
        self.skipped: dict[str, int] = {}
        self.dropped: dict[str, int] = {}  # labels the task marks unusable, filtered by design
        self.empty: dict[str, int] = {}  # empty sentences, skipped
        self.filtered: dict[str, int] = {}  # rows task.keep_rows leaves out

    def __call__(self, split: str, message: str) -> None:
        if not self.skip:
            raise DataError(f"{message} (set task.on_bad_rows: skip to drop such rows)")
        self.skipped[split] = self.skipped.get(split, 0) + 1
        log.debug("skipped: %s", message)


# a field may hold a whole long document; the csv module's default limit is 131,072 characters
csv.field_size_limit(2**31 - 1)
# encodings to name when a file is not in the one the task expects (GB18030 covers GBK and GB2312)
LIKELY_ENCODINGS = ("utf-8", "gb18030", "big5", "utf-16")


def read_text(path: Path, encoding: str) -> str:
    """The file's text; a file in another encoding is one error naming it and the fix."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig" if encoding.lower() in ("utf-8", "utf8") else encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        found = next((e for e in LIKELY_ENCODINGS if e != encoding and _decodes(data, e)), None)
        hint = (
            f"it reads as {found.upper()}: set task.encoding: {found}"
            if found
            else "set task.encoding to the file's encoding"
        )
        raise DataError(f"{path}:{line}: not valid {encoding} text; {hint}") from exc
    except LookupError as exc:
        raise DataError(f"task.encoding: unknown encoding {encoding!r}") from exc


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def _rows(path: Path, cfg: TaskConfig, split: str, bad: BadRows) -> Iterator[Row]:
    """Rows as ``{column: text}`` with their line numbers. A delimited row must have exactly the
    header's fields; a JSON line must be an object. Rows that are not go to ``bad``."""
    suffix = path.suffix.lower()
    text = read_text(path, cfg.encoding)
    if suffix in (".csv", ".tsv", ".txt"):
        yield from _delimited_rows(path, text, cfg.columns, suffix, split, bad)
    elif suffix in (".jsonl", ".json"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                bad(split, f"{path}:{n}: not a JSON object: {exc}")
                continue
            if not isinstance(row, dict):
                bad(split, f"{path}:{n}: expected a JSON object per line")
                continue
            yield n, row
    else:
        raise DataError(f"{path}: unknown format {suffix!r}; use .csv, .tsv/.txt or .jsonl")


def _delimited_rows(path, text, columns, suffix, split, bad: BadRows) -> Iterator[Row]:
    delimiter = "," if suffix == ".csv" else "\t"
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=delimiter,
        quoting=csv.QUOTE_MINIMAL if suffix == ".csv" else csv.QUOTE_NONE,
    )
    header = list(columns) if columns else next(reader, None)
    if not header:
        raise DataError(f"{path}: empty file")
    if len(set(header)) < len(header):
        raise DataError(f"{path}:1: repeated column names in the header {header}")
    where_header = "task.columns" if columns else "the header"
    start = reader.line_num
    for fields in reader:
        line, start = start + 1, reader.line_num
        if not fields or fields == [""]:
            continue
        if fields == header:
            bad(split, f"{path}:{line}: the header repeats as a data row")
            continue
        if len(fields) != len(header):
            quote = " (a field with the delimiter must be quoted)" if suffix == ".csv" else ""
            bad(
                split,
                f"{path}:{line}: {len(fields)} fields, {where_header} has {len(header)} "
                f"({', '.join(header)}){quote}",
            )
            continue
        yield line, dict(zip(header, fields, strict=True))


def classification_examples(path: Path, split: str, cfg: TaskConfig, bad: BadRows) -> list[Example]:
    examples = []
    columns = [cfg.text_column, cfg.label_column] + (
        [cfg.text_pair_column] if cfg.text_pair_column else []
    )
    for line, row in _rows(path, cfg, split, bad):
        where = f"{path}:{line}"
        missing = [c for c in columns if c not in row]
        if missing:
            raise DataError(
                f"{where}: no column {missing[0]!r} (columns: {sorted(row)}); "
                "set task.text_column / task.label_column / task.text_pair_column"
            )
        if any(str(row.get(k, "")) != v for k, v in cfg.keep_rows.items()):
            bad.filtered[split] = bad.filtered.get(split, 0) + 1
            continue
        nested = [c for c in columns if isinstance(row[c], (dict, list))]
        if nested:
            bad(split, f"{where}: column {nested[0]!r} holds a {type(row[nested[0]]).__name__}")
            continue
        text = str(row[cfg.text_column] or "").strip()
        label = "" if row[cfg.label_column] is None else str(row[cfg.label_column]).strip()
        if not text:
            bad(split, f"{where}: empty text")
            continue
        if not label:
            bad(split, f"{where}: row without a label")
            continue
        if "\n" in label:
            bad(split, f"{where}: the label spans lines (an unclosed quote?)")
            continue
        if label in cfg.drop_labels:
            bad.dropped[split] = bad.dropped.get(split, 0) + 1
            continue
        pair = str(row[cfg.text_pair_column] or "").strip() if cfg.text_pair_column else None
        fields = [(cfg.text_column, text)] + ([(cfg.text_pair_column, pair)] if pair else [])
        problem = next(
            (f"column {c!r} {p}" for c, v in fields if (p := text_problem(v)) is not None), None
        )
        if problem:
            bad(split, f"{where}: {problem}")
            continue
        examples.append(Example(text=text, text_pair=pair, label=cfg.label_map.get(label, label)))
    return examples


def conll_examples(path: Path, split: str, cfg: TaskConfig, bad: BadRows) -> list[Example]:
    """Sentences of ``char<TAB>tag`` lines separated by blank lines."""
    examples: list[Example] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 1

    def flush() -> None:
        if tokens:
            mapped = [cfg.label_map.get(t, t) for t in tags]
            try:
                check_bio(mapped, f"{path}:{start}")
                examples.append(
                    Example(text="".join(tokens), tokens=tuple(tokens), tags=tuple(mapped))
                )
            except DataError as exc:
                bad(split, str(exc))
        tokens.clear()
        tags.clear()

    skipping = False  # the rest of a sentence with a bad token
    for n, line in enumerate(read_text(path, cfg.encoding).splitlines(), 1):
        parts = line.split("\t") if "\t" in line else line.split()
        if not line.strip():
            flush()
            start, skipping = n + 1, False
            continue
        if len(parts) < 2 or not parts[0] or not parts[-1]:
            raise DataError(f"{path}:{n}: expected 'char<TAB>tag', got {line.rstrip()!r}")
        problem = token_problem(parts[0])
        if problem:
            bad(split, f"{path}:{n}: {problem}")
            tokens.clear()  # the sentence goes with it: its tags would no longer line up
            tags.clear()
            skipping = True
            continue
        if skipping:
            continue
        tokens.append(parts[0])
        tags.append(parts[-1].strip())
    flush()
    return examples


def _read_split(path: Path, split: str, cfg: TaskConfig, bad: BadRows) -> list[Example]:
    if not path.is_file():
        raise DataError(f"task.{split}: file {path} does not exist")
    read = conll_examples if cfg.type == "ner" else classification_examples
    examples = read(path, split, cfg, bad)
    if not examples:
        raise DataError(f"task.{split}: {path} has no usable examples")
    return examples


def check_labels(data: TaskData, bad: BadRows, files: dict[str, Path], given: bool = False) -> None:
    """Every label must be in the label set; a bad one names its split's file and text, and,
    when the set was read off the train split (``given``: the recipe listed it), that train is
    where the label is missing."""
    allowed = set(data.labels)
    train = files.get("train", "the train split")
    for split, examples in data.splits.items():
        kept = []
        for ex in examples:
            found = [ex.label] if ex.tags is None else list(ex.tags)
            unknown = [t for t in found if t not in allowed]
            if unknown:
                if given or split == "train":
                    why = f"is not in the label set {sorted(allowed)}"
                else:
                    why = (
                        f"is in the {split} split but never in train ({train}, labels "
                        f"{sorted(allowed)}), so no model can learn it: add train rows with it, "
                        "or drop it with task.drop_labels"
                    )
                bad(
                    split,
                    f"{files.get(split, split)}: label {unknown[0]!r} of {ex.text[:30]!r} {why}",
                )
                continue
            kept.append(ex)
        data.splits[split] = kept


@register_task(
    "local",
    "your own files: task.train/dev/test (csv, tsv, jsonl; conll for ner; SQuAD-style json for qa)",
    sources=("local",),
)
def local_files(cfg: TaskConfig, per_file: PerFile | None = None) -> TaskData:
    """The task from its local files; ``per_file(path, cfg)`` may adapt the options to one
    file's layout (a benchmark whose splits ship in different formats)."""
    assert cfg.type is not None and cfg.train is not None  # check_task_config
    if cfg.type == "qa":
        from compress.tasks.reading import qa_local

        return qa_local(cfg)
    bad = BadRows(cfg.on_bad_rows == "skip")
    paths = {s: p for s, p in (("train", cfg.train), ("dev", cfg.dev), ("test", cfg.test)) if p}
    splits = {
        split: _read_split(path, split, per_file(path, cfg) if per_file else cfg, bad)
        for split, path in paths.items()
    }
    if "dev" not in splits or "test" not in splits:
        # only what is missing is cut from train (MSRA-NER ships train and test, no dev)
        dev_size = 0 if "dev" in splits else cfg.dev_size
        test_size = 0 if "test" in splits else cfg.test_size
        log.info("no dev/test file: cutting dev %d and test %d from train", dev_size, test_size)
        train = splits["train"]
        if dev_size + test_size >= len(train):
            wanted = " + ".join(
                f"{name} {size}" for name, size in (("dev", dev_size), ("test", test_size)) if size
            )
            raise DataError(
                f"task.train: {cfg.train} has {len(train)} usable examples, too few to cut "
                f"{wanted} from and keep a train split; give task.dev and task.test files, or "
                "lower task.dev_size / task.test_size"
            )
        cut = seeded_split(train, dev_size, test_size, cfg.split_seed)
        splits = {s: splits.get(s, cut[s]) if s != "train" else cut["train"] for s in cut}
    data = TaskData(cfg.name, cfg.type, derive_labels(cfg, splits["train"], paths["train"]), splits)
    check_labels(data, bad, paths, given=bool(cfg.labels))
    data.stats.update(skipped=bad.skipped, dropped_labels=bad.dropped, filtered=bad.filtered)
    if bad.skipped:
        log.warning("skipped bad rows: %s", bad.skipped)
    if bad.dropped:
        log.info("dropped examples with unusable labels %s: %s", cfg.drop_labels, bad.dropped)
    return data


def derive_labels(cfg: TaskConfig, train: list[Example], source: object = "train") -> list[str]:
    """The recipe's label list, else the sorted labels (entity types) seen in train
    (``source``: where train was read, for messages)."""
    if cfg.labels:
        return list(cfg.labels)
    if cfg.type == "ner":
        return bio_labels({t[2:] for ex in train for t in ex.tags or () if t != "O"})
    labels = sorted({ex.label for ex in train if ex.label is not None})
    if len(labels) == 1:
        raise DataError(
            f"task.train: every one of the {len(train)} usable train rows ({source}) has the "
            f"label {labels[0]!r}; a classifier needs at least two labels in train"
        )
    if len(labels) > max(20, len(train) // 2):
        raise DataError(
            f"task.label_column {cfg.label_column!r} has {len(labels)} distinct values in "
            f"{len(train)} train rows (e.g. {labels[:3]}): is text in the label column? Check "
            "task.label_column / task.columns, or list the classes in task.labels"
        )
    return labels
