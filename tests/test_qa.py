"""Extractive QA building blocks: the SQuAD-style reader (CMRC 2018's answer_start quirks),
sliding windows as BERT's run_squad.py cuts them, and span post-processing."""

import json

import numpy as np
import pytest

from compress.errors import DataError
from compress.models import char_tokenizer
from compress.qa import QAExample, best_spans, locate, read_squad_json, windows
from tests.conftest import Rows

CONTEXT = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉"  # 20 characters, one token each


@pytest.fixture
def tok(tmp_path):
    return char_tokenizer([CONTEXT, "问题他是NBA球员。"], 1, tmp_path / "vocab")


def _example(start: int, length: int, context: str = CONTEXT) -> QAExample:
    return QAExample("q", "问题", context, [context[start : start + length]], start)


def _window_answers(wins, example):
    """Per window: the answer text its labels point at, or None for [CLS]."""
    out = []
    for w, (s, e) in enumerate(zip(wins.start_positions, wins.end_positions, strict=True)):
        if s == 0:
            assert e == 0
            out.append(None)
        else:
            offsets = wins.offsets[w]
            out.append(example.context[offsets[s][0] : offsets[e][1]])
    return out


def test_windows_step_by_doc_stride_and_the_last_reaches_the_end(tok):
    # a 2-token question leaves 13 - 2 - 3 = 8 context tokens per window; starts 4 apart
    wins = windows([_example(3, 2)], tok, max_len=13, doc_stride=4, max_query_len=64)
    starts = [next(o for o in offs if o is not None)[0] for offs in wins.offsets]
    assert starts == [0, 4, 8, 12]
    assert all(len(ids) <= 13 for ids in wins.input_ids)
    assert wins.offsets[-1][-2] == (19, 20)  # the last window ends at the context's end
    # [CLS] 问 题 [SEP] are type 0, the window and its [SEP] type 1
    assert wins.token_type_ids[0] == [0] * 4 + [1] * 9


def test_a_context_longer_than_the_model_is_windowed_without_a_length_warning(tok):
    """transformers warns "Token indices sequence length is longer than the specified maximum
    ... will result in indexing errors" for a text over model_max_length; a DRCD context is
    tokenized whole on purpose and then cut, so every window fits and the warning misleads."""
    import logging

    messages: list[str] = []
    seen = logging.Handler()
    seen.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("transformers.tokenization_utils_base")
    logger.addHandler(seen)
    try:
        tok.model_max_length = 13
        wins = windows([_example(3, 2)], tok, max_len=13, doc_stride=4, max_query_len=64)
    finally:
        logger.removeHandler(seen)
    assert len(wins.input_ids) == 4 and all(len(ids) <= 13 for ids in wins.input_ids)
    assert not [m for m in messages if "longer than the specified maximum" in m]


def test_answer_labels_per_window(tok):
    inside_first = _example(3, 2)  # tokens 3-4: window 0 only; later windows do not hold it
    assert _window_answers(windows([inside_first], tok, 13, 4, 64), inside_first) == [
        "丁戊", None, None, None,
    ]  # fmt: skip
    across_edge = _example(7, 2)  # tokens 7-8: window 0 ends at 7, so only window 1 holds it
    assert _window_answers(windows([across_edge], tok, 13, 4, 64), across_edge) == [
        None, "辛壬", None, None,
    ]  # fmt: skip
    second = _example(10, 2)  # tokens 10-11: windows 1 and 2
    assert _window_answers(windows([second], tok, 13, 4, 64), second) == [
        None, "子丑", "子丑", None,
    ]  # fmt: skip
    unlocated = QAExample("q", "问题", CONTEXT, ["不在"], None)
    assert set(windows([unlocated], tok, 13, 4, 64).start_positions) == {0}


def test_question_is_cut_to_max_query_len(tok):
    ex = QAExample("q", "问题" * 10, CONTEXT, ["甲"], 0)
    wins = windows([ex], tok, max_len=16, doc_stride=4, max_query_len=3)
    assert wins.token_type_ids[0][:5] == [0] * 5  # [CLS] + 3 question tokens + [SEP]
    with pytest.raises(DataError, match="leaves no room for the context"):
        windows([ex], tok, max_len=8, doc_stride=4, max_query_len=6)


def test_offsets_map_back_to_the_original_characters(tok):
    context = "他是NBA球员。"
    ex = QAExample("q", "问题", context, ["NBA球员"], 2)
    wins = windows([ex], tok, 32, 16, 64)
    assert _window_answers(wins, ex) == ["NBA球员"]  # case kept, though the model sees "nba"


