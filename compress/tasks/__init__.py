"""The task registry: each task yields train/dev/test examples and knows its labels and metric."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from compress.errors import DataError, RecipeError
from compress.tasks.config import TaskConfig, TaskType

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
# the metric of each task type; qa_f1 is CMRC 2018's official F1 (EM is reported beside it)
METRICS = {"classification": "accuracy", "ner": "entity_f1", "qa": "qa_f1"}


@dataclass(frozen=True)
class Example:
    """A classification example (``text``, optional ``text_pair``, ``label``) or an NER sentence
    (``tokens`` with one BIO tag each in ``tags``)."""

    text: str = ""
    text_pair: str | None = None
    label: str | None = None
    tokens: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None


@dataclass
class TaskData:
    name: str
    type: TaskType
    labels: list[str]
    splits: dict[str, list[Example]]
    stats: dict = field(default_factory=dict)
    # what each evaluation split really is, where its name alone would mislead
    split_names: dict[str, str] = field(default_factory=dict)
    # qa: windowing and answer extraction (doc_stride, max_query_len, n_best, max_answer_len)
    options: dict = field(default_factory=dict)

    def split_name(self, split: str) -> str:
        return self.split_names.get(split, split)

    @property
    def metric(self) -> str:
        return METRICS[self.type]

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    def texts(self, split: str = "train") -> list[str]:
        """Every text of a split (both sides of a pair, question and context), for vocabularies
        and calibration."""
        if self.type == "qa":
            return [t for ex in self.splits[split] for t in (ex.question, ex.context)]
        out = []
        for ex in self.splits[split]:
            out.append("".join(ex.tokens) if ex.tokens is not None else ex.text)
            if ex.text_pair:
                out.append(ex.text_pair)
        return out


Loader = Callable[[TaskConfig], TaskData]


# Where a task's data can come from; each source has its own options in the task: block.
SOURCE_OPTIONS = {
    "local": ("train", "dev", "test", "columns"),
    "hub": ("dataset", "subset", "revision", "data_files", "split_names"),
}


@dataclass(frozen=True)
class TaskEntry:
    loader: Loader
    description: str
    type: str  # classification | ner | qa, or "any" (task.type says)
    sources: frozenset[str] = frozenset({"local", "hub"})  # "embedded": ships with a package

    @property
    def metric(self) -> str:
        return METRICS.get(self.type, "-")


TASKS: dict[str, TaskEntry] = {}


def register_task(
    name: str, description: str, type: str = "any", sources: tuple[str, ...] = ("local", "hub")
):
    def add(fn: Loader) -> Loader:
        TASKS[name] = TaskEntry(fn, description, type, frozenset(sources))
        return fn

    return add


def task_type_of(cfg: TaskConfig) -> str | None:
    """classification, ner or qa, as far as the config and the registry tell."""
    registered_tasks()
    entry = TASKS.get(cfg.name)
    if entry is None:
        return None
    return cfg.type if entry.type == "any" else entry.type


def _with_benchmark_defaults(cfg: TaskConfig) -> TaskConfig:
    """``cfg`` with its benchmark's column and label defaults filled in (as the loader does),
    or as it is for a task that is not a benchmark."""
    from compress.tasks.benchmarks import BENCHMARKS, configure

    bench = next((b for b in BENCHMARKS if b.name == cfg.name), None)
    return configure(cfg, bench) if bench else cfg


def pair_source(cfg: TaskConfig) -> str | None:
    """What makes the task feed text pairs (token type 1 for the second text), or None: QA's
    question and context, a text_pair_column, or a benchmark's own pair column."""
    if task_type_of(cfg) == "qa":
        return "its question and context"
    if cfg.text_pair_column:
        return f"task.text_pair_column {cfg.text_pair_column!r}"
    column = _with_benchmark_defaults(cfg).text_pair_column
    return f"its text pairs (column {column!r})" if column else None


def configured_labels(cfg: TaskConfig) -> list[str] | None:
    """The task's labels in id order where the recipe or its benchmark names them (else they
    come from the data, known only once it is read)."""
    labels = _with_benchmark_defaults(cfg).labels
    return list(labels) if labels else None


