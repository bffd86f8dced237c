"""Masked-language-model pre-training with LERT's linguistic tasks.

Masking (``mask_batch``): whole-word masking with word-level n-grams, as MacBERT and LERT
select tokens (Cui et al., "Revisiting Pre-trained Models for Chinese NLP", 2020: "whole word
masking as well as N-gram masking ... with a percentage of 40%, 30%, 20%, 10% for word-level
unigram to 4-gram"); 15% of the tokens of each row, of which 80% become [MASK], 10% a random
token and 10% stay (BERT's ``create_pretraining_data.py``).

Linguistic tasks (``LinguisticMLM``): as in LERT's ``run_pretraining.py``
(github.com/ymcui/LERT, src/run_pretraining.py, ``get_masked_lm_output``), each linguistic head
is a linear layer on the same transformed hidden state as the MLM decoder, at the masked
positions only; the loss is ``mlm + sum_i w_i * loss_i`` with ``w_i = clip(step / end_i, 0, 1)``
(LERT: POS ends its ramp at 1/3 of training, NER at 2/3, DEP at the end: the
linguistically-informed pre-training schedule). The heads are dropped on save: the output is a
plain ``BertForMaskedLM`` (LERT's PyTorch release likewise ships without them).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Mapping

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from tqdm.auto import tqdm

from compress import dist
from compress.corpus import NER_TAGS, NO_LABEL, POS_TAGS
from compress.trainer import BatchSource

log = logging.getLogger(__name__)

NGRAM_PROBS = (0.4, 0.3, 0.2, 0.1)  # MacBERT / LERT: word-level 1- to 4-grams
HEAD_SIZES = {"pos": len(POS_TAGS), "ner": len(NER_TAGS)}


class MaskingConfig(BaseModel):
    """How tokens are chosen and replaced for the masked-LM loss."""

    model_config = ConfigDict(extra="forbid")

    probability: float = Field(0.15, gt=0, lt=1, description="share of each row's tokens")
    whole_word: bool = Field(True, description="mask every token of a chosen word")
    ngram_probs: list[float] = Field(
        list(NGRAM_PROBS),
        min_length=1,
        description="chance of masking 1, 2, ... consecutive words at once (MacBERT/LERT)",
    )
    mask_token: float = Field(0.8, ge=0, le=1, description="of the chosen: [MASK]")
    random_token: float = Field(0.1, ge=0, le=1, description="of the chosen: a random token")


class LinguisticConfig(BaseModel):
    """Where each linguistic loss reaches its full weight, as a share of the training steps
    (LERT: POS 1/3, NER 2/3); leave a task out (or set null) to not learn it."""

    model_config = ConfigDict(extra="forbid")

    pos: float | None = Field(1 / 3, gt=0, le=1)
    ner: float | None = Field(2 / 3, gt=0, le=1)

    def ends(self) -> dict[str, float]:
        return {k: v for k, v in (("pos", self.pos), ("ner", self.ner)) if v is not None}


def lip_weights(step: int, total: int, ends: Mapping[str, float]) -> dict[str, float]:
    """LERT's linguistically-informed schedule: each task's weight rises linearly from 0 at the
    first step to 1 at ``end * total`` steps, and stays at 1."""
    return {k: min(1.0, step / max(1.0, end * total)) for k, end in ends.items()}


def choose_masked(word_ids: list[int], cfg: MaskingConfig, rng: random.Random) -> list[int]:
    """Positions to predict in one row: whole words in n-gram runs, until the budget
    (``probability`` of the row's real tokens, at least one) is spent."""
    positions = [i for i, w in enumerate(word_ids) if w >= 0]
    if not positions:
        return []
    budget = max(1, round(len(positions) * cfg.probability))
    if not cfg.whole_word:  # each token its own word
        units = [[i] for i in positions]
    else:
        units, last = [], None
        for i in positions:
            if units and word_ids[i] == last:
                units[-1].append(i)
            else:
                units.append([i])
            last = word_ids[i]
    ngrams = list(range(1, len(cfg.ngram_probs) + 1))
    chosen: set[int] = set()
    starts = list(range(len(units)))
    rng.shuffle(starts)
    for start in starts:
        if len(chosen) >= budget:
            break
        n = rng.choices(ngrams, weights=cfg.ngram_probs)[0]
        run = [i for unit in units[start : start + n] for i in unit]
        if chosen.intersection(run):
            continue
        if len(chosen) + len(run) > budget:
            # a shorter run that fits (a single word), else skip it
            run = units[start] if len(chosen) + len(units[start]) <= budget else []
        chosen.update(run)
    if not chosen:  # every word is longer than the budget: mask the first tokens of one
        chosen.update(units[starts[0]][:budget])
    return sorted(chosen)


def mask_batch(
    rows: list[dict], cfg: MaskingConfig, vocab_size: int, mask_id: int, pad_id: int, seed: int
) -> dict[str, torch.Tensor]:
    """A padded batch with its masked-LM labels (``NO_LABEL`` off the masked positions) and,
    where the rows are tagged, POS and NER labels at the masked positions."""
    rng = random.Random(seed)
    width = max(len(r["input_ids"]) for r in rows)
    n = len(rows)
    input_ids = np.full((n, width), pad_id, dtype=np.int64)
    attention = np.zeros((n, width), dtype=np.int64)
    labels = np.full((n, width), NO_LABEL, dtype=np.int64)
    tagged = "pos" in rows[0]
    tags = {k: np.full((n, width), NO_LABEL, dtype=np.int64) for k in HEAD_SIZES if tagged}
    for b, row in enumerate(rows):
        ids = list(row["input_ids"])
        length = len(ids)
        attention[b, :length] = 1
        for i in choose_masked(list(row["word_ids"]), cfg, rng):
            labels[b, i] = ids[i]
            for k in tags:
                tags[k][b, i] = row[k][i]
            draw = rng.random()
            if draw < cfg.mask_token:
                ids[i] = mask_id
            elif draw < cfg.mask_token + cfg.random_token:
                ids[i] = rng.randrange(vocab_size)
        input_ids[b, :length] = ids
    batch = {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(attention),
        "token_type_ids": torch.zeros((n, width), dtype=torch.long),
        "labels": torch.from_numpy(labels),
    }
    batch.update({f"{k}_labels": torch.from_numpy(v) for k, v in tags.items()})
    return batch


class LinguisticMLM(nn.Module):
    """A ``BertForMaskedLM`` with linguistic heads on its transformed hidden state at the masked
    positions (LERT's ``get_masked_lm_output``). ``forward`` returns each loss by name."""

    def __init__(self, mlm, heads: list[str]) -> None:
        super().__init__()
        self.mlm = mlm
        hidden = mlm.config.hidden_size
        self.heads = nn.ModuleDict({k: nn.Linear(hidden, HEAD_SIZES[k]) for k in heads})
        for head in self.heads.values():
            nn.init.normal_(head.weight, std=mlm.config.initializer_range)
            nn.init.zeros_(head.bias)

    def forward(self, input_ids, attention_mask, token_type_ids, labels, **tags):
        sequence = self.mlm.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        masked = labels != NO_LABEL
        hidden = self.mlm.cls.predictions.transform(sequence[masked])
        logits = self.mlm.cls.predictions.decoder(hidden)
        cross_entropy = nn.functional.cross_entropy
        losses = {"mlm": cross_entropy(logits, labels[masked])}
        for name, head in self.heads.items():
            target = tags[f"{name}_labels"][masked]
            losses[name] = cross_entropy(head(hidden), target, ignore_index=NO_LABEL)
        losses["mlm_correct"] = (logits.argmax(-1) == labels[masked]).sum()
        losses["masked"] = masked.sum()
        return losses


def masked_batches(rows, batch_size: int, cfg: MaskingConfig, tokenizer, seed: int) -> BatchSource:
    """Every epoch's batches of similar-length rows, freshly masked (dynamic masking) with a
    seed of their own; with several processes, each takes its share of the batches."""
    lengths = rows["length"]
    vocab, mask_id, pad_id = len(tokenizer), tokenizer.mask_token_id, tokenizer.pad_token_id

    def order(epoch: int) -> list[list[int]]:
        rng = random.Random(seed + epoch)
        idx = list(range(len(lengths)))
        rng.shuffle(idx)
        # sort within windows of 50 batches so that padding stays low but batches vary
        window = batch_size * 50
        idx = [
            i
            for start in range(0, len(idx), window)
            for i in sorted(idx[start : start + window], key=lengths.__getitem__)
        ]
        groups = [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]
        rng.shuffle(groups)
        return dist.shard(groups)

    def batches(epoch: int) -> Iterator[dict]:
        for k, group in enumerate(order(epoch)):
            chunk = rows[group]
            columns = list(chunk)
            items = [
                dict(zip(columns, values, strict=True))
                for values in zip(*chunk.values(), strict=True)
            ]
            yield mask_batch(
                items, cfg, vocab, mask_id, pad_id, seed * 1_000_003 + epoch * 7919 + k
            )

    return BatchSource(batches, len(order(1)))


def fixed_batches(rows, batch_size: int, cfg: MaskingConfig, tokenizer, seed: int) -> list[dict]:
    """The held-out rows masked once, the same way at every check."""
    source = masked_batches(rows, batch_size, cfg, tokenizer, seed)
    return list(source.batches(0)) if len(rows) else []


def mlm_check(model: LinguisticMLM, batches: list[dict], device) -> Callable[[], float]:
    """Masked-token accuracy on fixed held-out batches (higher is better): the dev check."""
    last: dict[str, float] = {}

    @torch.no_grad()
    def check() -> float:
        model.eval()
        correct = masked = 0
        loss = 0.0
        for batch in tqdm(batches, desc="masked-LM check", unit="batch", leave=False):
            out = model(**{k: v.to(device) for k, v in batch.items()})
            correct += int(out["mlm_correct"])
            masked += int(out["masked"])
            loss += float(out["mlm"]) * int(out["masked"])
        last.update(accuracy=correct / max(1, masked), loss=loss / max(1, masked))
        return last["accuracy"]

    check.last = last  # type: ignore[attr-defined]
    return check
