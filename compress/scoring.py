"""Task metrics shared by training (dev checks) and the evaluator: accuracy for classification,
entity-level micro F1 (seqeval) for NER, CMRC 2018's official F1 (and EM) for extractive QA."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from compress.data import Encoded, batch_indices, collate
from compress.tasks import Example, TaskData

# batch -> logits; for QA, start and end logits stacked on the last axis (batch, tokens, 2)
Forward = Callable[[dict[str, torch.Tensor]], np.ndarray]


def output_logits(outputs) -> torch.Tensor:
    """A model's logits; a QA model's start and end logits stacked as ``[..., 2]``."""
    if getattr(outputs, "start_logits", None) is not None:
        return torch.stack([outputs.start_logits, outputs.end_logits], dim=-1)
    return outputs.logits


def predict(
    forward: Forward, enc: Encoded, batch_size: int = 64, desc: str | None = None
) -> list[np.ndarray]:
    """Logits per example, in the split's order (batches are length-sorted internally); with
    ``desc``, a progress bar over the batches (a large model on a full split takes hours)."""
    from tqdm.auto import tqdm

    out: list[np.ndarray | None] = [None] * len(enc)
    batches = batch_indices(enc, batch_size, shuffle=False)
    for idx in tqdm(batches, desc=desc, unit="batch", disable=desc is None):
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


def predicted_labels(task: TaskData, enc: Encoded, logits: list[np.ndarray]) -> list:
    """The label of each example (classification), the tag of each character (NER) or the
    answer text of each question (QA: the best span over the question's windows)."""
    if task.type == "qa":
        from compress.qa import best_spans

        assert enc.windows is not None and enc.qa_examples is not None
        width = max(len(row) for row in logits)
        start = np.full((len(logits), width), -np.inf, dtype=np.float32)
        end = np.full_like(start, -np.inf)
        for w, row in enumerate(logits):
            start[w, : len(row)], end[w, : len(row)] = row[:, 0], row[:, 1]
        answers = best_spans(
            enc.qa_examples,
            enc.windows,
            start,
            end,
            task.options.get("n_best", 20),
            task.options.get("max_answer_len", 30),
        )
        return [answers[ex.id] for ex in enc.qa_examples]
    if task.type == "classification":
        return [task.labels[int(np.argmax(row))] for row in logits]
    assert enc.word_ids is not None and enc.n_words is not None
    return [
        word_tags(lg, wids, n, task.labels)
        for lg, wids, n in zip(logits, enc.word_ids, enc.n_words, strict=True)
    ]


def example_counts(task: TaskData, examples: list[Example], predicted: list) -> np.ndarray:
    """Per-example sufficient statistics of the metric, so that the metric of any subset or
    resample is a function of their sums: ``[correct]`` for accuracy; ``[true positive,
    predicted, gold]`` entities for entity F1 (seqeval's default entity rules)."""
    if task.type == "classification":
        return np.array([[float(p == ex.label)] for p, ex in zip(predicted, examples, strict=True)])
    if task.type == "qa":
        from compress.qa_metric import exact_match, f1

        return np.array(
            [
                [exact_match(p, ex.answers), f1(p, ex.answers)]
                for p, ex in zip(predicted, examples, strict=True)
            ],
            dtype=float,
        ).reshape(-1, 2)
    from seqeval.metrics.sequence_labeling import get_entities

    rows = []
    for tags, ex in zip(predicted, examples, strict=True):
        pred, gold = set(get_entities(list(tags))), set(get_entities(list(ex.tags)))
        rows.append([len(pred & gold), len(pred), len(gold)])
    return np.array(rows, dtype=float).reshape(-1, 3)


def score_counts(task_type: str, counts: np.ndarray) -> float:
    """The task metric of per-example ``counts`` (``example_counts``) as a fraction:
    accuracy, entity F1 = 2 TP / (predicted + gold), or QA's mean F1 over questions."""
    if task_type == "classification":
        return float(counts[:, 0].mean()) if len(counts) else 0.0
    if task_type == "qa":
        return float(counts[:, 1].mean()) if len(counts) else 0.0
    tp, pred, gold = counts.sum(0)
    return float(2 * tp / (pred + gold)) if pred + gold else 0.0


def torch_forward(model, device: str = "cpu") -> Forward:
    """A ``Forward`` for a transformers model in eval mode."""

    @torch.inference_mode()
    def forward(batch: dict[str, torch.Tensor]) -> np.ndarray:
        batch = {k: v.to(device) for k, v in batch.items()}
        return output_logits(model(**batch)).float().cpu().numpy()

    return forward


def torch_counts(
    model, task: TaskData, examples: list[Example], enc: Encoded, batch_size: int = 64
) -> np.ndarray:
    """Per-example counts (``example_counts``) of a PyTorch task model, run in eval mode."""
    was_training = model.training
    model.eval()
    device = str(next(model.parameters()).device)
    logits = predict(torch_forward(model, device), enc, batch_size)
    model.train(was_training)
    return example_counts(task, examples, predicted_labels(task, enc, logits))


def evaluate_torch(
    model, task: TaskData, examples: list[Example], enc: Encoded, batch_size: int = 64
) -> float:
    return score_counts(task.type, torch_counts(model, task, examples, enc, batch_size))


def per_class(task: TaskData, examples: list[Example], predicted: list) -> dict[str, dict]:
    """Precision, recall, F1 and support per class (classification) or per entity type (NER);
    nothing for QA (its EM is in ``other_scores``)."""
    if task.type == "qa":
        return {}
    if task.type == "ner":
        from seqeval.metrics import classification_report

        report = classification_report(
            [list(ex.tags) for ex in examples],
            [list(p) for p in predicted],
            output_dict=True,
            zero_division=0,
        )
        return {
            name: {
                "precision": float(v["precision"]),
                "recall": float(v["recall"]),
                "f1": float(v["f1-score"]),
                "support": int(v["support"]),
            }
            for name, v in report.items()
            if not name.endswith(" avg")
        }
    gold = [ex.label for ex in examples]
    out = {}
    for label in task.labels:
        tp = sum(p == g == label for p, g in zip(predicted, gold, strict=True))
        n_pred, n_gold = predicted.count(label), gold.count(label)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[label] = {"precision": precision, "recall": recall, "f1": f1, "support": n_gold}
    return out


def majority_prediction(task: TaskData, examples: list[Example]) -> tuple[str, list]:
    """The trivial baseline: the most frequent train label for every example (classification)
    or all-O (NER), with its description."""
    if task.type == "qa":
        return "the empty answer", [""] * len(examples)
    if task.type == "ner":
        return "all O", [["O"] * len(ex.tags or ()) for ex in examples]
    labels = [ex.label for ex in task.splits["train"]]
    common = max(task.labels, key=labels.count)
    return f"always {common!r} (most frequent in train)", [common] * len(examples)


def other_scores(task_type: str, counts: np.ndarray) -> dict[str, float]:
    """Scores a task reports beside its metric, as fractions: QA's EM and F1 (and their
    average, as CMRC 2018's leaderboard gives it)."""
    if task_type != "qa" or not len(counts):
        return {}
    em, f1 = float(counts[:, 0].mean()), float(counts[:, 1].mean())
    return {"em": em, "f1": f1, "average": (em + f1) / 2}
