"""Stage ``prune``: TextPruner vocabulary and head/FFN pruning, then optional recovery."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from compress.arch import Arch, arch_of_config
from compress.errors import RecipeError
from compress.models import count_parameters, load_model, load_tokenizer, save_model
from compress.pruning import (
    TEXTPRUNER_MISSING,
    importance_batches,
    prune_transformer,
    prune_vocabulary,
    textpruner_installed,
    unk_rate,
)
from compress.recovery import Recovery, recover
from compress.registry import StageConfig, StageContext, StageResult, stage

log = logging.getLogger(__name__)


class VocabularyPruning(BaseModel):
    """Keep the tokens of the task's train split (and extra text files) plus special tokens."""

    model_config = ConfigDict(extra="forbid")

    min_count: int = Field(1, ge=1)
    extra_texts: list[Path] = Field(default_factory=list, description="one text per line")


class TransformerPruning(BaseModel):
    """Heads (average per layer) and FFN size targets, pruned iteratively on importance scores."""

    model_config = ConfigDict(extra="forbid")

    target_num_of_heads: int | None = Field(None, ge=1, description="average per layer")
    target_ffn_size: int | None = Field(None, ge=1)
    n_iters: int = Field(4, ge=1)
    head_even_masking: bool = True
    use_logits: bool = False
    batches: int = Field(32, ge=1, description="train batches for importance scores")
    batch_size: int = Field(32, ge=1)


class PruneConfig(StageConfig):
    """Prune vocabulary, then heads/FFN, with TextPruner; recover for a few epochs."""

    data_parallel: ClassVar[bool] = True

    vocabulary: VocabularyPruning | None = None
    transformer: TransformerPruning | None = None
    recover: Recovery | None = None

    def check(self, configs) -> list[str]:
        if self.vocabulary is None and self.transformer is None:
            return ["prune: give vocabulary:, transformer: or both"]
        missing = [
            f"vocabulary.extra_texts: {path} does not exist"
            for path in (self.vocabulary.extra_texts if self.vocabulary else [])
            if not path.is_file()
        ]
        return missing + ([] if textpruner_installed() else [TEXTPRUNER_MISSING])

    def check_arch(self, in_arch: Arch) -> list[str]:
        return target_problems(self.transformer, in_arch) if self.transformer else []

    def out_arch(self, in_arch: Arch | None, archs) -> Arch | None:
        t = self.transformer
        if in_arch is None or t is None:
            return in_arch
        return in_arch.with_(
            heads=t.target_num_of_heads or in_arch.heads, ffn=t.target_ffn_size or in_arch.ffn
        )


def target_problems(t: TransformerPruning, arch) -> list[str]:
    """Targets the model cannot meet, each with what the model has."""
    has = f"the model has {arch.layers} layers x {arch.heads} heads, FFN {arch.ffn}"
    out = []
    heads = t.target_num_of_heads
    if heads is not None and heads > arch.heads:
        out.append(f"target_num_of_heads {heads} is more than {has}")
    if t.target_ffn_size is not None and t.target_ffn_size >= arch.ffn:
        out.append(f"target_ffn_size {t.target_ffn_size} is not below the current size ({has})")
    if heads is None and t.target_ffn_size is None:
        out.append("transformer: give target_num_of_heads, target_ffn_size or both")
    return out


def _texts(ctx: StageContext, cfg: VocabularyPruning) -> list[str]:
    texts = ctx.task.texts("train")
    for path in cfg.extra_texts:
        if not path.is_file():
            raise RecipeError(f"prune.vocabulary.extra_texts: {path} does not exist")
        texts += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return texts


@stage("prune", PruneConfig)
def prune(cfg: PruneConfig, src: Path | None, ctx: StageContext) -> StageResult:
    assert src is not None
    model, tokenizer = load_model(src, ctx.task.type), load_tokenizer(src)
    if cfg.transformer and (
        problems := target_problems(cfg.transformer, arch_of_config(model.config))
    ):
        raise RecipeError("; ".join(problems))
    record: dict = {
        "before": {
            "params": count_parameters(model),
            "vocab_size": len(tokenizer),
            "heads": model.config.num_attention_heads,
            "ffn_size": model.config.intermediate_size,
        }
    }
    test_texts = ctx.task.texts("test")
    kept_ids = None
    work = ctx.step_dir / "work"
    if cfg.vocabulary is not None:
        before = unk_rate(tokenizer, test_texts)
        model, tokenizer, kept_ids = prune_vocabulary(
            model, tokenizer, _texts(ctx, cfg.vocabulary), cfg.vocabulary.min_count, work
        )
        record["vocabulary"] = {
            "kept": len(kept_ids),
            "test_unk_rate_before": round(before, 5),
            "test_unk_rate_after": round(unk_rate(tokenizer, test_texts), 5),
        }
        log.info(
            "vocabulary %d -> %d tokens; test [UNK] rate %.3f%% -> %.3f%%",
            record["before"]["vocab_size"],
            len(kept_ids),
            100 * before,
            100 * record["vocabulary"]["test_unk_rate_after"],
        )
    if cfg.transformer is not None:
        t = cfg.transformer
        batches = importance_batches(
            ctx.task, tokenizer, ctx.max_seq_len, t.batch_size, t.batches, ctx.seed
        )
        record["transformer"] = prune_transformer(
            model,
            batches,
            heads=t.target_num_of_heads,
            ffn=t.target_ffn_size,
            n_iters=t.n_iters,
            head_even_masking=t.head_even_masking,
            use_logits=t.use_logits,
            work_dir=work,
        )
    shutil.rmtree(work, ignore_errors=True)
    record["after"] = {"params": count_parameters(model), "vocab_size": len(tokenizer)}
    extra = {}
    if cfg.recover is not None:
        # the pruned model before recovery stays beside the result, so the report shows both
        extra["before recovery"] = save_model(model, tokenizer, ctx.step_dir / "before_recovery")
        record["recovery"] = recover(model, tokenizer, cfg.recover, src, kept_ids, ctx)
    output = save_model(model, tokenizer, ctx.step_dir / "model")
    return StageResult(output, record, extra)
