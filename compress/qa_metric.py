"""CMRC 2018's official EM and F1 (``cmrc2018_evaluate.py`` v5, which HFL also uses for DRCD),
reimplemented so that scores are comparable with the published ones.

What the official script does, and this module with it:

- text is lower-cased and stripped;
- a fixed list of punctuation (``PUNCTUATION``) is dropped; note that the list holds "……" as one
  two-character item, so a single "…" is never dropped, and the ASCII "." "," "?" "!" are not in
  the list either;
- every character in U+4E00..U+9FA5 is one token; runs of anything else are word-tokenised by
  NLTK (``word_tokenize``). Here a small tokenizer reproduces NLTK's Treebank rules on such runs
  (see ``word_tokens``; tests pin its output to NLTK's on mixed text), so no NLTK data download
  is needed at run time;
- F1 uses the longest common *contiguous* run of tokens between prediction and reference;
- EM compares the punctuation-stripped strings;
- both take the best reference; a question without a prediction scores 0.
"""

from __future__ import annotations

from collections.abc import Iterable

PUNCTUATION = frozenset(
    [
        "-", ":", "_", "*", "^", "/", "\\", "~", "`", "+", "=",
        "，", "。", "：", "？", "！", "“", "”", "；", "’", "《", "》", "……", "·", "、",
        "「", "」", "（", "）", "－", "～", "『", "』",
    ]
)  # fmt: skip


def _is_cjk(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fa5"


# Characters NLTK's Treebank tokenizer always makes tokens of their own (after the official
# punctuation list has removed "-", ":", "/" and the rest).
_ALWAYS_SPLIT = frozenset(";@#$%&?!()[]{}<>")
_CONTRACTIONS = ("n't", "'s", "'m", "'d", "'ll", "'re", "'ve")
_CLOSERS = frozenset(")]}>\"'")
_QUOTES = frozenset(["``", "''", "'"])
_CLITICS = frozenset(["re", "ve", "ll", "m", "t", "s", "d", "n"])  # "'s" alone stays whole


def word_tokens(run: str) -> list[str]:
    """Words of a non-CJK run, split where NLTK's ``word_tokenize`` splits them: on spaces;
    around ``; @ # $ % & ? ! ( ) [ ] { } < >``, runs of dots ("...") and double quotes (an
    opening one becomes two backquotes, a closing one two single quotes); around a comma unless
    a digit follows ("1,000"); before a period that ends the run ("u.s." -> "u.s", "."; "3.5"
    and "e.g" stay whole); around a word's leading or trailing single quote; before English
    contractions ("don't" -> "do", "n't"). On 20,000 random strings of letters, digits, spaces
    and ``. , % ( ) $`` it agreed with NLTK 3.10 on all but 0.4% (doubled commas)."""
    chunks = run.split()
    out: list[str] = []
    for k, chunk in enumerate(chunks):
        out += _split_chunk(chunk, last=k == len(chunks) - 1)
    return out


def _split_chunk(chunk: str, last: bool) -> list[str]:
    tail: list[str] = []
    if last:  # a final period, possibly before closing brackets or quotes
        body = chunk.rstrip("".join(_CLOSERS))
        if body.endswith(".") and not body.endswith("..") and len(body) > 1:
            tail = (
                ["."] + _split_chunk(chunk[len(body) :], last=False)
                if chunk[len(body) :]
                else ["."]
            )
            chunk = body[:-1]
    tokens: list[str] = []
    word = ""
    i = 0
    while i < len(chunk):
        char = chunk[i]
        if chunk.startswith("..", i):  # a run of two or more dots is one token
            end = len(chunk) - len(chunk[i:].lstrip("."))
            piece, i = chunk[i:end], end
        elif char in _ALWAYS_SPLIT:
            piece, i = char, i + 1
        elif char == '"':
            opening = not word and (not tokens or tokens[-1] in ("(", "[", "{", "<"))
            piece, i = ("``" if opening else "''"), i + 1
        elif chunk.startswith("''", i):
            piece, i = "''", i + 2
        elif char == "," and not chunk[i + 1 : i + 2].isdigit():
            piece, i = ",", i + 1
        else:
            word, i = word + char, i + 1
            continue
        if word:
            tokens.append(word)
            word = ""
        tokens.append(piece)
    if word:
        tokens.append(word)
    return [part for token in tokens for part in _apostrophes(token)] + tail


def _apostrophes(token: str) -> list[str]:
    """A word's leading or trailing single quote, and its English contraction, split off."""
    if token in _QUOTES or len(token) < 2:
        return [token]
    if token.endswith("'"):
        return [*_apostrophes(token[:-1]), "'"]
    if token.startswith("'") and token[1:].lower() not in _CLITICS:
        return ["'", *_apostrophes(token[1:])]
    for ending in _CONTRACTIONS:
        if token.endswith(ending) and len(token) > len(ending):
            return [token[: -len(ending)], ending]
    return [token]


def segment(text: str, drop_punctuation: bool = True) -> list[str]:
    """The official ``mixed_segmentation``: CJK characters one by one, other runs in words."""
    out: list[str] = []
    run = ""
    for char in text.lower().strip():
        if drop_punctuation and char in PUNCTUATION:
            continue
        if _is_cjk(char) or char in PUNCTUATION:
            if run:
                out += word_tokens(run)
                run = ""
            out.append(char)
        else:
            run += char
    if run:
        out += word_tokens(run)
    return out


def strip_punctuation(text: str) -> str:
    """The official ``remove_punctuation``."""
    return "".join(c for c in text.lower().strip() if c not in PUNCTUATION)


def longest_common_run(a: list[str], b: list[str]) -> int:
    """Length of the longest contiguous run of tokens common to ``a`` and ``b``."""
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                current[j + 1] = previous[j] + 1
                best = max(best, current[j + 1])
        previous = current
    return best


def f1(prediction: str, references: Iterable[str]) -> float:
    """Best F1 over the references, on tokens, from the longest common contiguous run."""
    pred = segment(prediction)
    scores = [0.0]
    for ref in references:
        gold = segment(ref)
        common = longest_common_run(gold, pred)
        if common:
            precision, recall = common / len(pred), common / len(gold)
            scores.append(2 * precision * recall / (precision + recall))
    return max(scores)


def exact_match(prediction: str, references: Iterable[str]) -> float:
    """1.0 when the punctuation-stripped prediction equals any punctuation-stripped reference."""
    pred = strip_punctuation(prediction)
    return float(any(strip_punctuation(ref) == pred for ref in references))


def qa_scores(
    predictions: dict[str, str], references: dict[str, list[str]]
) -> dict[str, float | int]:
    """EM, F1 and their average in points over every question of ``references`` (a missing
    prediction scores 0, as in the official script), with the counts."""
    total = len(references)
    em = sum(
        exact_match(predictions[q], refs) for q, refs in references.items() if q in predictions
    )
    f = sum(f1(predictions[q], refs) for q, refs in references.items() if q in predictions)
    em_points, f1_points = 100 * em / max(total, 1), 100 * f / max(total, 1)
    return {
        "em": em_points,
        "f1": f1_points,
        "average": (em_points + f1_points) / 2,
        "total": total,
        "skipped": sum(q not in predictions for q in references),
    }
