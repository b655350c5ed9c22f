"""Creates syncd sent without a definite answer, and what they prove about ownership.

A pair is *owned* (a prune may delete it) only when syncd's own create made it. The
proof is either a ``success_created`` answer, or an "already exists" (or a relist, or a
watch event) for a pair whose earlier create by syncd ended *ambiguously*: a timeout, a
504, a dropped connection, a request cut short by a kill or a shutdown, and only
within :data:`RECLAIM_WINDOW` of that end. An "already exists" answering a first
attempt proves nothing (someone else made it), nor does an old attempt.

Each request is one ``attempts`` row, written before it leaves (one statement, the
pairs packed in a blob) and removed or narrowed when its answer is recorded. A row of
this process whose request is still out (``live``) proves nothing; a row of a process
that is gone, or whose answer was never recorded, or that ended ambiguously, does.
"""

from __future__ import annotations

import itertools
import secrets
import sqlite3
from collections.abc import Collection, Iterable, Sequence

from syncd.core.pairs import PairKey
from syncd.state.db import Database
from syncd.state.schema import blob_ids, ids_blob

RECLAIM_WINDOW = 3600.0
"""Seconds after an ambiguous end during which "already exists" still proves the pair is
syncd's: long enough for a restart after a kill or an outage of the CMDB's gateway,
short enough that a pair another client creates later is not taken for syncd's."""


def _keys(blob: bytes) -> list[PairKey]:
    ids = blob_ids(blob)
    return [(ids[i] << 64) | ids[i + 1] for i in range(0, len(ids) - 1, 2)]


class Attempts:
    """The creates without a definite answer (``StateStore.attempts``)."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self.run = secrets.randbits(62) + 1
        """This process's mark on its rows (0 stands for schema 2's, of a run long gone)."""
        self._numbers = itertools.count(1)
        self._live: set[int] = set()

    def intend(self, relation: str, details: Sequence[tuple[int, int]], now: float) -> int:
        """Record, durably and before the request leaves, that syncd is creating these pairs.

        Returns the attempt's number: pass it to ``record_answer`` with the answer, and to
        :meth:`release` once the request is over however it ended.
        """
        number = next(self._numbers)
        blob = ids_blob(itertools.chain.from_iterable(details))
        with self._db.tx() as db:
            rel = self._db.rel_w(db, relation)
            db.execute(
                "INSERT INTO attempts(rel, run, batch, since, ended, pairs)"
                " VALUES (?, ?, ?, ?, NULL, ?)",
                (rel, self.run, number, now, blob),
            )
        self._live.add(number)
        return number

    def release(self, attempt: int) -> None:
        """The request is over: a row it leaves (no answer recorded) now counts as ambiguous."""
        self._live.discard(attempt)

    def in_flight(self, relation: str) -> set[PairKey]:
        """Pairs of every create without a definite answer (in flight or ambiguous)."""
        with self._db.read() as db:
            rel = self._db.rel(db, relation)
            if rel is None:
                return set()
            rows = db.execute("SELECT pairs FROM attempts WHERE rel = ?", (rel,))
            return {key for (blob,) in rows for key in _keys(blob)}

    def _ambiguous(
        self, db: sqlite3.Connection, rel: int, now: float
    ) -> dict[tuple[int, int], set[PairKey]]:
        """Attempts that ended ambiguously within the window, by (run, batch): their pairs."""
        rows = db.execute(
            "SELECT run, batch, pairs FROM attempts WHERE rel = ? AND coalesce(ended, since) >= ?",
            (rel, now - RECLAIM_WINDOW),
        )
        return {
            (run, batch): set(_keys(blob))
            for run, batch, blob in rows
            if not (run == self.run and batch in self._live)
        }

    def claim(
        self, db: sqlite3.Connection, rel: int, keys: Collection[PairKey], now: float
    ) -> set[PairKey]:
        """Which of ``keys`` (just seen in the CMDB) an ambiguous attempt may have created;
        those leave their attempts (settled), so each proves ownership once."""
        claimed: set[PairKey] = set()
        for (run, batch), pairs in self._ambiguous(db, rel, now).items():
            mine = pairs.intersection(keys)
            if not mine:
                continue
            claimed |= mine
            self.narrow(db, run, batch, pairs - mine, None)
        return claimed

    def narrow(
        self,
        db: sqlite3.Connection,
        run: int,
        batch: int,
        left: Iterable[PairKey],
        ended: float | None,
    ) -> None:
        """Keep only ``left`` in an attempt (none left: drop it); ``ended`` marks its end."""
        ids = [part for key in left for part in (key >> 64, key & ((1 << 64) - 1))]
        if not ids:
            db.execute("DELETE FROM attempts WHERE run = ? AND batch = ?", (run, batch))
            return
        db.execute(
            "UPDATE attempts SET pairs = ?, ended = coalesce(?, ended) WHERE run = ? AND batch = ?",
            (ids_blob(ids), ended, run, batch),
        )

    def settle(self, db: sqlite3.Connection, rel: int, now: float) -> set[PairKey]:
        """A full read from the CMDB settles every attempt that is over. Returns the pairs of
        those that ended ambiguously within the window: found by the read, they are syncd's;
        not found, they never happened. Old attempts are dropped without proving anything."""
        claimable: set[PairKey] = set()
        for pairs in self._ambiguous(db, rel, now).values():
            claimable |= pairs
        rows = db.execute("SELECT run, batch FROM attempts WHERE rel = ?", (rel,)).fetchall()
        db.executemany(
            "DELETE FROM attempts WHERE run = ? AND batch = ?",
            [(run, batch) for run, batch in rows if not (run == self.run and batch in self._live)],
        )
        return claimable