def test_best_span_over_windows(tok):
    ex = _example(10, 2)
    wins = windows([ex], tok, 13, 4, 64)
    n = max(len(ids) for ids in wins.input_ids)
    start = np.full((len(wins.input_ids), n), -5.0)
    end = np.full_like(start, -5.0)
    # window 1 points at 子丑 (positions 4+10-4=10, 11); window 2 at 寅 alone, more weakly
    start[1, 10], end[1, 11] = 4.0, 4.0
    start[2, 8], end[2, 8] = 3.0, 3.0
    # a high-scoring end before its start, and a "span" in the question, are never answers
    start[0, 9], end[0, 5] = 9.0, 9.0
    start[0, 1], end[0, 2] = 9.5, 9.5
    assert best_spans([ex], wins, start, end) == {"q": "子丑"}
    # a span longer than max_answer_len is skipped: window 2's one-token answer wins instead
    assert best_spans([ex], wins, start, end, max_answer_len=1) == {"q": "寅"}


# The first dev question of CMRC 2018 as its release and the hub copy show it (hfl/cmrc2018 dataset
# card, validation example DEV_0_QUERY_0: three references "光荣和ω-force" at 11), context cut to
# its first sentence. The other three questions are made up to carry the release's documented
# faults: answer_start -1, a start off by a character, an answer absent from its context.
CMRC_CONTEXT = "《战国无双3》（）是由光荣和ω-force开发的战国无双系列的正统第三续作。"


def _qa(qid: str, question: str, text: str, start: int, copies: int = 1) -> dict:
    return {
        "question": question,
        "id": qid,
        "answers": [{"text": text, "answer_start": start}] * copies,
    }


def test_reader_follows_the_squad_layout_and_locates_bad_answer_starts(tmp_path):
    qas = [
        _qa("DEV_0_QUERY_0", "《战国无双3》是由哪两个公司合作开发的？", "光荣和ω-force", 11, 3),
        _qa("DEV_0_QUERY_1", "第几作？", "第三续作", -1),
        _qa("DEV_0_QUERY_2", "什么系列？", "战国无双系列", 25),
        _qa("DEV_0_QUERY_3", "哪一年？", "2010年", 3),
    ]
    paragraph = {"id": "DEV_0", "context": CMRC_CONTEXT, "qas": qas}
    doc = {
        "version": "v1.0",
        "data": [{"id": "DEV_0", "title": "战国无双3", "paragraphs": [paragraph]}],
    }
    path = tmp_path / "cmrc2018_dev.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    examples, stats = read_squad_json(path)
    assert [e.id for e in examples] == [f"DEV_0_QUERY_{i}" for i in range(4)]
    first, minus_one, off_by_one, missing = examples
    assert first.answers == ["光荣和ω-force"] * 3 and first.answer_start == 11
    assert CMRC_CONTEXT[minus_one.answer_start :].startswith("第三续作")
    assert off_by_one.answer_start == 24
    assert missing.answer_start is None and missing.answers == ["2010年"]
    assert (stats.questions, stats.relocated, stats.unlocatable) == (4, 2, 1)

    del qas[1]["question"]
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataError, match=r"data\[0\]\.paragraphs\[0\]\.qas\[1\] has no 'question'"):
        read_squad_json(path)


def test_locate():
    assert locate("abcabc", "bc", 4) == 4
    assert locate("abcabc", "bc", 3) == 1  # wrong start: the first occurrence, as HFL's code
    assert locate("abc", "x", 0) is None


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory):
    """The demo QA recipe on tiny made-up CMRC-style files, through every stage."""
    from compress.recipe import load_recipe
    from compress.runner import run_recipe
    from tests.conftest import TINY_SHAPE, qa_rows, write_qa

    tmp = tmp_path_factory.mktemp("qa")
    files = {
        s: write_qa(tmp / f"{s}.json", qa_rows(n, i))
        for i, (s, n) in enumerate((("train", 160), ("dev", 24), ("test", 30)))
    }
    shape = "{layers: 2, hidden: 64, heads: 2, ffn: 128}"
    assert TINY_SHAPE == {"layers": 2, "hidden": 64, "heads": 2, "ffn": 128}
    overrides = [
        *(f"task.{s}={p}" for s, p in files.items()),
        "task.max_seq_len=64",
        "task.n_best=64",  # every candidate, as the transformers pipeline considers
        "steps.teacher.model.shape=" + shape,
        "steps.teacher.model.min_count=1",
        "steps.teacher.epochs=8",
        "steps.teacher.lr=3e-3",
        "steps.student.student.shape=" + shape,
        "steps.student.epochs=4",
        "steps.student.lr=3e-3",
        "steps.pruned.transformer.target_num_of_heads=1",
        "steps.pruned.transformer.target_ffn_size=64",
        "steps.pruned.transformer.batches=4",
        "steps.pruned.recover.max_steps=4",
        "steps.pruned-ov-int8.calibration_examples=16",
        "evaluate.batch_sizes=[1]",
        "evaluate.seq_len=64",
        "evaluate.repeats=2",
        "evaluate.warmup=1",
        "evaluate.memory=false",
    ]
    root = run_recipe(load_recipe("recipes/demo-cmrc2018.yaml", overrides), tmp / "art")
    report = json.loads((root / "report.json").read_text())
    steps = json.loads((root / "manifest.json").read_text())["steps"]
    test = json.loads(files["test"].read_text())
    return root, report, steps, test


