"""Request bodies with exactly ``json.dumps``' bytes, the bulk of them rendered by orjson.

A batch create carries 200 ``{"bk_inst_id": S, "bk_asst_inst_id": D}`` details; the
standard library renders them at about three times orjson's cost. orjson writes no
spaces after ``:`` and ``,``. Where the details array holds nothing but integers,
lists and those two keys, putting the spaces back is exact: no string can contain a
``:`` or ``,`` there. Anything else is rendered by ``json.dumps``, as it always was.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

DETAILS = "details"
_KEYS = (b'"bk_inst_id":', b'"bk_asst_inst_id":')
_BARE = b"0123456789-[]{},"
"""What the array may hold once its keys are gone: digits, signs and structure."""


def dumps(payload: dict[str, Any]) -> bytes:
    """``json.dumps(payload).encode()``, byte for byte.

    A ``details`` list that is the payload's last key and holds only integer pairs is
    rendered by orjson and spliced in; anything else goes to ``json.dumps`` whole.
    """
    details = payload.get(DETAILS)
    if isinstance(details, list) and details and next(reversed(payload)) == DETAILS:
        rendered = _int_details(details)
        if rendered is not None:
            rest = {k: v for k, v in payload.items() if k != DETAILS}
            head = json.dumps(rest)[:-1] + ", " if rest else "{"
            return head.encode() + b'"details": ' + rendered + b"}"
    return json.dumps(payload).encode()


def _int_details(details: list[Any]) -> bytes | None:
    """``json.dumps(details)``'s bytes when only integers, lists and the two detail keys
    are in it; None when anything else is (a string, a float, a bool, another key)."""
    try:
        raw = orjson.dumps(details)
    except (orjson.JSONEncodeError, TypeError):  # an int beyond 64 bits, a non-str key
        return None
    if raw.replace(_KEYS[0], b"").replace(_KEYS[1], b"").translate(None, _BARE):
        return None
    return raw.replace(b":", b": ").replace(b",", b", ")
