"""Examples to model inputs: tokenisation, label alignment for NER, context windows for QA,
length-bucketed batches."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from compress.qa import QAExample, Windows, windows
from compress.tasks import Example, TaskData

IGNORE = -100  # label id the loss and the metrics skip


@dataclass
class Encoded:
    """A tokenised split. For NER, ``word_ids`` maps each token back to its character."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    labels: list  # int per example, or a list of ids per token (IGNORE off the first sub-token)
    word_ids: list[list[int | None]] | None = None
    n_words: list[int] | None = None
    # qa: one row per window; the windows (example index, offsets) and their examples
    windows: Windows | None = None
    qa_examples: list[QAExample] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(examples: list[Example], tokenizer, task: TaskData, max_len: int) -> Encoded:
    if task.type == "qa":
        wins = windows(
            examples,  # type: ignore[arg-type]  (QAExample for qa tasks)
            tokenizer,
            max_len,
            task.options.get("doc_stride", 128),
            task.options.get("max_query_len", 64),
        )
        labels = list(zip(wins.start_positions, wins.end_positions, strict=True))
        return Encoded(wins.input_ids, wins.token_type_ids, labels, None, None, wins, examples)
    label2id = task.label2id
    if task.type == "ner":
        enc = tokenizer(
            [list(ex.tokens) for ex in examples],
            is_split_into_words=True,
            truncation=True,
            max_length=max_len,
        )
        word_ids = [enc.word_ids(i) for i in range(len(examples))]
        labels = [
            _align(ex.tags, ids, label2id) for ex, ids in zip(examples, word_ids, strict=True)
        ]
        return Encoded(
            enc["input_ids"],
            enc["token_type_ids"],
            labels,
            word_ids,
            [len(ex.tokens) for ex in examples],
        )
    pairs = [ex.text_pair for ex in examples]
    enc = tokenizer(
        [ex.text for ex in examples],
        pairs if any(pairs) else None,
        truncation=True,
        max_length=max_len,
    )
    return Encoded(enc["input_ids"], enc["token_type_ids"], [label2id[ex.label] for ex in examples])


def _align(tags, word_ids: list[int | None], label2id: dict[str, int]) -> list[int]:
    out, prev = [], None
    for wid in word_ids:
        out.append(IGNORE if wid is None or wid == prev else label2id[tags[wid]])
        prev = wid
    return out


def collate(enc: Encoded, indices: list[int], with_labels: bool = True) -> dict[str, torch.Tensor]:
    """Pad the examples at ``indices`` to their longest; attention mask marks the real tokens."""
    width = max(len(enc.input_ids[i]) for i in indices)
    ids = np.zeros((len(indices), width), dtype=np.int64)
    types = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    for row, i in enumerate(indices):
        n = len(enc.input_ids[i])
        ids[row, :n] = enc.input_ids[i]
        types[row, :n] = enc.token_type_ids[i]
        mask[row, :n] = 1
    batch = {
        "input_ids": torch.from_numpy(ids),
        "attention_mask": torch.from_numpy(mask),
        "token_type_ids": torch.from_numpy(types),
    }
    if with_labels and enc.windows is not None:
        batch["start_positions"] = torch.tensor([enc.labels[i][0] for i in indices])
        batch["end_positions"] = torch.tensor([enc.labels[i][1] for i in indices])
    elif with_labels:
        if enc.word_ids is None:
            batch["labels"] = torch.tensor([enc.labels[i] for i in indices])
        else:
            labels = np.full((len(indices), width), IGNORE, dtype=np.int64)
            for row, i in enumerate(indices):
                labels[row, : len(enc.labels[i])] = enc.labels[i]
            batch["labels"] = torch.from_numpy(labels)
    return batch


def batch_indices(enc: Encoded, batch_size: int, shuffle: bool, seed: int = 0) -> list[list[int]]:
    """Index batches of similar lengths (less padding). Shuffled: random pools of 50 batches are
    sorted by length, cut, and the batches shuffled; otherwise sorted by length."""
    order = list(range(len(enc)))
    lengths = [len(ids) for ids in enc.input_ids]
    if not shuffle:
        order.sort(key=lambda i: lengths[i])
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng = random.Random(seed)
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def batches(
    enc: Encoded, batch_size: int, shuffle: bool = False, seed: int = 0, with_labels: bool = True
) -> list[dict[str, torch.Tensor]]:
    return [collate(enc, idx, with_labels) for idx in batch_indices(enc, batch_size, shuffle, seed)]


def encode_splits(task: TaskData, tokenizer, max_len: int, splits=("train", "dev")) -> dict:
    return {s: encode(task.splits[s], tokenizer, task, max_len) for s in splits}
