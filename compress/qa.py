"""Extractive question answering (CMRC 2018, DRCD): SQuAD-style examples, sliding windows over
the context with character offsets, and n-best span post-processing back to the context.

Windows follow the original BERT ``run_squad.py`` that HFL's CMRC 2018 / DRCD baselines build
on: ``[CLS] question [SEP] context window [SEP]``, the question cut to ``max_query_len`` tokens,
window starts ``doc_stride`` context tokens apart (a step, not an overlap), the last window ending
at the context's end. A training window whose context does not hold the whole answer points at
``[CLS]`` (position 0), as there.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compress.errors import DataError
from compress.texts import text_problem

log = logging.getLogger(__name__)


@dataclass
class QAExample:
    id: str
    question: str
    context: str
    answers: list[str]  # every reference answer (all are scored)
    # where the first answer starts in ``context`` (training); None when it cannot be found
    answer_start: int | None = None

    @property
    def answer(self) -> str:
        return self.answers[0] if self.answers else ""


@dataclass
class ReadStats:
    questions: int = 0
    relocated: int = 0  # answer_start wrong (-1, or off by a few characters); found by search
    unlocatable: int = 0  # the answer text is not in the context at all
    examples_of: dict[str, list[str]] = field(default_factory=dict)  # kind -> a few ids

    def as_dict(self) -> dict:
        return {
            "questions": self.questions,
            "relocated": self.relocated,
            "unlocatable": self.unlocatable,
            "examples": self.examples_of,
        }


def locate(context: str, text: str, start: int) -> int | None:
    """The answer's start in ``context``: ``start`` when the text is there, else its first
    occurrence (``context.index(text)``, as HFL's baseline and TextBrewer do), else None."""
    if text and start >= 0 and context[start : start + len(text)] == text:
        return start
    found = context.find(text) if text else -1
    return found if found >= 0 else None


def read_squad_json(path: Path, encoding: str = "utf-8") -> tuple[list[QAExample], ReadStats]:
    """Examples of a SQuAD-v1.1-style file: ``data[].paragraphs[].{context, qas[].{id,
    question, answers[].{text, answer_start}}}``. Malformed entries are errors naming their
    place in the file; answers whose ``answer_start`` is wrong are located by search and
    counted."""
    try:
        doc = json.loads(Path(path).read_text(encoding=encoding))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable SQuAD-style JSON file: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError(f"{path}: expected a JSON object with a 'data' list (SQuAD v1.1 layout)")
    examples, stats = [], ReadStats()
    for i, article in enumerate(doc["data"]):
        for j, para in enumerate(_field(article, "paragraphs", f"data[{i}]", path)):
            where = f"data[{i}].paragraphs[{j}]"
            context = _text_field(para, "context", where, path)
            for k, qa in enumerate(_field(para, "qas", where, path)):
                here = f"{where}.qas[{k}]"
                answers = _field(qa, "answers", here, path)
                texts = [
                    _field(a, "text", f"{here}.answers[{n}]", path) for n, a in enumerate(answers)
                ]
                example = QAExample(
                    id=str(_field(qa, "id", here, path)),
                    question=_text_field(qa, "question", here, path),
                    context=context,
                    answers=texts,
                )
                if answers:
                    given = int(answers[0].get("answer_start", -1))
                    example.answer_start = locate(context, texts[0], given)
                    kind = (
                        "unlocatable"
                        if example.answer_start is None
                        else "relocated"
                        if example.answer_start != given
                        else None
                    )
                    if kind:
                        setattr(stats, kind, getattr(stats, kind) + 1)
                        stats.examples_of.setdefault(kind, [])
                        if len(stats.examples_of[kind]) < 5:
                            stats.examples_of[kind].append(example.id)
                stats.questions += 1
                examples.append(example)
    if stats.relocated or stats.unlocatable:
        log.info(
            "%s: %d questions; %d answers found by search (answer_start wrong), %d not in their "
            "context (kept for scoring, not trained on)",
            path,
            stats.questions,
            stats.relocated,
            stats.unlocatable,
        )
    return examples, stats


def _text_field(node, key: str, where: str, path: Path) -> str:
    value = _field(node, key, where, path)
    problem = text_problem(value)
    if problem:
        raise DataError(f"{path}: {where}.{key} {problem}")
    return value


def _field(node, key: str, where: str, path: Path):
    if not isinstance(node, dict) or key not in node:
        raise DataError(f"{path}: {where} has no {key!r} (expected the SQuAD v1.1 layout)")
    return node[key]


@dataclass
class Windows:
    """Model inputs, one row per window, and what maps each window back to its example."""

    input_ids: list[list[int]] = field(default_factory=list)
    token_type_ids: list[list[int]] = field(default_factory=list)
    example_index: list[int] = field(default_factory=list)
    # per token: (start, end) characters in the example's context, None outside the context
    offsets: list[list[tuple[int, int] | None]] = field(default_factory=list)
    start_positions: list[int] = field(default_factory=list)  # 0 ([CLS]) when not inside
    end_positions: list[int] = field(default_factory=list)


def windows(
    examples: list[QAExample],
    tokenizer,
    max_len: int,
    doc_stride: int,
    max_query_len: int,
) -> Windows:
    """Every example cut into windows of at most ``max_len`` tokens (see the module doc)."""
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    out = Windows()
    for index, ex in enumerate(examples):
        question = tokenizer(ex.question, add_special_tokens=False)["input_ids"][:max_query_len]
        # the whole context, cut into windows below: no "longer than the maximum" warning
        context = tokenizer(
            ex.context, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        ids, spans = context["input_ids"], context["offset_mapping"]
        room = max_len - len(question) - 3
        if room <= 0:
            raise DataError(
                f"question {ex.id}: max_seq_len {max_len} leaves no room for the context after "
                f"a {len(question)}-token question; raise max_seq_len or lower max_query_len"
            )
        answer = _answer_tokens(ex, spans)
        for start in _window_starts(len(ids), room, doc_stride):
            end = min(start + room, len(ids))  # exclusive
            first = len(question) + 2  # position of the window's first context token
            out.input_ids.append([cls, *question, sep, *ids[start:end], sep])
            out.token_type_ids.append([0] * first + [1] * (end - start + 1))
            out.offsets.append([None] * first + [tuple(s) for s in spans[start:end]] + [None])
            out.example_index.append(index)
            inside = answer is not None and start <= answer[0] and answer[1] < end
            out.start_positions.append(first + answer[0] - start if inside else 0)
            out.end_positions.append(first + answer[1] - start if inside else 0)
    return out


def _window_starts(n_tokens: int, room: int, stride: int) -> list[int]:
    """Start of each window: every ``stride`` tokens, until one reaches the end."""
    starts, start = [0], 0
    while start + room < n_tokens:
        start += min(room, stride)
        starts.append(start)
    return starts


def _answer_tokens(ex: QAExample, spans) -> tuple[int, int] | None:
    """First and last context token of the (located) first answer, None without one."""
    if ex.answer_start is None or not ex.answer:
        return None
    begin, finish = ex.answer_start, ex.answer_start + len(ex.answer)
    covered = [t for t, (s, e) in enumerate(spans) if s < finish and e > begin]
    return (covered[0], covered[-1]) if covered else None


def best_spans(
    examples: list[QAExample],
    wins: Windows,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best: int = 20,
    max_answer_len: int = 30,
) -> dict[str, str]:
    """Each example's answer text: over all its windows, the context span (start <= end, at
    most ``max_answer_len`` tokens, inside the context) with the highest start + end logit
    among the ``n_best`` starts and ends of each window; "" when no window has one."""
    best: dict[int, tuple[float, str]] = {}
    for w, index in enumerate(wins.example_index):
        offsets = wins.offsets[w]
        n = len(offsets)
        starts = np.argsort(start_logits[w][:n])[::-1][:n_best]
        ends = np.argsort(end_logits[w][:n])[::-1][:n_best]
        for s in starts:
            for e in ends:
                if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer_len:
                    continue
                score = float(start_logits[w][s] + end_logits[w][e])
                if index not in best or score > best[index][0]:
                    context = examples[index].context
                    best[index] = (score, context[offsets[s][0] : offsets[e][1]])
    return {ex.id: best.get(i, (0.0, ""))[1] for i, ex in enumerate(examples)}
