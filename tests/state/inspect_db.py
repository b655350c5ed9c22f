"""Read a state store's tables directly, for assertions (the store has no test-only API)."""

from __future__ import annotations

from typing import NamedTuple

from syncd.core.pairs import PairKey, pack
from syncd.state import StateStore


class FailureRow(NamedTuple):
    src: int
    dst: int
    kind: str
    message: str
    attempts: int
    next_attempt: float | None
    last_failed: float

    @property
    def key(self) -> PairKey:
        return pack(self.src, self.dst)


def failures(store: StateStore, relation: str) -> list[FailureRow]:
    """Every recorded failure of the relation, oldest first."""
    rows = store.database.conn.execute(
        "SELECT src, dst, kind, message, attempts, next_attempt, last_failed FROM failures"
        " WHERE rel = (SELECT id FROM relations WHERE name = ?) ORDER BY last_failed, src, dst",
        (relation,),
    )
    return [FailureRow(*row) for row in rows]


def relations(store: StateStore) -> list[str]:
    conn = store.database.conn
    return [r[0] for r in conn.execute("SELECT name FROM relations ORDER BY name")]


def last_resync(store: StateStore, relation: str) -> float | None:
    row = store.database.conn.execute(
        "SELECT last_resync FROM relations WHERE name = ?", (relation,)
    ).fetchone()
    return None if row is None else row[0]


def meta(store: StateStore, key: str) -> str | None:
    row = store.database.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])
