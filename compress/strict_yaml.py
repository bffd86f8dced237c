"""Recipe YAML read strictly: what PyYAML (YAML 1.1) accepts silently but a person almost never
means is an error naming the line, before any work.

Refused, each with the fix:
- a key given twice in one mapping (PyYAML keeps the last one without a word);
- ``yes``/``no``/``on``/``off`` unquoted (YAML 1.1 booleans: ``name: no`` is ``False``);
- numbers YAML 1.1 reads in another base: ``010`` is 8 (octal), ``1:30`` is 90 (base 60);
- an unquoted date (``revision: 2024-01-01`` is a date, not the text);
- ``.nan`` (a number that fails every comparison, so no bound can catch it);
- a key with nothing after its colon (``epochs:`` is null); write ``null`` where that is meant.

Exponent floats without a dot (``1e-4``), which YAML 1.1 reads as text, are read as numbers, as
YAML 1.2 and every person do. PyYAML has no strict mode (yaml/pyyaml#41 asks for duplicate keys
since 2016), so these checks are a loader subclass of PyYAML's own ``SafeLoader``.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from compress.errors import RecipeError

# YAML 1.2's float forms that YAML 1.1 reads as strings: 1e-4, 5E3, -2e+10
_EXP_FLOAT = re.compile(r"[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that records the first problem it meets (with its line) and raises it."""


_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXP_FLOAT, list("-+0123456789"))


def _plain(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.style is None


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _scalar_problem(node: ScalarNode) -> str | None:
    """What an unquoted scalar means to YAML 1.1 when that is not what it says (by the tag the
    resolver gave it)."""
    if not _plain(node):
        return None
    text, tag = node.value, node.tag.rsplit(":", 1)[-1]
    if tag == "bool" and text.lower() in ("yes", "no", "on", "off"):
        meaning = "true" if text.lower() in ("yes", "on") else "false"
        return (
            f"{text} is read as {meaning} by YAML 1.1; write {meaning} for the boolean, or "
            f"quote it ('{text}') for the text"
        )
    digits = text.lstrip("+-")
    sexagesimal = tag in ("int", "float") and ":" in text
    octal = tag == "int" and len(digits) > 1 and digits[0] == "0" and digits[1] not in "xXbB"
    value = yaml.safe_load(text) if sexagesimal or octal else None
    if sexagesimal or (octal and abs(value) != int(digits.replace("_", ""))):
        how = ("base 60", "colons") if sexagesimal else ("octal", "the leading 0")
        return (
            f"{text} is read as {value} ({how[0]}) by YAML 1.1; write the number you mean "
            f"without {how[1]}, or quote it ('{text}')"
        )
    if tag == "timestamp":
        return f"{text} is read as a date; quote it ('{text}') for the text"
    if tag == "float" and text.lower() == ".nan":
        return f"{text} is not a number; give the value you mean"
    return None


def _check(node: Node, problems: list[str], source: str) -> None:
    if isinstance(node, ScalarNode):
        if problem := _scalar_problem(node):
            problems.append(f"{source}:{_line(node)}: {problem}")
    elif isinstance(node, SequenceNode):
        for item in node.value:
            _check(item, problems, source)
    elif isinstance(node, MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, ScalarNode) else None
            if name is not None and name != "<<":
                if name in first:
                    problems.append(
                        f"{source}:{_line(key)}: key {name!r} appears twice in one mapping "
                        f"(lines {first[name]} and {_line(key)}); YAML keeps only the last: "
                        "keep one"
                    )
                first.setdefault(name, _line(key))
            _check(key, problems, source)
            if _plain(value) and value.value == "" and value.tag.endswith(":null"):
                problems.append(
                    f"{source}:{_line(key)}: {name}: has no value (read as null); give one, "
                    "or write null where none is meant"
                )
            else:
                _check(value, problems, source)


def load_strict(text: str, source: str) -> Any:
    """Parse one YAML document strictly; every problem found is listed, each with its line."""
    loader = _StrictLoader(text)
    loader.name = source  # PyYAML's own messages name the file, not "<unicode string>"
    try:
        node = loader.get_single_node()
        problems: list[str] = []
        if node is not None:
            _check(node, problems, source)
        if problems:
            raise RecipeError("; ".join(problems) if len(problems) == 1 else _listing(problems))
        return loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise RecipeError(f"{source}: not valid YAML: {_one_line(exc)}") from exc
    finally:
        loader.dispose()


def load_value(text: str, source: str) -> Any:
    """A scalar or flow collection given on the command line, read as strictly as a file.

    An empty value stays the empty string (``key=`` clears a text option)."""
    if text == "":
        return ""
    try:
        return load_strict(text, source)
    except RecipeError as exc:  # one value: its line number says nothing
        raise RecipeError(str(exc).replace(f"{source}:1:", f"{source}:")) from exc


def _listing(problems: list[str]) -> str:
    return "several problems:\n  - " + "\n  - ".join(problems)


def _one_line(exc: yaml.YAMLError) -> str:
    """PyYAML's message with its marks folded into one line."""
    return " ".join(str(exc).split())
