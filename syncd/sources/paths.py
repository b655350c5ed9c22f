"""Path expressions that pick a key out of a JSON record: ``a_terminations[0].object.name``.

Shared by the http and command sources and their settings; pure, no I/O.
"""

from __future__ import annotations

import re
from typing import Any

from syncd.sources.base import RawValue

PathStep = str | int
_KEY = re.compile(r"[^.\[\]]+")
_INDEX = re.compile(r"\[(-?\d+)\]")


def compile_path(expr: str) -> tuple[PathStep, ...]:
    """Parse ``a_terminations[0].object.device.name`` into keys and list indexes.

    The empty string is the document itself. Raises ValueError naming the bad spot.
    """
    steps: list[PathStep] = []
    pos = 0
    while pos < len(expr):
        index = _INDEX.match(expr, pos)
        if index is not None:
            steps.append(int(index.group(1)))
            pos = index.end()
            continue
        if pos > 0:
            if expr[pos] != ".":
                raise ValueError(f"bad path {expr!r} at position {pos}: expected '.' or '['")
            pos += 1
        key = _KEY.match(expr, pos)
        if key is None:
            raise ValueError(f"bad path {expr!r} at position {pos}: expected a key")
        steps.append(key.group(0))
        pos = key.end()
    return tuple(steps)


class PathMissing(LookupError):
    """The record has nothing at the path."""


def get_path(doc: Any, steps: tuple[PathStep, ...]) -> Any:
    """The value at a compiled path; PathMissing names the first step that is not there."""
    node = doc
    for step in steps:
        if isinstance(step, int):
            if not isinstance(node, list) or not -len(node) <= step < len(node):
                raise PathMissing(f"[{step}]")
            node = node[step]
        else:
            if not isinstance(node, dict) or step not in node:
                raise PathMissing(step)
            node = node[step]
    return node


def path_validator(value: str | None) -> str | None:
    """A pydantic field validator: the path expression must compile."""
    if value is not None:
        compile_path(value)
    return value


def scalar(value: Any) -> RawValue:
    """A key value as the engine takes it; lists and objects are not keys."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"value is a {type(value).__name__}, not a scalar")
