"""Stage ``pretrain``: masked-LM pre-training on plain text with whole-word and n-gram masking and
LERT's linguistic tasks (``compress.pretraining``)."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import ClassVar

import torch
from pydantic import Field

from compress.corpus import CorpusConfig, build_corpus
from compress.models import ModelSource, char_tokenizer, count_parameters, load_tokenizer
from compress.pretraining import (
    LinguisticConfig,
    LinguisticMLM,
    MaskingConfig,
    fixed_batches,
    lip_weights,
    masked_batches,
    mlm_check,
)
from compress.registry import StageContext, StageResult, stage
from compress.stages.finetune import ModelOrInput
from compress.trainer import Resume, TrainConfig, device, total_steps, train

log = logging.getLogger(__name__)


class PretrainConfig(TrainConfig, ModelOrInput):
    """Pre-train a BERT-shaped model on plain text: whole-word n-gram masked LM plus LERT's POS
    and NER tasks on a linearly rising schedule; writes a plain BertForMaskedLM."""

    data_parallel: ClassVar[bool] = True
    evaluated: ClassVar[bool] = False

    model: ModelSource | None = Field(
        None,
        description="{shape: ...} (a character vocabulary is built from the text), a hub id or "
        "directory to pre-train further; default: the input step",
    )
    text: CorpusConfig
    max_seq_len: int = Field(128, ge=8, le=512, description="tokens per row, [CLS] and [SEP] in")
    masking: MaskingConfig = MaskingConfig()
    linguistic: LinguisticConfig = LinguisticConfig()
    lr: float = Field(5e-4, gt=0)
    epochs: float = Field(1.0, gt=0)
    log_every: int = Field(50, ge=1, description="steps between loss records")
    save_every: int = Field(
        200,
        ge=1,
        description="steps between saves of the training state (to continue a killed run)",
    )


def masked_lm(source: ModelSource | Path, text: CorpusConfig | None, work: Path | None = None):
    """(BertForMaskedLM, tokenizer): from a shape (with a character vocabulary of ``text``, in
    ``work``), a hub id or a directory."""
    from transformers import BertForMaskedLM

    from compress.corpus import iter_texts
    from compress.models import bert_config, hub_kwargs, load_errors, looks_local, source_error

    if isinstance(source, ModelSource) and source.shape is not None:
        if text is None or work is None:
            from compress.errors import RecipeError

            raise RecipeError(
                f"{source.describe()}: a shape has random weights; a teacher must be pre-trained "
                "(a hub id, a directory or a pretrain step)"
            )
        texts = (row["text"] for row in iter_texts(text))
        tokenizer = char_tokenizer(texts, source.min_count, work / "vocab")
        config = bert_config(source.spec(), len(tokenizer), [])
        return BertForMaskedLM(config), tokenizer
    from compress.models import resolve_source

    name = resolve_source(str(source.source if isinstance(source, ModelSource) else source))
    revision = source.revision if isinstance(source, ModelSource) else None
    try:
        kwargs = {} if looks_local(name) else hub_kwargs()
        model = BertForMaskedLM.from_pretrained(name, revision=revision, **kwargs)
    except load_errors() as exc:
        raise source_error(name, exc) from exc
    return model, load_tokenizer(name, revision)


@stage("pretrain", PretrainConfig)
def pretrain(cfg: PretrainConfig, src: Path | None, ctx: StageContext) -> StageResult:
    from compress import dist

    with tempfile.TemporaryDirectory(dir=ctx.step_dir.parent, prefix=".pretrain-") as tmp:
        work = Path(tmp)
        source = cfg.model if cfg.model is not None else src
        assert source is not None
        mlm, tokenizer = masked_lm(source, cfg.text, ctx.step_dir)
        train_rows, heldout = build_corpus(cfg.text, tokenizer, cfg.max_seq_len, work)
        tagged = "pos" in train_rows.column_names
        heads = list(cfg.linguistic.ends()) if tagged else []
        model = LinguisticMLM(mlm, heads).to(device())
        source_batches = masked_batches(
            train_rows, cfg.batch_size, cfg.masking, tokenizer, ctx.seed
        )
        steps = total_steps(cfg, source_batches.per_epoch)
        held = fixed_batches(heldout, cfg.eval_batch_size, cfg.masking, tokenizer, ctx.seed + 1)
        check = mlm_check(model, held, device())
        check()
        before = dict(check.last)  # type: ignore[attr-defined]
        parallel = dist.wrap(model)
        ends = {k: v for k, v in cfg.linguistic.ends().items() if k in heads}
        resume = Resume(ctx.resume_dir, cfg.save_every) if ctx.resume_dir else None
        state = resume.extra if resume else {}
        state.update(step=0, running={}, history=[])

        def loss_fn(batch) -> torch.Tensor:
            weights = lip_weights(state["step"], steps, ends)
            out = parallel(**{k: v.to(device()) for k, v in batch.items()})
            loss = out["mlm"] + sum(weights[k] * out[k] for k in heads)
            state["step"] += 1
            running = state["running"]
            for name in ("mlm", *heads):
                running.setdefault(name, []).append(float(out[name].detach()))
            if state["step"] % cfg.log_every == 0 or state["step"] == steps:
                state["history"].append(
                    {
                        "step": state["step"],
                        **{f"{k}_loss": round(sum(v) / len(v), 4) for k, v in running.items()},
                        **{f"{k}_weight": round(w, 3) for k, w in weights.items()},
                    }
                )
                running.clear()
            return loss

        result = train(
            model,
            loss_fn,
            source_batches,
            cfg,
            check,
            desc=ctx.step_name,
            metric="masked-LM acc",
            resume=resume,
        )
        history = state["history"]
        final = dict(check.last)  # type: ignore[attr-defined]
        check()  # the kept (best) weights
        kept = dict(check.last)  # type: ignore[attr-defined]
    details = {
        "train": result,
        "losses": history,
        "heldout_before": {k: round(v, 4) for k, v in before.items()},
        "heldout_last": {k: round(v, 4) for k, v in final.items()},
        "heldout": {k: round(v, 4) for k, v in kept.items()},
        "data": {
            "sources": cfg.text.sources(),
            "train_rows": len(train_rows),
            "heldout_rows": len(heldout),
            "tags": cfg.text.tags if tagged else "none",
            "linguistic_heads": heads,
        },
        "params": count_parameters(mlm),
        "vocab_size": len(tokenizer),
    }
    out = save_masked_lm(mlm, tokenizer, ctx.step_dir / "model")
    (out / "pretraining.json").write_text(json.dumps(details, indent=2), encoding="utf-8")
    write_card(out, "pretrain", details, ctx)
    return StageResult(out, details)


def save_masked_lm(mlm, tokenizer, out: Path) -> Path:
    """The model without linguistic heads, as a plain Hugging Face directory."""
    from compress.models import save_model

    return save_model(mlm, tokenizer, out)


def write_card(out: Path, kind: str, details: dict, ctx: StageContext) -> None:
    """A README.md model card for a pre-trained or general-distilled model."""
    from compress.masked_lm_card import pretrained_card

    (out / "README.md").write_text(pretrained_card(kind, details, ctx), encoding="utf-8")
