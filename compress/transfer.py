"""Unlabelled transfer data for distillation: texts the teacher labels once, streamed from disk.

The texts are read lazily into an Arrow table on disk (``datasets.Dataset.from_generator``),
tokenised and labelled by the teacher with ``Dataset.map`` (each result written to Arrow files
as it is made), and read back batch by batch through the memory map while the student trains.
Memory therefore stays flat however many rows there are; only one epoch's row order is held.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from compress import dist
from compress.data import Encoded, collate
from compress.errors import DataError
from compress.texts import text_problem

log = logging.getLogger(__name__)


class TransferConfig(BaseModel):
    """Unlabelled texts the teacher labels (soft logits) for the student to learn from, mixed
    with the labelled train split; classification tasks only.

    ``files``: ``.txt`` (one text per line, or ``text<TAB>pair``), ``.csv``/``.tsv`` with a header,
    or ``.jsonl``; or a hub ``dataset`` (``subset``, ``split``) with a text column.
    """

    model_config = ConfigDict(extra="forbid")

    files: list[Path] = Field(default_factory=list)
    dataset: str | None = None
    subset: str | None = None
    split: str = "train"
    text_column: str = "text"
    text_pair_column: str | None = None
    encoding: str = "utf-8"
    max_examples: int | None = Field(None, ge=1, description="use at most this many rows")
    ratio: float = Field(
        1.0, gt=0, description="transfer rows per labelled train row in each epoch"
    )
    rest_of_train: bool = Field(
        False,
        description="with the step's labelled_rows: the train split's other rows, their labels "
        "dropped, join the transfer texts",
    )

    def sources(self) -> list[str]:
        rest = ["the train split's unlabelled rest"] if self.rest_of_train else []
        return rest + [str(f) for f in self.files] + ([self.dataset] if self.dataset else [])


def iter_rows(cfg: TransferConfig) -> Iterator[dict]:
    """``{"text", "text_pair"}`` rows of every source, lazily, at most ``max_examples``."""
    rows = _all_rows(cfg)
    yield from rows if cfg.max_examples is None else itertools.islice(rows, cfg.max_examples)


def _all_rows(cfg: TransferConfig) -> Iterator[dict]:
    for path in cfg.files:
        yield from _file_rows(Path(path), cfg)
    if cfg.dataset:
        import datasets

        try:
            rows = datasets.load_dataset(cfg.dataset, cfg.subset, split=cfg.split, streaming=True)
        except Exception as exc:  # network, auth and missing-dataset errors all land here
            raise DataError(f"transfer.dataset {cfg.dataset!r}: could not load it: {exc}") from exc
        for i, row in enumerate(rows):
            yield _pick(row, cfg, f"{cfg.dataset}[{cfg.split}] row {i}")


def _file_rows(path: Path, cfg: TransferConfig) -> Iterator[dict]:
    if not path.is_file():
        raise DataError(f"transfer.files: {path} does not exist")
    suffix = path.suffix.lower()
    with path.open(encoding=cfg.encoding, newline="") as fh:
        if suffix in (".csv", ".tsv"):
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            for n, row in enumerate(reader, 2):
                yield _pick(row, cfg, f"{path}:{n}")
        elif suffix == ".jsonl":
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except ValueError as exc:
                        raise DataError(f"{path}:{n}: not a JSON object: {exc}") from exc
                    yield _pick(row, cfg, f"{path}:{n}")
        else:  # plain text: one text, or text<TAB>pair
            for n, line in enumerate(fh, 1):
                parts = line.rstrip("\n").split("\t")
                if parts[0].strip():
                    row = {"text": parts[0], "text_pair": parts[1] if len(parts) > 1 else None}
                    yield _checked(row, f"{path}:{n}")


def _pick(row: dict, cfg: TransferConfig, where: str) -> dict:
    if not isinstance(row, dict) or cfg.text_column not in row:
        raise DataError(f"{where}: no {cfg.text_column!r} column (set transfer.text_column)")
    pair = None
    if cfg.text_pair_column:
        if cfg.text_pair_column not in row:
            raise DataError(f"{where}: no {cfg.text_pair_column!r} column")
        pair = _scalar(row[cfg.text_pair_column])
    return _checked({"text": _scalar(row[cfg.text_column]), "text_pair": pair}, where)


def _scalar(value):
    """A number read from JSON is a text too; a list, an object or null is not."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _checked(row: dict, where: str) -> dict:
    """The row, if the tokenizer can take its texts; else one error naming where it is."""
    for key in ("text", "text_pair"):
        if key == "text_pair" and row[key] is None:
            continue
        problem = text_problem(row[key])
        if problem:
            raise DataError(f"{where}: the {key.replace('_', ' ')} {problem}")
    return row


