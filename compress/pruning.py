"""Structured pruning with TextPruner: vocabulary, then attention heads and FFN neurons.

The result stays a standard model: heads through ``config.pruned_heads``, FFN through
``intermediate_size``, vocabulary through ``vocab_size`` and a re-created ``vocab.txt``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from compress.data import batch_indices, collate, encode

log = logging.getLogger(__name__)

TEXTPRUNER_MISSING = (
    "textpruner is not installed: run `pip install --no-deps textpruner==1.1.post2` "
    "(without --no-deps its setup.py asks for numpy<1.22, which cannot build on Python 3.10+; "
    "lert-compress already installs what it really needs)"
)


def textpruner_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("textpruner") is not None


def unk_rate(tokenizer, texts: list[str]) -> float:
    """Share of (non-special) tokens of ``texts`` that are ``[UNK]``."""
    total = unknown = 0
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        total += len(ids)
        unknown += sum(1 for i in ids if i == tokenizer.unk_token_id)
    return unknown / total if total else 0.0


def prune_vocabulary(model, tokenizer, texts: list[str], min_count: int, work_dir: Path):
    """Keep tokens seen ``min_count`` times in ``texts`` plus special tokens.

    Returns the pruned model, a tokenizer re-created from the pruned vocabulary, and the kept ids
    (positions in the old vocabulary).
    """
    from textpruner import GeneralConfig, VocabularyPruner, VocabularyPruningConfig
    from transformers import BertTokenizerFast

    pruner = VocabularyPruner(
        model,
        tokenizer,
        vocabulary_pruning_config=VocabularyPruningConfig(min_count=min_count),
        general_config=GeneralConfig(use_device="cpu", output_dir=str(work_dir)),
    )
    pruner.prune(dataiter=texts, save_model=False)
    kept = list(pruner.pruned_token_ids)
    vocab_dir = work_dir / "vocab"
    vocab_dir.mkdir(parents=True, exist_ok=True)
    pruner.tokenizer_helper.save_vocab(tokenizer, kept, str(vocab_dir))
    lower = getattr(tokenizer, "do_lower_case", True)
    new_tokenizer = BertTokenizerFast(vocab_file=str(vocab_dir / "vocab.txt"), do_lower_case=lower)
    model.config.vocab_size = len(kept)
    if len(new_tokenizer) != len(kept):
        raise RuntimeError(
            f"pruned vocabulary has {len(new_tokenizer)} tokens, embeddings {len(kept)}"
        )
    return model, new_tokenizer, kept


def select_vocabulary(model, kept: list[int]) -> None:
    """Cut ``model``'s word embeddings to the rows ``kept`` (same ids as a pruned student)."""
    from textpruner.model_map import MODEL_MAP

    MODEL_MAP["bert"]["resizer"].set_embeddings(model=model.bert, token_ids=kept)
    model.config.vocab_size = len(kept)


def importance_batches(task, tokenizer, max_len: int, batch_size: int, n_batches: int, seed: int):
    enc = encode(task.splits["train"], tokenizer, task, max_len)
    chosen = batch_indices(enc, batch_size, shuffle=True, seed=seed)[:n_batches]
    return [collate(enc, idx) for idx in chosen]


def prune_transformer(
    model,
    batches,
    *,
    heads: int | None,
    ffn: int | None,
    n_iters: int,
    head_even_masking: bool,
    use_logits: bool,
    work_dir: Path,
) -> dict:
    """Iterative head/FFN pruning on importance scores from ``batches``; returns what was kept."""
    from textpruner import GeneralConfig, TransformerPruner, TransformerPruningConfig

    config = model.config
    cfg = TransformerPruningConfig(
        target_num_of_heads=heads or config.num_attention_heads,
        target_ffn_size=ffn or config.intermediate_size,
        pruning_method="iterative",
        n_iters=n_iters,
        head_even_masking=head_even_masking,
        ffn_even_masking=True,
        use_logits=use_logits,
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pruner = TransformerPruner(
        model,
        transformer_pruning_config=cfg,
        general_config=GeneralConfig(use_device=device, output_dir=str(work_dir)),
    )
    pruner.prune(dataloader=batches, save_model=False)
    ffn_sizes = pruner.ffn_mask.to(int).sum(-1).tolist()
    model.config.intermediate_size = ffn_sizes[0]  # even FFN masking: one size for all layers
    model.to("cpu")
    heads_kept = pruner.head_mask.to(int).sum(-1).tolist()
    log.info("kept heads per layer %s, FFN %d", heads_kept, ffn_sizes[0])
    return {
        "heads_per_layer": heads_kept,
        "ffn_size": ffn_sizes[0],
        "pruned_heads": {str(k): sorted(v) for k, v in model.config.pruned_heads.items()},
    }
