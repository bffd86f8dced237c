"""Validation messages that name the bad key, its path and the closest valid names."""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError


def describe(
    exc: ValidationError, root: type[BaseModel], prefix: tuple, extra_names: list[str] = ()
) -> list[str]:
    """One line per error: ``path: message``, with close matches for unknown keys."""
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = ".".join(str(p) for p in prefix + loc)
        if err["type"] == "extra_forbidden":
            names = _field_names(root, loc[:-1])
            if not loc[:-1]:
                names += list(extra_names)
            out.append(f"{path}: unknown key{suggest(str(loc[-1]), names)}")
        else:
            got = err.get("input")
            shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
            out.append(f"{path}: {err['msg']}{shown}")
    return out


def _field_names(root: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the model found at ``loc`` inside ``root`` (empty if unknown)."""
    model: Any = root
    for part in loc:
        if isinstance(part, int) or not _is_model(model):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        model = _first_model(field.annotation)
    return list(model.model_fields) if _is_model(model) else []


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _first_model(annotation: Any) -> Any:
    if _is_model(annotation):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) in (
        typing.Union,
        list,
        dict,
    ):
        for arg in typing.get_args(annotation):
            found = _first_model(arg)
            if found is not None:
                return found
    return None


def suggest(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=3, cutoff=0.5)
    if close:
        return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    return f"; valid: {', '.join(sorted(candidates))}" if candidates else ""


# a folder name: Unicode letters and digits (Chinese included), '-', '_', '.', no leading '.'
_FOLDER_NAME = re.compile(r"[^\W_][\w.\-]*|_[\w.\-]*", re.UNICODE)


def folder_name_problem(key: str, value: object) -> str | None:
    """Why ``value`` (at recipe key ``key``) cannot be a folder name inside the artifacts root,
    or None: it must be one path component, so nothing a recipe says can write elsewhere."""
    text = str(value)
    if len(text) <= 100 and _FOLDER_NAME.fullmatch(text):
        return None
    return (
        f"{key}: {text!r} names a folder inside the artifacts root; use letters, digits, "
        "'-', '_' and '.' (not first), at most 100 characters: no '/', '\\', '..', spaces or "
        "absolute paths"
    )
