"""Architectures known before any work, so that impossible targets fail at recipe validation."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from compress.errors import RecipeError
from compress.models import (
    LERT_VOCAB_SIZE,
    NAMED_SHAPES,
    SHIPPED,
    SHIPPED_DIR,
    ModelSource,
    ShapeSpec,
)

HUB_SHAPES = {f"hfl/chinese-{name}": name for name in NAMED_SHAPES}


@dataclass(frozen=True)
class Arch:
    """A model's shape, and the limits of what it can take in (None where not known before the
    run: a shape's vocabulary is sized to the tokenizer built for it)."""

    layers: int
    hidden: int
    heads: int  # per layer (the most any layer has)
    ffn: int
    positions: int | None = None  # max_position_embeddings: the longest input
    vocab: int | None = None  # vocab_size: every token id must be below it
    type_vocab: int | None = None  # type_vocab_size: a text pair needs 2
    tokens: int | None = None  # the tokenizer's size, where its files are known
    width_heads: int | None = None  # num_attention_heads of a loaded config (must divide hidden)
    head_labels: tuple[str, ...] | None = None  # a loaded task head's labels, in id order
    origin: str = ""  # where the model comes from, for messages

    def with_(self, **changes) -> Arch:
        return replace(self, **changes)


def arch_of_config(config) -> Arch:
    pruned = getattr(config, "pruned_heads", {}) or {}
    removed = max((len(v) for v in pruned.values()), default=0)
    return Arch(
        config.num_hidden_layers,
        config.hidden_size,
        config.num_attention_heads - (removed if len(pruned) else 0),
        config.intermediate_size,
    )


def arch_of_spec(spec: ShapeSpec, origin: str = "") -> Arch:
    # a shape is built as BertConfig builds it: two token types
    return Arch(
        spec.layers,
        spec.hidden,
        spec.heads,
        spec.ffn,
        positions=spec.max_position,
        vocab=spec.vocab_size,
        type_vocab=2,
        origin=origin or f"shape {spec.layers}x{spec.hidden}",
    )


def arch_of_source(source: ModelSource | str | None) -> Arch | None:
    """From a shape, a local config.json, or a known LERT hub id; None when unknown offline."""
    if source is None:
        return None
    src = ModelSource.model_validate(source) if isinstance(source, str) else source
    if src.shape is not None:
        named = src.shape if isinstance(src.shape, str) else ""
        return arch_of_spec(src.spec(), named)
    assert src.source is not None
    if src.source in SHIPPED:
        return arch_of_config_file(SHIPPED_DIR / SHIPPED[src.source] / "config.json", src.source)
    config = Path(src.source).expanduser() / "config.json"
    if config.is_file():
        return arch_of_config_file(config, src.source)
    cached = _cached_hub_config(src.source, src.revision)
    if cached is not None:
        return arch_of_config_file(cached, src.source)
    name = HUB_SHAPES.get(src.source)
    if name is None:
        return None
    return arch_of_spec(NAMED_SHAPES[name], src.source).with_(tokens=LERT_VOCAB_SIZE)


def _cached_hub_config(repo_id: str, revision: str | None) -> Path | None:
    """A hub model's config.json from the local Hugging Face cache, without the network."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except ValueError:  # not a repository id
        return None
    return Path(found) if isinstance(found, str) else None


BERT_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")


def arch_of_config_file(config: Path, origin: str = "") -> Arch:
    """The architecture in a model directory's config.json; a clear error if it is not BERT's."""
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RecipeError(f"{config}: not a readable JSON model config ({exc})") from exc
    missing = [k for k in BERT_KEYS if not isinstance(data, dict) or k not in data]
    if missing:
        kind = data.get("model_type", "unknown") if isinstance(data, dict) else "unknown"
        raise RecipeError(
            f"{config}: not a BERT config (model_type {kind!r}; missing {', '.join(missing)}); "
            "lert-compress works on BERT-architecture models such as LERT"
        )
    layers, hidden, heads, ffn = (int(data[k]) for k in BERT_KEYS)
    # BertConfig's defaults where a key is absent
    return Arch(
        layers,
        hidden,
        heads,
        ffn,
        positions=int(data.get("max_position_embeddings", 512)),
        vocab=int(data.get("vocab_size", 30522)),
        type_vocab=int(data.get("type_vocab_size", 2)),
        tokens=tokenizer_size(config.parent),
        width_heads=heads,
        head_labels=_head_labels(data),
        origin=origin or str(config.parent),
    )


TASK_HEADS = ("ForSequenceClassification", "ForTokenClassification")


def _head_labels(config: dict) -> tuple[str, ...] | None:
    """The labels of a saved classification or tagging head in id order (``id2label``, as
    transformers saves it: string ids), or None for a model without one."""
    heads = [a for a in config.get("architectures") or [] if a.endswith(TASK_HEADS)]
    id2label = config.get("id2label")
    if not heads or not isinstance(id2label, dict):
        return None
    try:
        return tuple(str(id2label[str(i)]) for i in range(len(id2label)))
    except KeyError:
        return None


def tokenizer_size(model_dir: Path) -> int | None:
    """The size of the tokenizer saved beside a config (vocab.txt, else tokenizer.json's
    vocabulary and added tokens), or None when there is none to read."""
    vocab = model_dir / "vocab.txt"
    if vocab.is_file():
        with vocab.open(encoding="utf-8") as fh:
            return sum(1 for _ in fh)  # one id per line, as BertTokenizer reads it
    fast = model_dir / "tokenizer.json"
    if not fast.is_file():
        return None
    try:
        data = json.loads(fast.read_text(encoding="utf-8"))
        ids = set(data["model"]["vocab"].values()) | {t["id"] for t in data.get("added_tokens", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return max(ids) + 1 if ids else None


def plan_archs(recipe) -> tuple[dict[str, Arch | None], list[str]]:
    """Each step's output architecture where it can be known, and the problems found, from the
    stage hooks ``out_arch`` and ``check_arch``."""
    archs: dict[str, Arch | None] = {}
    problems: list[str] = []
    for step in recipe.steps:
        in_arch = archs.get(step.input) if step.input else None
        if in_arch is not None:
            problems += [f"steps({step.name}): {p}" for p in step.config.check_arch(in_arch)]
        archs[step.name] = step.config.out_arch(in_arch, archs)
    return archs, problems
