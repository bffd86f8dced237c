"""Every text as the tokenizer will see it: what no BERT tokenizer can encode, or what it
would reduce to nothing, found where a text is read (so the error names its file and line)
instead of surfacing as a tokenizer traceback at encoding time."""

from __future__ import annotations

import re
import unicodedata

_SURROGATE = re.compile("[\ud800-\udfff]")


def _kept(char: str) -> bool:
    """Whether BERT's normaliser keeps ``char`` as (part of) a token: it drops whitespace and
    every character of a Unicode "C" category (control, format such as zero-width spaces,
    private use, unassigned), as ``BasicTokenizer._clean_text`` and ``_is_control`` do."""
    return not char.isspace() and not unicodedata.category(char).startswith("C")


def text_problem(text: object) -> str | None:
    """Why a tokenizer cannot take ``text`` as a text field, or None."""
    if not isinstance(text, str):
        return f"holds a {type(text).__name__}, not text"
    bad = _SURROGATE.search(text)
    if bad:
        return (
            f"holds an unpaired surrogate {bad.group()!r} at character {bad.start() + 1}, which "
            "no tokenizer can encode (a broken emoji or a bad \\u escape in the source?)"
        )
    if not any(_kept(c) for c in text):
        return (
            "holds no character the tokenizer keeps (only spaces, control or zero-width characters)"
        )
    return None


def token_problem(token: str) -> str | None:
    """Why a pre-split token (a CoNLL character) cannot carry a tag: the tokenizer must keep it,
    or its tag would be lost."""
    problem = text_problem(token)
    if problem and "no character" in problem:
        return (
            f"token {token!r} is dropped by the tokenizer (a space, control or zero-width "
            "character), so its tag would be lost"
        )
    return problem
