"""Task metrics shared by training (dev checks) and the evaluator: accuracy for classification,
entity-level micro F1 (seqeval) for NER."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from compress.data import Encoded, batch_indices, collate
from compress.tasks import Example, TaskData

Forward = Callable[[dict[str, torch.Tensor]], np.ndarray]  # batch -> logits


def predict(forward: Forward, enc: Encoded, batch_size: int = 64) -> list[np.ndarray]:
    """Logits per example, in the split's order (batches are length-sorted internally)."""
    out: list[np.ndarray | None] = [None] * len(enc)
    for idx in batch_indices(enc, batch_size, shuffle=False):
        logits = forward(collate(enc, idx, with_labels=False))
        for row, i in enumerate(idx):
            out[i] = logits[row, : len(enc.input_ids[i])] if logits.ndim == 3 else logits[row]
    return out  # type: ignore[return-value]


def word_tags(
    logits: np.ndarray, word_ids: list[int | None], n_words: int, id2label: list[str]
) -> list[str]:
    """One tag per character: the first sub-token's prediction; truncated characters get O."""
    tags = ["O"] * n_words
    seen: set[int] = set()
    for pos, wid in enumerate(word_ids):
        if wid is not None and wid not in seen:
            seen.add(wid)
            tags[wid] = id2label[int(np.argmax(logits[pos]))]
    return tags


def score(task: TaskData, examples: list[Example], enc: Encoded, logits: list[np.ndarray]) -> float:
    """The task's metric as a fraction in [0, 1]."""
    if task.type == "classification":
        predicted = np.array([int(np.argmax(row)) for row in logits])
        return float((predicted == np.array(enc.labels)).mean())
    from seqeval.metrics import f1_score

    assert enc.word_ids is not None and enc.n_words is not None
    predicted_tags = [
        word_tags(lg, wids, n, task.labels)
        for lg, wids, n in zip(logits, enc.word_ids, enc.n_words, strict=True)
    ]
    gold = [list(ex.tags) for ex in examples]
    return float(f1_score(gold, predicted_tags))


def torch_forward(model, device: str = "cpu") -> Forward:
    """A ``Forward`` for a transformers model in eval mode."""

    @torch.inference_mode()
    def forward(batch: dict[str, torch.Tensor]) -> np.ndarray:
        batch = {k: v.to(device) for k, v in batch.items()}
        return model(**batch).logits.float().cpu().numpy()

    return forward


def evaluate_torch(
    model, task: TaskData, examples: list[Example], enc: Encoded, batch_size: int = 64
) -> float:
    was_training = model.training
    model.eval()
    device = str(next(model.parameters()).device)
    result = score(task, examples, enc, predict(torch_forward(model, device), enc, batch_size))
    model.train(was_training)
    return result
