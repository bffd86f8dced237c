"""Shared command-line plumbing: logging and user-facing errors without tracebacks."""

from __future__ import annotations

import errno
import logging
import os
import sys
import types
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from compress.errors import CompressError


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in (
        "textbrewer",
        "Distillation",
        "transformers",
        "datasets",
        "urllib3",
        "matplotlib",
        "httpx",
        "optimum",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main_guard(fn: Callable[[], int]) -> int:
    try:
        return fn()
    except CompressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished steps are kept; run again to resume", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk, a read-only directory, a file that went away
        where = exc.filename or "a file"
        fix = {
            errno.ENOSPC: "free some space or use --out on another disk",
            errno.EACCES: "make it writable or use --out for another artifacts root",
            errno.EROFS: "use --out for an artifacts root on a writable file system",
            errno.EDQUOT: "free some space or use --out on another disk",
        }.get(exc.errno or 0, "check the path and its permissions")
        print(f"error: {where}: {exc.strerror or exc}; {fix}", file=sys.stderr)
        print("finished steps are kept; run again to resume", file=sys.stderr)
        return 1


def type_name(annotation: Any) -> str:
    """A readable type: ``int``, ``'dynamic' | 'static'``, ``list[int]``, ``float (optional)``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [type_name(a) for a in args if a is not type(None)]
        optional = len(parts) < len(args)
        return " | ".join(parts) + (" (optional)" if optional else "")
    if origin is not None:
        return (
            f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
        )
    return getattr(annotation, "__name__", str(annotation))


def options_text(model: type[BaseModel], indent: str = "  ") -> list[str]:
    """One line per option (type, default, description), nested option groups indented."""
    lines = []
    for name, field in model.model_fields.items():
        default = "required" if field.is_required() else f"default {field.get_default()!r}"
        text = f"{indent}{name}: {type_name(field.annotation)}, {default}"
        if field.description:
            text += f" - {field.description}"
        lines.append(text)
        for nested in _nested_models(field.annotation):
            lines += options_text(nested, indent + "    ")
    return lines


def _nested_models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _nested_models(a)]
