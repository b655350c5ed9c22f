"""A full resync: the known state replaced by what the CMDB holds, in one transaction.

Pages are staged in a TEMP table as they arrive (a million rows never sit in a Python
list) and swapped in at the end; a crash or a failed read mid-resync leaves the old
state. Answers recorded while a resync is staged are staged too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from syncd.core.pairs import unpack_all
from syncd.state.attempts import Attempts
from syncd.state.db import Database, scalar
from syncd.state.errors import StateError


class Resync:
    """Full resyncs of the known state (``StateStore.resync``)."""

    def __init__(self, database: Database, attempts: Attempts) -> None:
        self._db = database
        self._attempts = attempts
        """Settled by a full read: every create that is over is found or not."""
        self._staging: set[str] = set()

    def staging(self, relation: str) -> bool:
        """Whether a resync of ``relation`` is being staged (answers go to the stage too)."""
        return relation in self._staging

    def replace_from_cmdb(
        self, relation: str, rows: Iterable[tuple[int, int, int]], now: float
    ) -> tuple[int, int]:
        """Full resync: rows are every (src,dst,association_id) the CMDB holds for the relation.

        Afterwards known == rows exactly; owned flags kept for pairs still present; pairs
        gone are dropped. Returns (added, removed). Streams rows (may be 1M) in one
        transaction; marks the relation resynced.

        Failures of pairs now known are cleared and every other failure is released for
        the next cycle: a resync is the operator's "look again", so held conflicts and
        backed-off pairs get one more try (their attempt counts are kept).
        """
        with self._db.tx() as db:
            rel = self._db.rel_w(db, relation)
            self._staging.discard(relation)
            db.execute("DELETE FROM temp.stage WHERE rel = ?", (rel,))
            self._stage_rows(db, rel, rows)
            return self._apply_stage(db, rel, now)

    def begin(self, relation: str) -> None:
        """Start a resync staged page by page (so 1M CMDB rows never sit in a Python list).

        Feed pages with :meth:`stage`, then :meth:`finish` swaps them in in one
        transaction, or :meth:`abort` drops them. The stage lives in a TEMP table, so
        a crash mid-resync leaves the known state untouched. While staging, pairs recorded
        as created/existing are added to the stage too.
        """
        with self._db.tx() as db:
            rel = self._db.rel_w(db, relation)
            db.execute("DELETE FROM temp.stage WHERE rel = ?", (rel,))
            self._staging.add(relation)

    def stage(self, relation: str, rows: Iterable[tuple[int, int, int]]) -> None:
        """Add one page of (src, dst, association_id) to a resync begun with begin."""
        if relation not in self._staging:
            raise StateError(f"no resync of {relation!r} in progress")
        with self._db.tx() as db:
            rel = self._db.rel_w(db, relation)
            self._stage_rows(db, rel, rows)

    def finish(self, relation: str, now: float) -> tuple[int, int]:
        """Make the staged rows the known state (see replace_from_cmdb); (added, removed)."""
        if relation not in self._staging:
            raise StateError(f"no resync of {relation!r} in progress")
        with self._db.tx() as db:
            rel = self._db.rel_w(db, relation)
            result = self._apply_stage(db, rel, now)
        self._staging.discard(relation)
        return result

    def abort(self, relation: str) -> None:
        """Drop a staged resync; the known state stays as it was."""
        self._staging.discard(relation)
        with self._db.tx() as db:
            rel = self._db.rel(db, relation)
            if rel is not None:
                db.execute("DELETE FROM temp.stage WHERE rel = ?", (rel,))

    @staticmethod
    def _stage_rows(db: sqlite3.Connection, rel: int, rows: Iterable[tuple[int, int, int]]) -> None:
        db.executemany(
            "INSERT INTO temp.stage(rel, src, dst, aid) VALUES (?, ?, ?, ?)"
            " ON CONFLICT DO UPDATE SET aid = coalesce(excluded.aid, aid)",
            ((rel, s, d, aid) for s, d, aid in rows),
        )

    def _apply_stage(self, db: sqlite3.Connection, rel: int, now: float) -> tuple[int, int]:
        before = scalar(db, "SELECT count(*) FROM pairs WHERE rel = ?", rel)
        incoming = scalar(db, "SELECT count(*) FROM temp.stage WHERE rel = ?", rel)
        removed = 0
        if before:
            removed = db.execute(
                "DELETE FROM pairs WHERE rel = ?1 AND NOT EXISTS (SELECT 1 FROM temp.stage s"
                " WHERE s.rel = ?1 AND s.src = pairs.src AND s.dst = pairs.dst)",
                (rel,),
            ).rowcount
        # Another association id under a known key is another instance: someone deleted
        # syncd's pair and created theirs, so it is not syncd's to delete any more.
        db.execute(
            "INSERT INTO pairs(rel, src, dst, association_id, owned, first_seen)"
            " SELECT rel, src, dst, aid, 0, ?2 FROM temp.stage WHERE rel = ?1"
            " ON CONFLICT (rel, src, dst) DO UPDATE"
            " SET association_id = coalesce(excluded.association_id, association_id),"
            " owned = CASE WHEN excluded.association_id IS NOT NULL"
            " AND association_id IS NOT NULL"
            " AND excluded.association_id != association_id THEN 0 ELSE owned END"
            " WHERE association_id IS NOT coalesce(excluded.association_id, association_id)",
            (rel, now),
        )
        # A full read settles every create that is over (syncd.state.attempts): found and
        # ended ambiguously within the window, it is syncd's; else it never happened.
        db.executemany(
            "UPDATE pairs SET owned = 1 WHERE rel = ? AND src = ? AND dst = ? AND owned = 0",
            ((rel, s, d) for s, d in unpack_all(self._attempts.settle(db, rel, now))),
        )
        db.execute(
            "DELETE FROM failures WHERE rel = ?1 AND EXISTS (SELECT 1 FROM temp.stage s"
            " WHERE s.rel = ?1 AND s.src = failures.src AND s.dst = failures.dst)",
            (rel,),
        )
        db.execute(
            "UPDATE failures SET next_attempt = ?2"
            " WHERE rel = ?1 AND (next_attempt IS NULL OR next_attempt > ?2)",
            (rel, now),
        )
        db.execute("UPDATE relations SET last_resync = ? WHERE id = ?", (now, rel))
        db.execute("DELETE FROM temp.stage WHERE rel = ?", (rel,))
        added = incoming - (before - removed)
        return added, removed
