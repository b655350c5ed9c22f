"""Text from a config file or the environment, made safe for one line of a terminal or
journal: control characters (ESC sequences, newlines) and bidirectional overrides are
shown escaped, never interpreted."""

from __future__ import annotations

import re

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def escape_controls(text: str) -> str:
    """``text`` with every control character written as a Python escape (``\\x1b``)."""
    return _UNSAFE.sub(lambda m: repr(m.group())[1:-1], text)
