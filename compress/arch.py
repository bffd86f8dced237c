"""Architectures known before any work, so that impossible targets fail at recipe validation."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from compress.errors import RecipeError
from compress.models import NAMED_SHAPES, SHIPPED, SHIPPED_DIR, ModelSource, ShapeSpec

HUB_SHAPES = {f"hfl/chinese-{name}": name for name in NAMED_SHAPES}


@dataclass(frozen=True)
class Arch:
    layers: int
    hidden: int
    heads: int  # per layer (the most any layer has)
    ffn: int

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


def arch_of_spec(spec: ShapeSpec) -> Arch:
    return Arch(spec.layers, spec.hidden, spec.heads, spec.ffn)


def arch_of_source(source: ModelSource | str | None) -> Arch | None:
    """From a shape, a local config.json, or a known LERT hub id; None when unknown offline."""
    if source is None:
        return None
    src = ModelSource.model_validate(source) if isinstance(source, str) else source
    if src.shape is not None:
        return arch_of_spec(src.spec())
    assert src.source is not None
    if src.source in SHIPPED:
        return arch_of_config_file(SHIPPED_DIR / SHIPPED[src.source] / "config.json")
    config = Path(src.source).expanduser() / "config.json"
    if config.is_file():
        return arch_of_config_file(config)
    name = HUB_SHAPES.get(src.source)
    return arch_of_spec(NAMED_SHAPES[name]) if name else None


BERT_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")


def arch_of_config_file(config: Path) -> Arch:
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
    return Arch(*(int(data[k]) for k in BERT_KEYS))


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
