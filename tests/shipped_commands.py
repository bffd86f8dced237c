"""The command lines the project ships, as a person would copy them: the README's and docs/'s
shell blocks and inline commands, the scripts, and the commands in recipe comments."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# the first word of a command a person runs (an inline span starting otherwise is not one)
COMMANDS = ("make", "lert-compress", "python", "python3", "torchrun", "pip", "bash", "pytest")
_FENCE = re.compile(r"^```(\w*)\s*$")
_INLINE = re.compile(r"`([^`\n]+)`")
_PLACEHOLDER = re.compile(r"<[^<>]*>")


@dataclass(frozen=True)
class Shipped:
    where: str  # file:line
    argv: tuple[str, ...]
    recipe: str | None = None  # the recipe a bare ARGS="..." in a recipe's comment is for

    def __str__(self) -> str:
        return f"{self.where}: {shlex.join(self.argv)}"


def words(line: str) -> list[str] | None:
    """The words of a shell line (comments dropped, ``<placeholders>`` kept as one word), or None
    while a quote is still open."""
    try:
        return shlex.split(_PLACEHOLDER.sub("PLACEHOLDER", line), comments=True)
    except ValueError:
        return None


def _command(argv: list[str]) -> list[str]:
    """``argv`` less leading environment assignments (``HF_HUB_OFFLINE=1 make ...``)."""
    while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", argv[0]):
        argv = argv[1:]
    return argv


def _is_command(argv: list[str]) -> bool:
    first = Path(argv[0]).name if argv else ""
    return first in COMMANDS or first.startswith("python") or argv[0] in ('"$PY"', "$PY")


def _joined(lines: list[tuple[int, str]]):
    """(line number, logical line): backslash continuations and open quotes joined."""
    buffer, start = "", 0
    for number, line in lines:
        if not buffer:
            start = number
        buffer = f"{buffer} {line.strip()}" if buffer else line.strip()
        if buffer.endswith("\\"):
            buffer = buffer[:-1].rstrip()
            continue
        if words(buffer) is None:
            continue
        yield start, buffer
        buffer = ""
    if buffer:
        yield start, buffer


def _from_lines(where: str, lines: list[tuple[int, str]], recipe: str | None = None):
    for number, line in _joined(lines):
        argv = words(line)
        if argv and argv[0].startswith("ARGS=") and recipe:  # "ARGS=..." for this recipe
            yield Shipped(f"{where}:{number}", ("make", f"recipe={recipe}", *argv), recipe)
            continue
        argv = _command(argv or [])
        if argv and _is_command(argv):
            yield Shipped(f"{where}:{number}", tuple(argv), recipe)


def _inline(where: str, number: int, text: str, recipe: str | None = None):
    for span in _INLINE.findall(text):
        argv = _command(words(span) or [])
        if argv and _is_command(argv) and len(argv) > 1 or argv == ["make"]:
            yield Shipped(f"{where}:{number}", tuple(argv), recipe)


def markdown_commands(path: Path):
    """Shell blocks (```sh / ```bash / ```console) line by line, and inline commands elsewhere."""
    where = str(path.relative_to(ROOT))
    block: str | None = None
    shell: list[tuple[int, str]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = _FENCE.match(line)
        if fence and block is None:
            block = fence.group(1)
            continue
        if fence:
            if block in ("sh", "bash", "console", "shell"):
                yield from _from_lines(where, shell)
            block, shell = None, []
            continue
        if block is None:
            yield from _inline(where, number, line)
        elif block in ("sh", "bash", "console", "shell"):
            shell.append((number, line.removeprefix("$ ")))


def script_commands(path: Path):
    where = str(path.relative_to(ROOT))
    lines = [(n, x) for n, x in enumerate(path.read_text().splitlines(), 1)]
    code = [(n, x) for n, x in lines if x.strip() and not x.lstrip().startswith("#")]
    yield from _from_lines(where, code)


def recipe_comment_commands(path: Path):
    """Commands in a recipe's comments: inline spans, ``make ...`` to the end of its line (with
    continuations) and bare ``ARGS="..."`` lines, which mean this recipe."""
    where, recipe = str(path.relative_to(ROOT)), path.stem
    comments = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("#"):
            text = line.lstrip()[1:]
            yield from _inline(where, number, text, recipe)
            comments.append((number, _INLINE.sub("", text)))
    current: list[tuple[int, str]] = []
    for number, text in comments:
        starts = re.search(r"(?:^|\s)(make\b.*|ARGS=.*)$", text)
        if starts and not current:
            current = [(number, starts.group(1))]
        elif current:
            current.append((number, text))
        if current and _complete(current):
            yield from _from_lines(where, current, recipe)
            current = []


def _complete(lines: list[tuple[int, str]]) -> bool:
    text = " ".join(x.strip() for _, x in lines)
    return not text.endswith("\\") and words(text) is not None


def all_commands() -> list[Shipped]:
    found: list[Shipped] = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        found += markdown_commands(doc)
    for script in sorted((ROOT / "scripts").glob("*.sh")):
        found += script_commands(script)
    for recipe in sorted((ROOT / "recipes").glob("*.yaml")):
        found += recipe_comment_commands(recipe)
    return found
