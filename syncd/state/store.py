"""The known state's queries: which pairs syncd knows are in the CMDB, and about them.

The database itself (opening, checks, transactions) is :mod:`syncd.state.db`; this is
what the stages ask and tell it, in typed rows. Relations are stored as small integer
ids, not repeated names, which keeps a million-pair table compact. Pairs are exchanged
with callers as PairKeys (:mod:`syncd.core.pairs`) so set arithmetic stays in C.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Collection, Generator, Iterable, Sequence
from pathlib import Path

from syncd.core.pairs import PairKey, from_hex, pack, pack_all, unpack_all
from syncd.state.attempts import Attempts
from syncd.state.db import Database
from syncd.state.knowntext import KnownAhead, known_texts
from syncd.state.meta import Meta
from syncd.state.multirow import insert_rows
from syncd.state.resync import Resync
from syncd.state.rows import Absence, Failed, Held

_BULK_LOOKUP = 2_000  # above this many keys a relation scan beats point lookups


def _as_set(keys: Iterable[PairKey]) -> set[PairKey] | frozenset[PairKey]:
    return keys if isinstance(keys, set | frozenset) else set(keys)


class StateStore:
    """Known pairs and failures, over one :class:`Database`; its parts: ``meta`` (sizes,
    baselines, cursors, identities), ``attempts`` (creates without a definite answer) and
    ``resync``."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.path = database.path
        self._db = database
        self.meta = Meta(database)
        """Source sizes, prune baselines, watch cursors, the relations' identities."""
        self.attempts = Attempts(database)
        """Creates without a definite answer, and what they prove about ownership."""
        self.resync = Resync(database, self.attempts)
        """Full resyncs, staged page by page."""

    @classmethod
    def open(cls, path: Path, *, lock: bool = False) -> tuple[StateStore, str | None]:
        """Open (see :meth:`Database.open`); the second item is a warning if a file was moved."""
        database, warning = Database.open(path, lock=lock)
        return cls(database), warning

    @classmethod
    def open_readonly(cls, path: Path) -> StateStore:
        """Open an existing store for reading only (see :meth:`Database.open_readonly`)."""
        return cls(Database.open_readonly(path))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reads

    def known_keys(self, relation: str) -> set[PairKey]:
        """PairKeys of every pair known to be in the CMDB for the relation.

        A long scan on a connection of its own: call it from a worker thread.
        """
        keys: set[PairKey] = set()
        for text in self.known_texts(relation):
            keys.update(from_hex(text))
        return keys

    def known_texts(self, relation: str) -> Generator[str, None, None]:
        """The known pairs as text, a chunk at a time: packed keys in hex, comma-joined.

        A million pairs as ints cost ~40 MB and a tuple per row on the way; SQLite
        writes the text without holding the GIL, and :func:`~syncd.core.pairs.from_hex`
        makes keys of a chunk with one ``int()`` each. One read transaction on a
        connection of its own: iterate it in a worker thread (or :class:`KnownAhead`).
        """
        with self._db.scan() as db:
            db.execute("BEGIN")
            try:
                yield from known_texts(db, relation)
            finally:
                db.execute("COMMIT")

    def read_known_ahead(self, relation: str) -> KnownAhead:
        """Start reading :meth:`known_texts` in a thread of its own; take them by chunks."""
        return KnownAhead(self, relation)

    async def load_known_keys(self, relation: str) -> set[PairKey]:
        """:meth:`known_keys` off the event loop."""
        return await asyncio.to_thread(self.known_keys, relation)

    def count(self, relation: str) -> int:
        with self._db.read() as db:
            rel = self._db.rel(db, relation)
            if rel is None:
                return 0
            return int(db.execute("SELECT count(*) FROM pairs WHERE rel = ?", (rel,)).fetchone()[0])

    def has_resynced(self, relation: str) -> bool:
        """A full resync from the CMDB has completed at least once for the relation."""
        with self._db.read() as db:
            row = db.execute(
                "SELECT last_resync FROM relations WHERE name = ?", (relation,)
            ).fetchone()
            return row is not None and row[0] is not None

    def last_resync(self, relation: str) -> float | None:
        """Unix time the relation's last full resync finished (None: never)."""
        with self._db.read() as db:
            row = db.execute(
                "SELECT last_resync FROM relations WHERE name = ?", (relation,)
            ).fetchone()
            return None if row is None or row[0] is None else float(row[0])

    def owned_keys(self, relation: str) -> set[PairKey]:
        """Pairs syncd itself created (the only ones a later prune may delete)."""
        with self._db.read() as db:
            rel = self._db.rel(db, relation)
            if rel is None:
                return set()
            rows = db.execute("SELECT src, dst FROM pairs WHERE rel = ? AND owned = 1", (rel,))
            return set(pack_all(rows))

    def owned_among(self, relation: str, keys: Iterable[PairKey]) -> set[PairKey]:
        """Which of a few ``keys`` syncd created (one indexed lookup each)."""
        wanted = _as_set(keys)
        if len(wanted) > _BULK_LOOKUP:
            return self.owned_keys(relation) & wanted
        sql = "SELECT 1 FROM pairs WHERE rel = ? AND src = ? AND dst = ? AND owned = 1"
        with self._db.read() as db:
            rel = self._db.rel(db, relation)
            if rel is None:
                return set()
            return {
                key
                for key, (s, d) in zip(wanted, unpack_all(wanted), strict=True)
                if db.execute(sql, (rel, s, d)).fetchone() is not None
            }

    def association_ids(self, relation: str, keys: Iterable[PairKey]) -> dict[PairKey, int | None]:
        """Association id per known key (None: known but not looked up); unknown keys omitted."""
        wanted = _as_set(keys)
        out: dict[PairKey, int | None] = {}
        with self._db.read() as db:
            rel = self._db.rel(db, relation)
            if rel is None or not wanted:
                return out
            if len(wanted) > _BULK_LOOKUP:
                rows = db.execute(
                    "SELECT src, dst, association_id FROM pairs WHERE rel = ?", (rel,)
                )
                for s, d, aid in rows:
                    key = pack(s, d)
                    if key in wanted:
                        out[key] = aid
                return out
            sql = "SELECT association_id FROM pairs WHERE rel = ? AND src = ? AND dst = ?"
            for key, (s, d) in zip(wanted, unpack_all(wanted), strict=True):
                row = db.execute(sql, (rel, s, d)).fetchone()
                if row is not None:
                    out[key] = row[0]
            return out

    def missing_association_ids(self, relation: str) -> list[tuple[int, int]]:
        """(src, dst) of known pairs whose association id is still unknown."""
        with self._db.read() as db:
            rel = self._db.rel(db, relation)
            if rel is None:
                return []
            rows = db.execute(
                "SELECT src, dst FROM pairs WHERE rel = ? AND association_id IS NULL", (rel,)
            )
            return [(int(s), int(d)) for s, d in rows]

    def failure_attempts(self, relation: str, keys: Iterable[PairKey]) -> dict[PairKey, int]:
        """Prior failed attempts per key (keys that never failed are omitted)."""
        wanted = _as_set(keys)
        with self._db.read() as db:
            rel = self._db.rel(db, relation)
            if rel is None or not wanted:
                return {}
            rows = db.execute("SELECT src, dst, attempts FROM failures WHERE rel = ?", (rel,))
            out: dict[PairKey, int] = {}
            for s, d, attempts in rows:
                key = pack(s, d)
                if key in wanted:
                    out[key] = int(attempts)
            return out

    def held_back(self, relation: str, now: float) -> dict[PairKey, Held]:
        """key -> (kind, message) of failures not to be sent at ``now``.

        That is those still in backoff (next_attempt > now) and those held until the
        next full resync (next_attempt NULL, e.g. mapping conflicts).
        """
        with self._db.read() as db:
            rel = self._db.rel(db, relation)
            if rel is None:
                return {}
            rows = db.execute(
                "SELECT src, dst, kind, message FROM failures"
                " WHERE rel = ? AND (next_attempt IS NULL OR next_attempt > ?)",
                (rel, now),
            )
            return {pack(s, d): Held(kind, message) for s, d, kind, message in rows}

    def absent_info(self, relation: str, keys: Iterable[PairKey]) -> dict[PairKey, Absence]:
        """Absence of those of ``keys`` marked absent."""
        wanted = _as_set(keys)
        with self._db.read() as db:
            rel = self._db.rel(db, relation)
            if rel is None or not wanted:
                return {}
            rows = db.execute(
                "SELECT src, dst, absent_since, absent_cycles FROM pairs"
                " WHERE rel = ? AND absent_since IS NOT NULL",
                (rel,),
            )
            out: dict[PairKey, Absence] = {}
            for s, d, since, cycles in rows:
                key = pack(s, d)
                if key in wanted:
                    out[key] = Absence(float(since), int(cycles))
            return out

    # ------------------------------------------------------------------ writes

    def record_answer(
        self,
        relation: str,
        *,
        created: Sequence[tuple[int, int, int]] = (),
        exists: Sequence[tuple[int, int, int | None]] = (),
        failed: Sequence[Failed] = (),
        attempt: int | None = None,
        unanswered: Sequence[tuple[int, int]] = (),
        reclaim: Collection[tuple[int, int]] = (),
        now: float,
    ) -> None:
        """Record one CMDB answer (or watch events) in ONE transaction.

        created: (src, dst, association_id), now known and owned by syncd.
        exists: (src, dst, association_id or None), now known; owned only with proof that
        syncd's own create made it (see :mod:`syncd.state.attempts`): in ``reclaim`` (this
        answer came after an ambiguous attempt of the same request), or in an earlier
        attempt that ended ambiguously; else ``owned`` is kept (0 if new).
        failed: (src, dst, kind, message, next_attempt or None = held until resync);
        attempts grow by one per failure. A created or existing pair loses its failure row.
        attempt: the answer's :meth:`intend` number; its row keeps ``unanswered`` (pairs
        the CMDB may have created: their request ended ambiguously) or goes.
        """
        with self._db.tx() as db:
            rel = self._db.rel_w(db, relation)
            if created:
                insert_rows(
                    db,
                    "INSERT INTO pairs(rel, src, dst, association_id, owned, first_seen)",
                    "(?1, {}, {}, {}, 1, ?2)",
                    created,
                    constants=(rel, now),
                    tail=" ON CONFLICT (rel, src, dst) DO UPDATE"
                    " SET association_id = excluded.association_id, owned = 1",
                )
            if exists:
                self._record_exists(db, rel, exists, reclaim, now)
            if attempt is not None:
                self.attempts.narrow(db, self.attempts.run, attempt, pack_all(unanswered), now)
            if created or exists:
                self._now_known(db, rel, relation, [*created, *exists])
            if failed:
                db.executemany(
                    "INSERT INTO failures"
                    "(rel, src, dst, kind, message, attempts, next_attempt, last_failed)"
                    " VALUES (?, ?, ?, ?, ?, 1, ?, ?)"
                    " ON CONFLICT (rel, src, dst) DO UPDATE SET kind = excluded.kind,"
                    " message = excluded.message, attempts = failures.attempts + 1,"
                    " next_attempt = excluded.next_attempt, last_failed = excluded.last_failed",
                    (
                        (rel, s, d, kind, msg, next_attempt, now)
                        for s, d, kind, msg, next_attempt in failed
                    ),
                )

    def _record_exists(
        self,
        db: sqlite3.Connection,
        rel: int,
        exists: Sequence[tuple[int, int, int | None]],
        reclaim: Collection[tuple[int, int]],
        now: float,
    ) -> None:
        keys = [pack(s, d) for s, d, _ in exists]
        proven = self.attempts.claim(db, rel, keys, now)
        proven.update(pack(s, d) for s, d in reclaim)
        insert_rows(
            db,
            "INSERT INTO pairs(rel, src, dst, association_id, owned, first_seen)",
            "(?1, {}, {}, {}, {}, ?2)",
            [
                (s, d, aid, int(key in proven))
                for (s, d, aid), key in zip(exists, keys, strict=True)
            ],
            constants=(rel, now),
            tail=" ON CONFLICT (rel, src, dst) DO UPDATE"
            " SET association_id = coalesce(excluded.association_id, association_id),"
            " owned = max(owned, excluded.owned)",
        )

    def _now_known(
        self,
        db: sqlite3.Connection,
        rel: int,
        relation: str,
        rows: Sequence[tuple[int, int, int | None]],
    ) -> None:
        """Pairs the CMDB just said it holds: no longer failures, and part of a staged resync."""
        if db.execute("SELECT 1 FROM failures WHERE rel = ? LIMIT 1", (rel,)).fetchone():
            db.executemany(
                "DELETE FROM failures WHERE rel = ? AND src = ? AND dst = ?",
                [(rel, r[0], r[1]) for r in rows],
            )
        if self.resync.staging(relation):
            # The snapshot must not drop them even if their page was read earlier.
            db.executemany(
                "INSERT INTO temp.stage(rel, src, dst, aid) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO UPDATE SET aid = coalesce(excluded.aid, aid)",
                [(rel, r[0], r[1], r[2]) for r in rows],
            )

    def set_association_ids(self, relation: str, rows: Iterable[tuple[int, int, int]]) -> int:
        """Fill in association ids of known pairs from (src, dst, id); returns rows updated.

        Unknown pairs are ignored: this is a lookup result, not proof syncd should track them.
        """
        with self._db.tx() as db:
            rel = self._db.rel(db, relation)
            if rel is None:
                return 0
            cur = db.executemany(
                "UPDATE pairs SET association_id = ? WHERE rel = ? AND src = ? AND dst = ?",
                ((aid, rel, s, d) for s, d, aid in rows),
            )
            return max(cur.rowcount, 0)

    def remove(self, relation: str, keys: Iterable[PairKey]) -> None:
        """Forget pairs (after syncd deleted them from the CMDB)."""
        with self._db.tx() as db:
            rel = self._db.rel(db, relation)
            if rel is None:
                return
            db.executemany(
                "DELETE FROM pairs WHERE rel = ? AND src = ? AND dst = ?",
                ((rel, s, d) for s, d in unpack_all(keys)),
            )

    def mark_absent(self, relation: str, keys: Iterable[PairKey], now: float) -> None:
        """Known pairs the source no longer has: start or continue their absence count."""
        with self._db.tx() as db:
            rel = self._db.rel(db, relation)
            if rel is None:
                return
            db.executemany(
                "UPDATE pairs SET absent_since = coalesce(absent_since, ?),"
                " absent_cycles = absent_cycles + 1 WHERE rel = ? AND src = ? AND dst = ?",
                ((now, rel, s, d) for s, d in unpack_all(keys)),
            )

    def mark_present(self, relation: str, keys: Iterable[PairKey]) -> None:
        """Pairs the source has again: reset their absence. Cheap for a full desired set."""
        wanted = _as_set(keys)
        with self._db.tx() as db:
            rel = self._db.rel(db, relation)
            if rel is None:
                return
            absent = [
                (s, d)
                for s, d in db.execute(
                    "SELECT src, dst FROM pairs WHERE rel = ? AND absent_since IS NOT NULL",
                    (rel,),
                ).fetchall()
                if pack(s, d) in wanted
            ]
            db.executemany(
                "UPDATE pairs SET absent_since = NULL, absent_cycles = 0"
                " WHERE rel = ? AND src = ? AND dst = ?",
                ((rel, s, d) for s, d in absent),
            )
