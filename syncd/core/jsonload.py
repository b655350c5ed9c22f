"""JSON answers read by orjson where it gives exactly what ``json.loads`` gives.

The CMDB's answers are JSON: a batch answer of 200 details, a page of 500
associations. orjson reads them 3-4 times faster than the standard library; where
the two would differ, the standard library reads them, as it always did.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_LONG_NUMBER = re.compile(rb"[0-9]{19}")
"""orjson reads an integer outside int64/uint64 as a float; json keeps it an int."""


def loads(body: bytes) -> Any:
    """``json.loads(body)``, by orjson where that gives the same result.

    Not by orjson: a body with a run of 19 digits (an integer that big would become a
    float), and anything orjson refuses (NaN, lone surrogates, a BOM or UTF-16, deep
    nesting, garbage): json.loads reads those, or raises, exactly as before.
    """
    if _LONG_NUMBER.search(body) is None:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return json.loads(body)
