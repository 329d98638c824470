"""Where a course spec went wrong: lines, keys, suggestions, and the message a person reads.

tomllib keeps no positions, so `locate_key` finds the line of a dotted key by scanning
table headers and `key =` lines; pydantic's errors are turned into `Problem`s that say
the key, what is wrong, and a hint (a "did you mean", the allowed keys, or the setting's
own help text).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec."""

    key: tuple[str | int, ...]
    message: str
    hint: str = ""


def problems_from(
    error: ValidationError, prefix: tuple[str | int, ...], model: type[BaseModel]
) -> list[Problem]:
    problems = []
    for item in error.errors():
        loc = (*prefix, *item["loc"])
        kind = item["type"]
        key = str(item["loc"][-1]) if item["loc"] else ""
        if kind == "extra_forbidden":
            known = _known_keys(model, item["loc"][:-1])
            allowed = f"allowed here: {', '.join(sorted(known))}" if known else ""
            problems.append(
                Problem(loc, f"unknown key {key!r}", did_you_mean(key, known) + allowed)
            )
        elif kind == "missing":
            problems.append(Problem(loc, f"missing key {key!r}", _describe(model, item["loc"])))
        else:
            got = item.get("input")
            shown = f" (got {got!r})" if not isinstance(got, dict | list) else ""
            problems.append(Problem(loc, f"{item['msg']}{shown}", _describe(model, item["loc"])))
    return problems


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = field.annotation
    return list(getattr(current, "model_fields", {}))


def _describe(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    current: Any = model
    description = ""
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            break
        description = fields[part].description or ""
        current = fields[part].annotation
    return description


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def render_problems(problems: list[Problem], text: str, path: Path) -> str:
    lines = [
        f"{len(problems)} problem(s) in the course spec:"
        if len(problems) > 1
        else "problem in the course spec:"
    ]
    for problem in problems:
        line = locate_key(text, problem.key)
        dotted = ".".join(str(part) for part in problem.key)
        lines.append(f"  {path}:{line}: {dotted}: {problem.message}")
        if problem.hint:
            lines.append(f"      hint: {problem.hint}")
    return "\n".join(lines)


def located(problems: list[Problem], text: str) -> tuple[tuple[int, str, str, str], ...]:
    """Each problem as (line, dotted key, message, hint), in the order `render_problems`
    prints them."""
    return tuple(
        (
            locate_key(text, problem.key),
            ".".join(str(part) for part in problem.key),
            problem.message,
            problem.hint,
        )
        for problem in problems
    )


_HEADER_RE = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY_RE = re.compile(r"^\s*([A-Za-z0-9_.\-\"' ]+?)\s*=")


def locate_key(text: str, key: tuple[str | int, ...]) -> int:
    """Best line number (1-based) for a dotted key in TOML text, for error messages.

    tomllib keeps no positions, so this scans table headers and `key =` lines; it finds
    the deepest part of the key it can, falling back to the table, then to line 1.
    """
    parts = [str(part) for part in key if not isinstance(part, int)]
    best_line, best_depth = 1, 0
    table: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER_RE.match(line)
        if header:
            table = [p.strip().strip("\"'") for p in header.group(1).split(".")]
            depth = _common_prefix(table, parts)
            if depth == len(table) and depth > best_depth:
                best_line, best_depth = number, depth
            continue
        found = _KEY_RE.match(line)
        if not found:
            continue
        dotted = table + [p.strip().strip("\"'") for p in found.group(1).split(".")]
        depth = _common_prefix(dotted, parts)
        if depth == len(dotted) and depth > best_depth:
            best_line, best_depth = number, depth
        elif depth > best_depth and depth >= len(table) + 1 and line.find("{") > 0:
            # an inline table on this line holds the key we look for
            best_line, best_depth = number, depth
    return best_line


def _common_prefix(left: list[str], right: list[str]) -> int:
    count = 0
    for a, b in zip(left, right, strict=False):
        if a != b:
            break
        count += 1
    return count


def line_of_decode_error(message: str) -> int | None:
    found = re.search(r"line (\d+)", message)
    return int(found.group(1)) if found else None


def strip_position(message: str) -> str:
    return re.sub(r"\s*\(at line \d+, column \d+\)", "", message).strip()
