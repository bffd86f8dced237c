"""Whether a choice made on dev rests on anything: each candidate against the trivial predictor
(the majority class, all-O for NER, the empty answer for QA) on the same dev examples, by the
evaluator's paired bootstrap interval, and what the choice is then: a finding, within noise, or
no signal.

Short trials that still predict one class all score the majority share; the first of them would
win by its position and be reported as measured. Here a candidate whose interval against the
trivial predictor reaches 0 has not left it, and a choice among such candidates is "no signal".
"""

from __future__ import annotations

import numpy as np

from compress.eval.stats import paired_delta
from compress.scoring import example_counts, majority_prediction, score_counts, torch_counts

NO_SIGNAL = "no signal"
WITHIN_NOISE = "within noise"
FINDING = "finding"
# what the trivial predictor is called in sentences ("all trials at the majority baseline")
BASELINE_NAMES = {"classification": "majority", "ner": "all-O", "qa": "empty-answer"}


def trivial_dev(task) -> tuple[dict, np.ndarray]:
    """The trivial predictor on dev: ``({"description", "dev"}, per-example counts)``."""
    examples = task.splits["dev"]
    described, predicted = majority_prediction(task, examples)
    counts = example_counts(task, examples, predicted)
    dev = round(score_counts(task.type, counts), 5)
    return {"name": BASELINE_NAMES[task.type], "description": described, "dev": dev}, counts


def against_trivial(task_type: str, counts: np.ndarray, trivial: np.ndarray, seed: int) -> dict:
    """The paired difference from the trivial predictor, and whether it left it (the whole 95%
    interval above 0)."""
    delta, interval = paired_delta(task_type, counts, trivial, seed)
    return {
        "vs_trivial": round(delta, 5),
        "vs_trivial_interval": [round(x, 5) for x in interval],
        "left_baseline": bool(interval[0] > 0),
    }


def outcome(task_type: str, best: np.ndarray, runner_up: np.ndarray | None, left: bool, seed: int):
    """``(outcome, interval)``: no signal when the best did not leave the trivial predictor, a
    finding when it is also ahead of the runner-up by its paired interval, else within noise
    (and the best-minus-runner-up interval, where there is a runner-up)."""
    if not left:
        return NO_SIGNAL, None
    if runner_up is None:
        return WITHIN_NOISE, None
    _, interval = paired_delta(task_type, best, runner_up, seed)
    interval = [round(x, 5) for x in interval]
    return (FINDING if interval[0] > 0 else WITHIN_NOISE), interval


def torch_dev_counts(model, task, enc, batch_size: int = 64) -> np.ndarray:
    """Per-example dev counts of a PyTorch task model (``enc``: the encoded splits)."""
    return torch_counts(model, task, task.splits["dev"], enc["dev"], batch_size)
