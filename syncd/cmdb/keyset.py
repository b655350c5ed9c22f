"""Keyset paging over association ids: ``id > last``, sorted by id, always ``start = 0``.

Offset paging makes the server skip ``start`` rows for every page (O(n²) for a
full read on MongoDB), and a row deleted on a page already read shifts the next
row onto it, where the next page never looks. Paging by key has neither flaw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def keyset_rules(extra: Sequence[dict[str, Any]], last: int | None) -> list[dict[str, Any]]:
    """The caller's rules plus ``id > last`` once a page has been read."""
    if last is None:
        return list(extra)
    return [*extra, {"field": "id", "operator": "greater", "value": last}]


def next_key(rows: Sequence[Any], last: int | None) -> int | None:
    """The largest id on a full page, or None when paging cannot safely go on.

    None means no row carries an integer id above ``last``: the server ignored
    the filter or the sort, and asking again would read the same page forever.
    """
    best: int | None = None
    for row in rows:
        try:
            value = int(row["id"])
        except (KeyError, TypeError, ValueError):
            continue
        if best is None or value > best:
            best = value
    if best is None or (last is not None and best <= last):
        return None
    return best
