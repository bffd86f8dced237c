"""Model sources (hub id, local directory, or a shape for random init), LERT shapes, tokenizers."""

from __future__ import annotations

import collections
import functools
import logging
import os
import socket
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, model_validator

from compress.errors import ModelSourceError, RecipeError

log = logging.getLogger(__name__)

LERT_VOCAB_SIZE = 21128
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


class ShapeSpec(BaseModel):
    """A BERT shape for random initialisation."""

    model_config = ConfigDict(extra="forbid")

    layers: int = Field(ge=1)
    hidden: int = Field(ge=8)
    heads: int = Field(ge=1)
    ffn: int = Field(ge=8)
    vocab_size: int | None = Field(None, ge=8, description="default: the tokenizer's size")
    max_position: int = Field(512, ge=8)

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> ShapeSpec:
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by heads {self.heads}")
        return self


NAMED_SHAPES: dict[str, ShapeSpec] = {
    "lert-small": ShapeSpec(layers=12, hidden=256, heads=4, ffn=1024, vocab_size=LERT_VOCAB_SIZE),
    "lert-base": ShapeSpec(layers=12, hidden=768, heads=12, ffn=3072, vocab_size=LERT_VOCAB_SIZE),
    "lert-large": ShapeSpec(layers=24, hidden=1024, heads=16, ffn=4096, vocab_size=LERT_VOCAB_SIZE),
}


class ModelSource(BaseModel):
    """``hfl/chinese-lert-small`` (hub id), ``./path`` (local HF directory), or ``{shape: ...}``.

    A shape without a tokenizer gets a character vocabulary built from the training split.
    """

    model_config = ConfigDict(extra="forbid")

    source: str | None = None
    shape: str | ShapeSpec | None = None
    revision: str | None = None
    min_count: int = Field(2, ge=1, description="char vocabulary: keep characters seen this often")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"source": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_of(self) -> ModelSource:
        if (self.source is None) == (self.shape is None):
            raise ValueError("give exactly one of source (hub id or directory) and shape")
        if isinstance(self.shape, str) and self.shape not in NAMED_SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; named shapes: {sorted(NAMED_SHAPES)}")
        return self

    def spec(self) -> ShapeSpec:
        assert self.shape is not None
        return NAMED_SHAPES[self.shape] if isinstance(self.shape, str) else self.shape

    def describe(self) -> str:
        if self.source:
            return self.source
        return self.shape if isinstance(self.shape, str) else f"shape {self.spec().model_dump()}"


def model_class(task_type: str):
    from transformers import (
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    return {
        "ner": AutoModelForTokenClassification,
        "qa": AutoModelForQuestionAnswering,
    }.get(task_type, AutoModelForSequenceClassification)


# Models shipped inside the package (made by this project's own recipes), by the name recipes
# use for them: they load offline from any install.
SHIPPED_DIR = Path(__file__).resolve().parent / "pretrained"
SHIPPED = {"lert-compress/mini-lert": "mini-lert"}


# a rehearsal's stand-ins (compress/rehearsal.py): hub id -> a local folder of random weights
# with the model's exact published config
SUBSTITUTES: dict[str, str] = {}


def resolve_source(source: str) -> str:
    """A shipped model's directory for its name, a rehearsal's stand-in for a hub id it
    replaces; any other source unchanged."""
    if source in SUBSTITUTES:
        return SUBSTITUTES[source]
    if source in SHIPPED:
        path = SHIPPED_DIR / SHIPPED[source]
        if not (path / "config.json").is_file():
            raise ModelSourceError(
                f"{source}: the shipped model is missing from {path}; reinstall the package "
                "(make install), or regenerate it with make recipe=pretrain-mini-lert"
            )
        return str(path)
    return source


def looks_local(source: str) -> bool:
    """Whether ``source`` names a local directory rather than a hub id: it exists, starts like a
    path, or its first part is a local folder (``models/lert`` when ./models exists)."""
    path = Path(source).expanduser()
    first = Path(source.split("/")[0]).expanduser()
    return (
        path.exists()
        or source.startswith((".", "/", "~"))
        or source.count("/") > 1
        or (first.is_dir() and "/" in source)
    )


@functools.cache
def hub_unreachable() -> str | None:
    """Why the hub cannot be reached (None when it can, or when offline mode is already on).

    Asked once per process, with a 3-second connection attempt, so that an unreachable hub
    means one clear error at once instead of a minute of retries per file.
    """
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return None
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname or "", port), timeout=3).close()
    except OSError as exc:
        log.warning("the hub %s cannot be reached (%s): local cache only", endpoint.netloc, exc)
        return f"{endpoint.netloc} cannot be reached: {exc}"
    return None