def test_qa_chain_through_every_stage(qa_run):
    root, report, steps, _ = qa_run
    assert report["metric"] == "qa_f1" and report["task"] == "cmrc2018"
    rows = Rows(report["rows"])
    assert [
        (rows[n]["runtime"], rows[n]["precision"]) for n in ("pruned-int8", "pruned-ov-int8")
    ] == [
        ("onnxruntime", "int8"),
        ("openvino", "int8"),
    ]
    assert {r["variant"] for r in rows.rows} >= {
        "teacher",
        "student",
        "student-no-kd",
        "pruned",
        "pruned-onnx",
    }
    for row in rows.rows:
        assert set(row["other_scores"]) == {"em", "f1", "average"}
        assert row["other_scores"]["f1"] == row["score"]
    assert rows["teacher"]["score"] > 0.3  # it learnt where the answer is, partly at least
    assert rows["pruned-onnx"]["score"] == pytest.approx(rows["pruned"]["score"], abs=0.02)
    assert steps["pruned-onnx"]["details"]["validation"]["argmax_agreement"] == 1.0
    assert report["majority"]["prediction"] == "the empty answer"
    md = (root / "report.md").read_text()
    assert "| EM |" in md
    card = (root / steps["pruned-int8"]["output"]).parent / "README.md"
    assert "ORTModelForQuestionAnswering" in card.read_text()


def _questions(test: dict):
    for para in test["data"][0]["paragraphs"]:
        for qa in para["qas"]:
            yield qa["id"], qa["question"], para["context"], [a["text"] for a in qa["answers"]]


def _best_span(tokenizer, forward, question: str, context: str, max_answer_len: int = 30) -> str:
    """A plain client: one window (the contexts are short), the context span with the highest
    start + end logit, its text through the tokenizer's offsets."""
    enc = tokenizer(question, context, return_offsets_mapping=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping")[0].tolist()
    in_context = [i == 1 for i in enc.sequence_ids(0)]
    start, end = forward(enc)
    best, text = -np.inf, ""
    for s in range(len(offsets)):
        for e in range(s, min(s + max_answer_len, len(offsets))):
            if in_context[s] and in_context[e] and start[s] + end[e] > best:
                best, text = start[s] + end[e], context[offsets[s][0] : offsets[e][1]]
    return text


def test_plain_clients_answer_as_the_evaluator_scored(qa_run):
    """transformers on the saved directory and optimum's ORTModelForQuestionAnswering on the
    ONNX files, each with a few lines of client code, give answers whose official score is the
    evaluator's; the question-answering pipeline gives the same answers up to its own rule of
    adding up the scores of spans with the same text (so on near-ties it may prefer a repeated
    substring): the evaluator's answer is always among its top three."""
    import torch
    from optimum.onnxruntime import ORTModelForQuestionAnswering
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

    from compress.qa_metric import qa_scores

    root, report, steps, test = qa_run
    rows = Rows(report["rows"])
    questions = list(_questions(test))
    refs = {qid: answers for qid, _, _, answers in questions}

    def run(model):
        def forward(enc):
            with torch.no_grad():
                out = model(**enc)
            return out.start_logits[0].numpy(), out.end_logits[0].numpy()

        return forward

    teacher_dir = root / steps["teacher"]["output"]
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    forward = run(AutoModelForQuestionAnswering.from_pretrained(teacher_dir).eval())
    answers = {
        q: _best_span(tokenizer, forward, question, ctx) for q, question, ctx, _ in questions
    }
    scores = qa_scores(answers, refs)
    assert scores["f1"] / 100 == pytest.approx(rows["teacher"]["score"], abs=1e-4)
    assert scores["em"] / 100 == pytest.approx(rows["teacher"]["other_scores"]["em"], abs=1e-4)

    qa = pipeline("question-answering", model=str(teacher_dir))
    for qid, question, context, _ in questions:
        top = qa(question=question, context=context, max_answer_len=30, top_k=3)
        assert answers[qid] in [a["answer"] for a in top], qid

    for name in ("pruned-onnx", "pruned-int8"):
        path = root / steps[name]["output"]
        model = ORTModelForQuestionAnswering.from_pretrained(path.parent, file_name=path.name)
        tokenizer = AutoTokenizer.from_pretrained(path.parent)
        answers = {
            q: _best_span(tokenizer, run(model), question, ctx) for q, question, ctx, _ in questions
        }
        scores = qa_scores(answers, refs)
        assert scores["f1"] / 100 == pytest.approx(rows[name]["score"], abs=1e-4), name
