"""LERT-shaped random checkpoints written locally with ``save_pretrained`` (the hub's layout)."""

from __future__ import annotations

from pathlib import Path

import torch

from compress.models import LERT_VOCAB_SIZE, NAMED_SHAPES, SPECIAL_TOKENS


def lert_vocab(path: Path) -> Path:
    """A 21128-token vocabulary: specials, CJK characters, then unused slots."""
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + SPECIAL_TOKENS[1:]
    tokens += [chr(c) for c in range(0x4E00, 0x9FA6)]
    tokens += [f"[unused{i}]" for i in range(100, 100 + LERT_VOCAB_SIZE - len(tokens))]
    assert len(tokens) == LERT_VOCAB_SIZE
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def build_lert(name: str, out: Path, seed: int = 0) -> Path:
    """A randomly initialised ``BertModel`` with the exact shape of ``hfl/chinese-{name}``."""
    from transformers import BertModel, BertTokenizerFast

    from compress.models import bert_config

    if (out / "config.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = bert_config(NAMED_SHAPES[name], LERT_VOCAB_SIZE, ["a", "b"])
    del config.id2label, config.label2id
    BertModel(config).save_pretrained(out, safe_serialization=True)
    BertTokenizerFast(vocab_file=str(lert_vocab(out / "vocab.txt"))).save_pretrained(out)
    return out
