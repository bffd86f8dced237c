"""The CMRC 2018 metric against the official script's semantics (ymcui/cmrc2018,
squad-style-data/cmrc2018_evaluate.py, v5): hand-checked cases with punctuation, English and
digits inside Chinese, and the tokenizer for non-CJK runs against NLTK's output."""

import pytest

from compress.qa_metric import exact_match, f1, qa_scores, segment, strip_punctuation, word_tokens

# NLTK 3.10.4, nltk.tokenize.NLTKWordTokenizer().tokenize(s) (what word_tokenize applies to each
# sentence), run once by hand on these strings; NLTK itself is not a dependency.
NLTK_TOKENS = {
    "iphone 6s": ["iphone", "6s"],
    "3.5%": ["3.5", "%"],
    "1,000": ["1,000"],
    "$100": ["$", "100"],
    "u.s.": ["u.s", "."],
    "the u.s. army": ["the", "u.s.", "army"],
    "don't": ["do", "n't"],
    "a.b.c": ["a.b.c"],
    "hello, world": ["hello", ",", "world"],
    "no.1": ["no.1"],
    "v2.0": ["v2.0"],
    "(ab)": ["(", "ab", ")"],
    "x&y": ["x", "&", "y"],
    "1.": ["1", "."],
    "e.g.": ["e.g", "."],
    "ab;cd": ["ab", ";", "cd"],
    'a"b"': ["a", "''", "b", "''"],
    '"quoted" text': ["``", "quoted", "''", "text"],
    "#1": ["#", "1"],
    "rock'n'roll": ["rock'n'roll"],
    "a...b": ["a", "...", "b"],
    "90's": ["90", "'s"],
    "ibm!": ["ibm", "!"],
    "100%,": ["100", "%", ","],
    "a,1": ["a,1"],
    "1,a": ["1", ",", "a"],
    "x.)": ["x", ".", ")"],
    "'xy z": ["'", "xy", "z"],
    "ab'": ["ab", "'"],
    "(1998)": ["(", "1998", ")"],
    "1..": ["1", ".."],
}


@pytest.mark.parametrize("text,tokens", NLTK_TOKENS.items())
def test_word_tokens_match_nltk(text, tokens):
    assert word_tokens(text) == tokens


def test_segment_cjk_one_by_one_and_other_runs_as_words():
    assert segment("2018年，中国队获得了第3名。") == [
        "2018", "年", "中", "国", "队", "获", "得", "了", "第", "3", "名",
    ]  # fmt: skip
    assert segment("美国NBA球员Kobe Bryant") == ["美", "国", "nba", "球", "员", "kobe", "bryant"]
    assert segment("增长了3.5%") == ["增", "长", "了", "3.5", "%"]
    # "/" and "-" are on the list, so they vanish without splitting the run
    assert segment("10km/h") == ["10kmh"] and segment("co-op") == ["coop"]
    # the list holds "……" as one two-character item: a single "…" is never removed
    assert segment("好…") == ["好", "…"]
    # kept when punctuation is not dropped: each listed character is its own token
    assert segment("第3名。", drop_punctuation=False) == ["第", "3", "名", "。"]


def test_exact_match():
    assert exact_match("第3名", ["第3名。"]) == 1.0
    assert exact_match("NBA", ["nba"]) == 1.0
    assert exact_match(" 《红楼梦》 ", ["红楼梦"]) == 1.0
    assert exact_match("中国", ["中国队", "中华"]) == 0.0
    assert exact_match("好…", ["好……"]) == 0.0  # "…" is not on the list (see above)


def test_f1_uses_the_longest_contiguous_run_and_the_best_reference():
    assert f1("中国队", ["中国"]) == pytest.approx(0.8)  # P 2/3, R 1
    # a bag of tokens would give 2/3 here; the longest common contiguous run is 1 token
    assert f1("北京上海", ["北上"]) == pytest.approx(1 / 3)
    # ref: 科 比 布 莱 恩 特 kobe bryant ("·" "（" "）" dropped); pred: kobe bryant
    assert f1("Kobe Bryant", ["科比·布莱恩特（Kobe Bryant）"]) == pytest.approx(0.4)
    assert f1("中国队", ["美国", "中国队"]) == 1.0
    assert f1("日本", ["中国"]) == 0.0
    assert f1("", ["中国"]) == 0.0


def test_strip_punctuation():
    assert strip_punctuation("  “你好”，世界！ ") == "你好世界"


def test_scores_over_questions_count_missing_predictions_as_zero():
    refs = {"q1": ["中国队", "中国"], "q2": ["1998年"], "q3": ["北京"]}
    scores = qa_scores({"q1": "中国", "q2": "1998"}, refs)
    # q1: EM 1, F1 1; q2: EM 0, F1 2*1*(1/2)/(3/2) = 2/3; q3: missing
    assert scores["em"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)
    assert scores["average"] == pytest.approx((scores["em"] + scores["f1"]) / 2)
    assert (scores["total"], scores["skipped"]) == (3, 1)