@dataclass
class TransferSet:
    """The tokenised (and, with a logits cache, teacher-labelled) rows, memory-mapped."""

    rows: object  # datasets.Dataset with input_ids, token_type_ids[, logits]
    labelled: bool  # whether the teacher's logits are stored with the rows

    def __len__(self) -> int:
        return len(self.rows)  # type: ignore[arg-type]


def _rows_and(extra: list[dict], cfg: TransferConfig) -> Iterator[dict]:
    yield from extra
    yield from iter_rows(cfg)


def build_transfer(
    cfg: TransferConfig, tokenizer, max_len: int, work_dir: Path, extra: list[dict] | None = None
) -> TransferSet:
    """Read and tokenise the transfer rows (``extra`` rows first: the train split's unlabelled
    rest) into Arrow files under ``work_dir``."""
    import datasets

    work_dir.mkdir(parents=True, exist_ok=True)
    raw = datasets.Dataset.from_generator(
        _rows_and,
        gen_kwargs={"extra": extra or [], "cfg": cfg},
        features=datasets.Features(
            {"text": datasets.Value("string"), "text_pair": datasets.Value("string")}
        ),
        cache_dir=str(work_dir / "raw"),
    )
    if len(raw) == 0:
        raise DataError(f"transfer: no rows in {', '.join(cfg.sources())}")
    pairs = cfg.text_pair_column is not None or any(
        p is not None for p in raw.select(range(min(len(raw), 100)))["text_pair"]
    )

    def tokenize(batch):
        enc = tokenizer(
            batch["text"],
            batch["text_pair"] if pairs else None,
            truncation=True,
            max_length=max_len,
        )
        return {
            "input_ids": enc["input_ids"],
            "token_type_ids": enc["token_type_ids"],
            "length": [len(ids) for ids in enc["input_ids"]],
        }

    rows = raw.map(
        tokenize,
        batched=True,
        remove_columns=["text", "text_pair"],
        cache_file_name=str(work_dir / "tokens.arrow"),
        desc="transfer: tokenise",
    )
    return TransferSet(rows, labelled=False)


def _collate(rows: dict, with_logits: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """A padded batch of tokenised rows (as the labelled data's), and their stored logits."""
    enc = Encoded(rows["input_ids"], rows["token_type_ids"], labels=[])
    batch = collate(enc, list(range(len(enc))), with_labels=False)
    logits = torch.tensor(np.asarray(rows["logits"], dtype=np.float32)) if with_logits else None
    return batch, logits


def label_with_teacher(data: TransferSet, forward, batch_size: int, work_dir: Path) -> TransferSet:
    """The teacher's logits for every row, once, written beside the tokens (Arrow)."""

    def label(rows):
        batch, _ = _collate(rows, with_logits=False)
        return {"logits": forward(batch).tolist()}

    rows = data.rows.map(  # type: ignore[attr-defined]
        label,
        batched=True,
        batch_size=batch_size,
        cache_file_name=str(work_dir / "labelled.arrow"),
        desc="transfer: teacher logits",
    )
    return TransferSet(rows, labelled=True)


def epoch_batches(data: TransferSet, per_epoch: int, batch_size: int, seed: int, epoch: int):
    """``per_epoch`` rows drawn without replacement for this epoch (cycling through the set
    across epochs), in batches of similar length; each read from the memory map when needed.
    Yields ``[batch, [teacher logits]]`` (labelled set) or the batch alone."""
    n = len(data)
    rng = random.Random(seed + epoch)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    start = ((epoch - 1) * per_epoch) % n
    chosen = [order[(start + i) % n] for i in range(min(per_epoch, n))]
    lengths = data.rows.select(chosen)["length"]  # type: ignore[attr-defined]
    by_length = [i for _, i in sorted(zip(lengths, chosen, strict=True))]
    batches = [by_length[i : i + batch_size] for i in range(0, len(by_length), batch_size)]
    rng.shuffle(batches)
    batches = dist.shard(batches)  # with several processes, this one's share
    for idx in batches:
        rows = data.rows[idx]  # type: ignore[index]
        batch, logits = _collate(rows, data.labelled)
        yield [batch, [logits]] if data.labelled else batch