def hub_kwargs() -> dict[str, Any]:
    """``from_pretrained`` options: the local cache only when the hub cannot be reached."""
    return {"local_files_only": True} if hub_unreachable() else {}


def load_errors() -> tuple[type[BaseException], ...]:
    """What a broken or missing model raises while loading (truncated weights included)."""
    from safetensors import SafetensorError

    return (OSError, ValueError, SafetensorError)


def source_error(source: str, exc: BaseException) -> ModelSourceError:
    """The message for a model that could not be loaded, with the ways around it."""
    if looks_local(source):
        path = Path(source).expanduser()
        if not path.exists():
            return ModelSourceError(f"local directory {source!r} does not exist")
        return ModelSourceError(
            f"could not load the model in {source!r}: {type(exc).__name__}: {_first_line(exc)}. "
            "It must be a Hugging Face model directory (config.json, safetensors or bin "
            "weights, vocab.txt) with intact files; for LERT's TensorFlow release run "
            "`lert-compress convert-tf CKPT_DIR OUT_DIR` first."
        )
    endpoint = os.environ.get("HF_ENDPOINT", "the default hub")
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    unreachable = hub_unreachable()
    if unreachable:
        exc = ConnectionError(f"{unreachable}, and it is not in the local cache")
    cache_hint = (
        "  - HF_HUB_OFFLINE=1 is set: only models already in the local cache load; unset it "
        "where the hub is reachable"
        if offline
        else "  - with the model already in the local cache, set HF_HUB_OFFLINE=1"
    )
    return ModelSourceError(
        f"could not load {source!r} from the Hugging Face hub ({endpoint}"
        f"{', HF_HUB_OFFLINE=1' if offline else ''}): {type(exc).__name__}: {_first_line(exc)}\n"
        "Ways around it:\n"
        "  - download it where the hub is reachable and point the recipe at the directory\n"
        "  - set HF_ENDPOINT to a hub mirror you can reach\n" + cache_hint
    )


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else ""


def load_tokenizer(source: str | Path, revision: str | None = None):
    """The tokenizer of a hub id or a local directory (a step output included)."""
    from transformers import AutoTokenizer

    source = resolve_source(str(source))
    try:
        kwargs = {} if looks_local(str(source)) else hub_kwargs()
        return AutoTokenizer.from_pretrained(source, revision=revision, **kwargs)
    except load_errors() as exc:
        raise source_error(str(source), exc) from exc


def load_pretrained(src: ModelSource, task_type: str, labels: list[str]):
    """A task model from a hub id or local directory (new head when the labels differ)."""
    assert src.source is not None
    cls = model_class(task_type)
    kwargs = label_kwargs(labels)
    source = resolve_source(src.source)
    try:
        hub = {} if looks_local(source) else hub_kwargs()
        return cls.from_pretrained(
            source, revision=src.revision, **kwargs, **hub, ignore_mismatched_sizes=True
        )
    except load_errors() as exc:
        raise source_error(src.source, exc) from exc


def label_kwargs(labels: list[str]) -> dict[str, Any]:
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }


