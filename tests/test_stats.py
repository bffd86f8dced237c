"""Scores with their noise: per-example counts reproduce the metrics, and the paired bootstrap
behaves as it must on constructed cases."""

import random

import numpy as np
import pytest
from compress.eval.stats import paired_delta, score_interval, within_noise

from compress.scoring import example_counts, score_counts
from compress.tasks import Example, TaskData

CLS = TaskData("t", "classification", ["neg", "pos"], {})
NER = TaskData("t", "ner", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], {})


def _cls_counts(correct: list[bool]) -> np.ndarray:
    examples = [Example(text="x", label="pos") for _ in correct]
    predicted = ["pos" if c else "neg" for c in correct]
    return example_counts(CLS, examples, predicted)


def test_identical_predictions_give_exactly_zero_with_a_zero_width_interval():
    counts = _cls_counts([i % 3 != 0 for i in range(300)])
    delta, interval = paired_delta("classification", counts, counts)
    assert delta == 0.0 and interval == [0.0, 0.0] and within_noise(interval)


def test_a_known_difference_is_covered_and_not_noise():
    better = _cls_counts([True] * 500)
    worse = _cls_counts([i % 5 != 0 for i in range(500)])  # 80% correct
    delta, (low, high) = paired_delta("classification", better, worse)
    assert delta == pytest.approx(0.2)
    assert low <= 0.2 <= high and low > 0 and not within_noise([low, high])


def test_a_small_difference_on_few_examples_is_within_noise():
    a = _cls_counts([i % 4 != 0 for i in range(200)])  # 75%
    b = _cls_counts([i % 4 != 0 and i != 1 for i in range(200)])  # one fewer right
    delta, interval = paired_delta("classification", a, b)
    assert delta == pytest.approx(0.005) and within_noise(interval)


def test_score_interval_brackets_the_score():
    counts = _cls_counts([i % 10 < 8 for i in range(1000)])
    low, high = score_interval("classification", counts)
    assert low < 0.8 < high and high - low < 0.06


def test_entity_counts_reproduce_seqeval_f1():
    from seqeval.metrics import f1_score

    rng = random.Random(0)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    gold = [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(200)]
    pred = [[t if rng.random() < 0.7 else rng.choice(tags) for t in s] for s in gold]
    examples = [Example(tokens=tuple("x" * len(g)), tags=tuple(g)) for g in gold]
    counts = example_counts(NER, examples, pred)
    assert score_counts("ner", counts) == pytest.approx(f1_score(gold, pred))
    low, high = score_interval("ner", counts)
    assert low < f1_score(gold, pred) < high
