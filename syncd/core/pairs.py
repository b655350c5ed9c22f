"""A relationship pair packed into one int.

A million desired pairs held as ``(src, dst)`` tuples cost ~140 MB; packed into a
single int each they cost ~70 MB and set arithmetic stays in C. Instance ids in
BlueKing CMDB are non-negative int64, so ``src << 64 | dst`` is lossless.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from operator import and_, lshift, or_, rshift
from typing import Any

PairKey = int
"""``src << 64 | dst``: one (bk_inst_id, bk_asst_inst_id) pair."""

_SHIFT = 64
_MASK = (1 << _SHIFT) - 1
MAX_ID = (1 << 63) - 1
_PLAIN = frozenset({int, str})


def pack(src: int, dst: int) -> PairKey:
    """Pack a (bk_inst_id, bk_asst_inst_id) pair into one int."""
    return (src << _SHIFT) | dst


def unpack(key: PairKey) -> tuple[int, int]:
    """The (bk_inst_id, bk_asst_inst_id) pair a key stands for."""
    return key >> _SHIFT, key & _MASK


def unpack_list(keys: Iterable[PairKey]) -> list[tuple[int, int]]:
    """Unpack many keys at once (a batch: no function call a key)."""
    return [(key >> _SHIFT, key & _MASK) for key in keys]


def unpack_all(keys: Iterable[PairKey]) -> Iterator[tuple[int, int]]:
    """Unpack many keys lazily."""
    for key in keys:
        yield key >> _SHIFT, key & _MASK


def pack_all(pairs: Iterable[tuple[int, int]]) -> Iterator[PairKey]:
    """Pack many (src, dst) pairs lazily (e.g. rows of a database scan)."""
    for src, dst in pairs:
        yield (src << _SHIFT) | dst


def pack_raw(sources: Sequence[Any], targets: Sequence[Any]) -> Iterator[PairKey] | None:
    """Keys for a chunk of raw source values, at C speed; None if any value is not plainly valid.

    Valid means every value is an ``int`` or a ``str`` of ASCII digits, in 0..MAX_ID:
    exactly what the engine's per-value check accepts, so a None sends the caller to
    that check (which names the bad value) and a result equals what it would build.
    """
    if not sources or not {*map(type, sources), *map(type, targets)} <= _PLAIN:
        return None
    texts = [v for v in (*sources, *targets) if type(v) is str]
    if texts:
        # As the per-value check: ASCII digits only (int() also takes "1_000", "+5", " 7 ",
        # full-width digits), and no number text long enough to be slow to convert.
        joined = "".join(texts)
        if not (joined.isascii() and joined.isdigit()) or max(map(len, texts)) > 20:
            return None
    try:
        src = list(map(int, sources))
        dst = list(map(int, targets))
    except ValueError:
        return None
    if min(src) < 0 or min(dst) < 0 or max(src) > MAX_ID or max(dst) > MAX_ID:
        return None
    return map(or_, map(lshift, src, repeat(_SHIFT)), dst)


def pack_columns(src: Sequence[str], dst: Sequence[str]) -> list[PairKey] | None:
    """Keys for two columns of ASCII-digit texts (checked by the caller), at C speed.

    None when a value is out of range (or too long for ``int()``): the caller then takes
    the per-value path, which names it. Leading zeros are read as ``to_id`` reads them.
    """
    try:
        high = _column(src, _SHIFT)
        low = _column(dst, 0)
    except ValueError:  # more digits than int() converts
        return None
    if high is None or low is None:
        return None
    return list(map(or_, high, low))


def _column(texts: Sequence[str], shift: int) -> Iterator[int] | None:
    """``int(text) << shift`` for each text, or None when one is over MAX_ID.

    A column whose texts repeat (a switch on every cable of its ports, a host on every
    switch of a grid) converts and shifts each distinct text once, then looks them up.
    """
    distinct = set(texts)
    if not texts or 2 * len(distinct) > len(texts):
        values = list(map(int, texts))
        if values and max(values) > MAX_ID:
            return None
        return map(lshift, values, repeat(shift)) if shift else iter(values)
    table = dict(zip(distinct, map(int, distinct), strict=True))
    if max(table.values()) > MAX_ID:
        return None
    if shift:
        table = {text: value << shift for text, value in table.items()}
    return map(table.__getitem__, texts)


def from_hex(text: str) -> list[PairKey]:
    """Keys from comma-joined hex texts of packed keys (the state's ``printf('%x%016x')``)."""
    if not text:
        return []
    return list(map(int, text.split(","), repeat(16)))


def ids_of(keys: Iterable[PairKey], side: int) -> Iterator[int]:
    """The src (side 0) or dst (side 1) ids of many keys, at C speed."""
    if side == 0:
        return map(rshift, keys, repeat(_SHIFT))
    return map(and_, keys, repeat(_MASK))