def bert_config(spec: ShapeSpec, vocab_size: int, labels: list[str]):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=spec.vocab_size or vocab_size,
        hidden_size=spec.hidden,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        intermediate_size=spec.ffn,
        max_position_embeddings=spec.max_position,
        **(label_kwargs(labels) if labels else {}),  # none: a masked LM
    )


def init_from_shape(spec: ShapeSpec, tokenizer, task_type: str, labels: list[str]):
    config = bert_config(spec, len(tokenizer), labels)
    if config.vocab_size < len(tokenizer):
        raise RecipeError(
            f"shape vocab_size {config.vocab_size} is smaller than the tokenizer's "
            f"{len(tokenizer)} tokens"
        )
    return model_class(task_type).from_config(config)


def _normalise(text: str) -> str:
    """What BERT's basic tokenizer does before WordPiece: lower case, strip accents."""
    text = unicodedata.normalize("NFD", text.lower())
    return "".join(c for c in text if unicodedata.category(c) != "Mn")


def build_char_vocab(texts: list[str], min_count: int, out_dir: Path) -> Path:
    """A character vocabulary (special tokens + characters seen ``min_count`` times) as vocab.txt.

    Characters also get a ``##`` continuation entry so that non-Chinese words, which WordPiece
    splits into pieces, map to characters instead of ``[UNK]``.
    """
    counts = collections.Counter(c for t in texts for c in _normalise(t) if not c.isspace())
    chars = sorted(c for c, n in counts.items() if n >= min_count)
    tokens = SPECIAL_TOKENS + chars + [f"##{c}" for c in chars if not _is_cjk(c)]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    log.info(
        "character vocabulary: %d tokens from %d distinct characters (min_count %d)",
        len(tokens),
        len(counts),
        min_count,
    )
    return path


def _is_cjk(char: str) -> bool:
    cp = ord(char)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2FA1F
        or (0xF900 <= cp <= 0xFAFF)
    )


def char_tokenizer(texts: list[str], min_count: int, out_dir: Path):
    from transformers import BertTokenizerFast

    vocab = build_char_vocab(texts, min_count, out_dir)
    return BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True, tokenize_chinese_chars=True)


def model_for_task(src: ModelSource, task, work_dir: Path, tokenizer=None):
    """(model, tokenizer) for a step: pretrained from a source, or random init from a shape.

    A shape uses ``tokenizer`` when given (e.g. the teacher's), else a character vocabulary.
    """
    if src.source:
        return load_pretrained(src, task.type, task.labels), load_tokenizer(
            src.source, src.revision
        )
    if tokenizer is None:
        tokenizer = char_tokenizer(task.texts("train"), src.min_count, work_dir / "vocab")
    return init_from_shape(src.spec(), tokenizer, task.type, task.labels), tokenizer


def count_parameters(model) -> dict[str, int]:
    """Parameters in total, in the embeddings and in the encoder."""
    total = sum(p.numel() for p in model.parameters())
    base = getattr(model, "bert", model)
    embeddings = (
        sum(p.numel() for p in base.embeddings.parameters()) if hasattr(base, "embeddings") else 0
    )
    encoder = sum(p.numel() for p in base.encoder.parameters()) if hasattr(base, "encoder") else 0
    return {"total": total, "embeddings": embeddings, "encoder": encoder}


def save_model(model, tokenizer, out: Path) -> Path:
    """A plain Hugging Face directory: safetensors weights, config with labels, and a tokenizer
    that knows the model's length limit (so clients' ``truncation=True`` stops there)."""
    out.mkdir(parents=True, exist_ok=True)
    model.to("cpu").save_pretrained(out, safe_serialization=True)
    tokenizer.model_max_length = model.config.max_position_embeddings
    tokenizer.save_pretrained(out)
    return out


def load_model(path: Path, task_type: str):
    """A task model from a step's output directory (or any local model directory)."""
    try:
        return model_class(task_type).from_pretrained(path)
    except load_errors() as exc:
        raise source_error(str(path), exc) from exc