def check_task_config(cfg: TaskConfig) -> list[str]:
    """Options that do not fit the task's data source, found before any work."""
    from compress.validation import suggest

    registered_tasks()
    entry = TASKS.get(cfg.name)
    if entry is None:
        hint = suggest(cfg.name, list(TASKS))
        return [f"task.name: unknown task {cfg.name!r}{hint} (python -m compress tasks lists them)"]
    given = {
        source: [k for k in keys if getattr(cfg, k) not in (None, {}, [])]
        for source, keys in SOURCE_OPTIONS.items()
    }
    problems = [
        f"task.{keys[0]}: a {source} option, but task {cfg.name!r} reads "
        f"{' or '.join(sorted(entry.sources))} data"
        for source, keys in given.items()
        if keys and source not in entry.sources
    ]
    if given["local"] and given["hub"]:
        problems.append(
            f"task: both local files ({', '.join(given['local'])}) and hub options "
            f"({', '.join(given['hub'])}) given; keep one source"
        )
    if cfg.train is None and (given["local"] or entry.sources == {"local"}):
        problems.append("task.train: local data needs at least a train file")
    if entry.sources == {"hub"} and not cfg.dataset:
        problems.append("task.dataset: a hub task needs a datasets id")
    if entry.type == "any" and cfg.type is None:
        problems.append(f"task.type: set classification, ner or qa for task {cfg.name!r}")
    return problems


def registered_tasks() -> dict[str, TaskEntry]:
    from compress.tasks import benchmarks, embedded, files, hub, reading  # noqa: F401

    return TASKS


def load_task(cfg: TaskConfig) -> TaskData:
    """Load, check and trim a task's splits, logging their sizes."""
    problems = check_task_config(cfg)
    if problems:
        raise RecipeError("; ".join(problems))
    data = TASKS[cfg.name].loader(cfg)
    for split in SPLITS:
        if not data.splits.get(split):
            raise DataError(f"task {cfg.name}: the {split} split is empty")
    _trim(data, cfg)
    data.stats["counts"] = {s: len(data.splits[s]) for s in SPLITS}
    log.info(
        "task %s (%s, %d labels): %s",
        data.name,
        data.type,
        len(data.labels),
        ", ".join(f"{s} {n}" for s, n in data.stats["counts"].items()),
    )
    return data


def _trim(data: TaskData, cfg: TaskConfig) -> None:
    if cfg.max_train_examples and len(data.splits["train"]) > cfg.max_train_examples:
        rng = random.Random(cfg.split_seed)
        data.splits["train"] = rng.sample(data.splits["train"], cfg.max_train_examples)
    if cfg.max_eval_examples:
        for split in ("dev", "test"):
            data.splits[split] = data.splits[split][: cfg.max_eval_examples]


def seeded_split(items: list, dev_size: int, test_size: int, seed: int) -> dict[str, list]:
    """Shuffle with ``seed`` and cut dev, test and train (the rest) from a single list."""
    if dev_size + test_size >= len(items):
        raise DataError(
            f"cannot cut dev {dev_size} + test {test_size} from {len(items)} examples; "
            "lower task.dev_size / task.test_size"
        )
    order = list(items)
    random.Random(seed).shuffle(order)
    return {
        "dev": order[:dev_size],
        "test": order[dev_size : dev_size + test_size],
        "train": order[dev_size + test_size :],
    }


def check_bio(tags: list[str] | tuple[str, ...], where: str) -> None:
    """Raise DataError unless ``tags`` is a valid BIO sequence."""
    prev = "O"
    for i, tag in enumerate(tags):
        if tag != "O" and not (tag.startswith(("B-", "I-")) and len(tag) > 2):
            raise DataError(f"{where}: tag {tag!r} at position {i + 1} is not O, B-X or I-X")
        if tag.startswith("I-") and prev[2:] != tag[2:]:
            raise DataError(
                f"{where}: invalid BIO: {tag!r} at position {i + 1} follows {prev!r} "
                f"(an I-{tag[2:]} must follow B-{tag[2:]} or I-{tag[2:]})"
            )
        prev = tag


def bio_labels(entity_types: list[str] | set[str]) -> list[str]:
    return ["O"] + [f"{p}-{t}" for t in sorted(entity_types) for p in ("B", "I")]


def hold_out_selection(data: TaskData, cfg: TaskConfig, reported: str) -> None:
    """When the split a task is scored on is also its only selection split (CLUE hides its test
    labels; MSRA has no dev; HFL's People's Daily has no test), checkpoints are chosen on a
    seeded slice held out from train instead, so the reported score is not best-of-N on the
    data it is reported on. ``reported`` names the scored split honestly."""
    train = list(data.splits["train"])
    size = max(1, min(cfg.dev_size, len(train) // 10))
    random.Random(cfg.split_seed).shuffle(train)
    data.splits["dev"], data.splits["train"] = train[:size], train[size:]
    data.split_names = {
        "dev": f"{size} examples held out from train, for checkpoint selection",
        "test": f"{reported}, never used for selection",
    }
    log.info(
        "selecting checkpoints on %d examples held out from train; scoring on %s", size, reported
    )
