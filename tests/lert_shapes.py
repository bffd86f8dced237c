"""LERT-shaped random checkpoints written locally with ``save_pretrained`` (the hub's layout)."""

from __future__ import annotations

from pathlib import Path

import torch

from compress.models import LERT_VOCAB_SIZE, NAMED_SHAPES
from compress.rehearsal import lert_vocabulary


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
    BertTokenizerFast(vocab_file=str(lert_vocabulary(out / "vocab.txt"))).save_pretrained(out)
    return out
