"""The known state: which pairs syncd knows are in the CMDB, kept in SQLite.

Why SQLite and why like this:

* The state must survive restarts and ``kill -9`` at any moment. Every public write is
  one transaction (WAL journal, ``synchronous=NORMAL``): a killed process loses nothing
  committed; a power loss may lose the last few commits (re-learnt as "already exists"),
  never consistency.
* Answers are written as they arrive, so calls are short and synchronous; they are made
  from the event loop. The few big ones (``replace_from_cmdb`` and ``known_keys`` on a
  million pairs) may be offloaded with ``asyncio.to_thread``: every call holds one lock,
  so the store is safe to use from one thread at a time in any order.
* Relations are stored as small integer ids, not repeated names, which keeps a
  million-pair table compact. Pairs are exchanged with callers as PairKeys
  (:mod:`syncd.pairs`) so set arithmetic stays in C.
* A state file that cannot be used (garbage, another program's database, a schema from
  a newer syncd, unreadable) is moved aside and a fresh store created: the known state
  can always be rebuilt from the CMDB, a crash loop helps nobody.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncd.pairs import PairKey, pack, unpack_all

SCHEMA_VERSION = 1
APPLICATION_ID = 0x73796E63  # "sync": tells our files from any other SQLite database

_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE relations (
    id                INTEGER PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    last_resync       REAL,              -- NULL until a full resync from the CMDB completed
    last_good_desired INTEGER            -- size of the last desired set read without error
);

CREATE TABLE pairs (
    rel            INTEGER NOT NULL,
    src            INTEGER NOT NULL CHECK (typeof(src) = 'integer' AND src >= 0),
    dst            INTEGER NOT NULL CHECK (typeof(dst) = 'integer' AND dst >= 0),
    association_id INTEGER,              -- NULL: known to exist, id not looked up yet
    owned          INTEGER NOT NULL DEFAULT 0,  -- 1 = syncd created it
    first_seen     REAL NOT NULL,
    absent_since   REAL,                 -- first cycle the source no longer had it
    absent_cycles  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (rel, src, dst)
) WITHOUT ROWID;

CREATE TABLE failures (
    rel          INTEGER NOT NULL,
    src          INTEGER NOT NULL,
    dst          INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    message      TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    next_attempt REAL,                   -- NULL: held until the next full resync
    last_failed  REAL NOT NULL,
    PRIMARY KEY (rel, src, dst)
) WITHOUT ROWID;
"""

_TABLES = frozenset({"meta", "relations", "pairs", "failures"})

# SQLite primary result codes that say "try later", not "this file is bad".
_TRANSIENT_CODES = frozenset(
    {
        5,  # SQLITE_BUSY: another process holds the lock
        6,  # SQLITE_LOCKED
        7,  # SQLITE_NOMEM
        13,  # SQLITE_FULL: disk full
    }
)

_BUSY_TIMEOUT_MS = 10_000
_BULK_LOOKUP = 2_000  # above this many keys a relation scan beats point lookups


class StateError(Exception):
    """The state store cannot do what was asked (locked, disk full, closed, bad input)."""


class _Unusable(Exception):
    """The file at the state path is not a state store we can use; move it aside."""


@dataclass(frozen=True)
class Failure:
    """One pair the CMDB refused, for reports and for ``syncd plan``."""

    src: int
    dst: int
    kind: str
    message: str
    attempts: int
    next_attempt: float | None  # None: held until the next full resync
    last_failed: float

    @property
    def key(self) -> PairKey:
        return pack(self.src, self.dst)


def _is_transient(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _TRANSIENT_CODES


def _as_set(keys: Iterable[PairKey]) -> set[PairKey] | frozenset[PairKey]:
    return keys if isinstance(keys, set | frozenset) else set(keys)


class StateStore:
    """Known pairs, failures and per-relation bookkeeping in one SQLite file."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        """Use :meth:`open`; this only wraps an already checked connection."""
        self._conn: sqlite3.Connection | None = conn
        self.path = path
        self._lock = threading.RLock()
        self._rel_ids: dict[str, int] = {}
        self._staging: set[str] = set()

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: Path) -> tuple[StateStore, str | None]:
        """Open or create. A corrupt/unreadable/foreign file is moved aside to
        '<path>.corrupt-<UTC timestamp>' and a fresh store is created; the second item is then
        a warning text saying so (never a crash loop). A missing parent dir is created.

        A file that is merely locked by another process, or a full disk, raises StateError
        instead: moving a good store aside because of a transient condition would throw
        away the owned flags and failure history for nothing.
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create the state directory {path.parent}: {exc}") from exc
        try:
            return cls(cls._connect(path), path), None
        except _Unusable as exc:
            reason = str(exc)
        moved = cls._move_aside(path)
        try:
            store = cls(cls._connect(path), path)
        except _Unusable as exc:
            raise StateError(f"cannot create a fresh state store at {path}: {exc}") from exc
        warning = (
            f"state file {path} was unusable ({reason}); moved it to {moved} and started an "
            "empty state store: the known state will be rebuilt from the CMDB"
        )
        return store, warning

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        """Connect, check the file is ours (or new) and bring the schema up to date."""
        if path.exists() and not path.is_file():
            raise _Unusable("not a regular file")
        # Look before SQLite does: opening garbage makes SQLite delete a '-wal' next to it
        # on close, and that file is evidence worth keeping with the one moved aside.
        try:
            with open(path, "rb") as fh:
                head = fh.read(16)
        except FileNotFoundError:
            head = b""
        except OSError as exc:
            raise _Unusable(f"cannot read: {exc.strerror or exc}") from exc
        if head and head != b"SQLite format 3\x00":
            raise _Unusable("not an SQLite database")
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
        except sqlite3.Error as exc:
            if _is_transient(exc):
                raise StateError(f"cannot open the state store {path}: {exc}") from exc
            raise _Unusable(str(exc)) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            StateStore._check_and_init(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: a 1M-pair resync stays in RAM
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS stage ("
                " rel INTEGER NOT NULL, src INTEGER NOT NULL, dst INTEGER NOT NULL, aid INTEGER,"
                " PRIMARY KEY (rel, src, dst)) WITHOUT ROWID"
            )
        except _Unusable:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            if _is_transient(exc):
                raise StateError(f"cannot open the state store {path}: {exc}") from exc
            raise _Unusable(str(exc)) from exc
        return conn

    @staticmethod
    def _check_and_init(conn: sqlite3.Connection) -> None:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if app_id == 0 and not tables:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise _Unusable(f"cannot switch to WAL journal mode (got {mode})")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('schema_version', ?), ('created', ?)",
                (str(SCHEMA_VERSION), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
            )
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
            return
        if app_id != APPLICATION_ID:
            raise _Unusable("not a syncd state database")
        if version > SCHEMA_VERSION:
            raise _Unusable(
                f"schema version {version} is newer than this syncd understands ({SCHEMA_VERSION})"
            )
        missing = _TABLES - tables
        if missing:
            raise _Unusable(f"missing tables: {', '.join(sorted(missing))}")
        check = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
        if check != "ok":
            raise _Unusable(f"integrity check failed: {check}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise _Unusable(f"cannot switch to WAL journal mode (got {mode})")

    @staticmethod
    def _move_aside(path: Path) -> Path:
        """Rename the file (and its -wal/-shm, which belong to it) out of the way."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = path.with_name(f"{path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
            n += 1
        try:
            if path.exists():
                path.rename(target)
            for suffix in ("-wal", "-shm", "-journal"):
                side = path.with_name(path.name + suffix)
                if side.exists():
                    side.rename(target.with_name(target.name + suffix))
        except OSError as exc:
            raise StateError(f"state file {path} is unusable and cannot be moved: {exc}") from exc
        return target

    def close(self) -> None:
        """Close the connection; a WAL checkpoint folds the log back into the file."""
        with self._lock:
            if self._conn is None:
                return
            # Fold the WAL back into the file; if a reader holds it, the data is safe anyway.
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
            self._conn = None

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StateError("the state store is closed")
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it or none of it."""
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StateError(f"cannot start a state transaction: {exc}") from exc
            try:
                yield db
                db.execute("COMMIT")
            except BaseException as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                self._rel_ids.clear()  # ids created in the rolled-back transaction are gone
                if isinstance(exc, sqlite3.Error):
                    raise StateError(f"state write failed, nothing was written: {exc}") from exc
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StateError(f"state read failed: {exc}") from exc

    def _rel(self, db: sqlite3.Connection, relation: str) -> int | None:
        rel = self._rel_ids.get(relation)
        if rel is None:
            row = db.execute("SELECT id FROM relations WHERE name = ?", (relation,)).fetchone()
            if row is None:
                return None
            rel = int(row[0])
            self._rel_ids[relation] = rel
        return rel

    def _rel_w(self, db: sqlite3.Connection, relation: str) -> int:
        """The relation's id, creating its row (inside the caller's transaction)."""
        rel = self._rel(db, relation)
        if rel is None:
            cur = db.execute("INSERT INTO relations(name) VALUES (?)", (relation,))
            rel = int(cur.lastrowid or 0)
            self._rel_ids[relation] = rel
        return rel

    # ------------------------------------------------------------------ reads

    def known_keys(self, relation: str) -> set[PairKey]:
        """PairKeys of every pair known to be in the CMDB for the relation."""
        with self._read() as db:
            rel = self._rel(db, relation)
            if rel is None:
                return set()
            rows = db.execute("SELECT src, dst FROM pairs WHERE rel = ?", (rel,))
            return {s << 64 | d for s, d in rows}

    def count(self, relation: str) -> int:
        with self._read() as db:
            rel = self._rel(db, relation)
            if rel is None:
                return 0
            return int(db.execute("SELECT count(*) FROM pairs WHERE rel = ?", (rel,)).fetchone()[0])

    def relations(self) -> list[str]:
        """Every relation the store has rows for (e.g. to spot ones dropped from config)."""
        with self._read() as db:
            return [r[0] for r in db.execute("SELECT name FROM relations ORDER BY name")]

    def has_resynced(self, relation: str) -> bool:
        """A full resync from the CMDB has completed at least once for the relation."""
        return self.last_resync(relation) is not None

    def last_resync(self, relation: str) -> float | None:
        with self._read() as db:
            row = db.execute(
                "SELECT last_resync FROM relations WHERE name = ?", (relation,)
            ).fetchone()
            return None if row is None or row[0] is None else float(row[0])

    def owned_keys(self, relation: str) -> set[PairKey]:
        """Pairs syncd itself created (the only ones a later prune may delete)."""
        with self._read() as db:
            rel = self._rel(db, relation)
            if rel is None:
                return set()
            rows = db.execute("SELECT src, dst FROM pairs WHERE rel = ? AND owned = 1", (rel,))
            return {s << 64 | d for s, d in rows}

    def association_ids(self, relation: str, keys: Iterable[PairKey]) -> dict[PairKey, int | None]:
        """Association id per known key (None: known but not looked up); unknown keys omitted."""
        wanted = _as_set(keys)
        out: dict[PairKey, int | None] = {}
        with self._read() as db:
            rel = self._rel(db, relation)
            if rel is None or not wanted:
                return out
            if len(wanted) > _BULK_LOOKUP:
                rows = db.execute(
                    "SELECT src, dst, association_id FROM pairs WHERE rel = ?", (rel,)
                )
                for s, d, aid in rows:
                    key = s << 64 | d
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
        with self._read() as db:
            rel = self._rel(db, relation)
            if rel is None:
                return []
            rows = db.execute(
                "SELECT src, dst FROM pairs WHERE rel = ? AND association_id IS NULL", (rel,)
            )
            return [(int(s), int(d)) for s, d in rows]

    def failure_attempts(self, relation: str, keys: Iterable[PairKey]) -> dict[PairKey, int]:
        """Prior failed attempts per key (keys that never failed are omitted)."""
        wanted = _as_set(keys)
        with self._read() as db:
            rel = self._rel(db, relation)
            if rel is None or not wanted:
                return {}
            rows = db.execute("SELECT src, dst, attempts FROM failures WHERE rel = ?", (rel,))
            out: dict[PairKey, int] = {}
            for s, d, attempts in rows:
                key = s << 64 | d
                if key in wanted:
                    out[key] = int(attempts)
            return out

    def held_back(self, relation: str, now: float) -> dict[PairKey, tuple[str, str]]:
        """key -> (kind, message) of failures not to be sent at ``now``.

        That is those still in backoff (next_attempt > now) and those held until the
        next full resync (next_attempt NULL, e.g. mapping conflicts).
        """
        with self._read() as db:
            rel = self._rel(db, relation)
            if rel is None:
                return {}
            rows = db.execute(
                "SELECT src, dst, kind, message FROM failures"
                " WHERE rel = ? AND (next_attempt IS NULL OR next_attempt > ?)",
                (rel, now),
            )
            return {s << 64 | d: (kind, message) for s, d, kind, message in rows}

    def failures(self, relation: str) -> list[Failure]:
        """Every recorded failure of the relation, oldest first."""
        with self._read() as db:
            rel = self._rel(db, relation)
            if rel is None:
                return []
            rows = db.execute(
                "SELECT src, dst, kind, message, attempts, next_attempt, last_failed"
                " FROM failures WHERE rel = ? ORDER BY last_failed, src, dst",
                (rel,),
            )
            return [Failure(*row) for row in rows]

    def absent_info(
        self, relation: str, keys: Iterable[PairKey]
    ) -> dict[PairKey, tuple[float, int]]:
        """key -> (absent_since, absent_cycles) for those of ``keys`` marked absent."""
        wanted = _as_set(keys)
        with self._read() as db:
            rel = self._rel(db, relation)
            if rel is None or not wanted:
                return {}
            rows = db.execute(
                "SELECT src, dst, absent_since, absent_cycles FROM pairs"
                " WHERE rel = ? AND absent_since IS NOT NULL",
                (rel,),
            )
            out: dict[PairKey, tuple[float, int]] = {}
            for s, d, since, cycles in rows:
                key = s << 64 | d
                if key in wanted:
                    out[key] = (float(since), int(cycles))
            return out

    def last_good_desired(self, relation: str) -> int | None:
        """Size of the last desired set read cleanly (a guard against a truncated source)."""
        with self._read() as db:
            row = db.execute(
                "SELECT last_good_desired FROM relations WHERE name = ?", (relation,)
            ).fetchone()
            return None if row is None or row[0] is None else int(row[0])

    def get_meta(self, key: str) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

    # ------------------------------------------------------------------ writes

    def record_answer(
        self,
        relation: str,
        *,
        created: Sequence[tuple[int, int, int]] = (),
        exists: Sequence[tuple[int, int, int | None]] = (),
        failed: Sequence[tuple[int, int, str, str, float | None]] = (),
        now: float,
    ) -> None:
        """Record one CMDB answer in ONE transaction.

        created: (src, dst, association_id), now known and owned by syncd.
        exists: (src, dst, association_id or None), now known; ``owned`` is kept (0 if new).
        failed: (src, dst, kind, message, next_attempt or None = held until resync);
        attempts grow by one per failure. A created or existing pair loses its failure row.
        """
        with self._tx() as db:
            rel = self._rel_w(db, relation)
            if created:
                db.executemany(
                    "INSERT INTO pairs(rel, src, dst, association_id, owned, first_seen)"
                    " VALUES (?, ?, ?, ?, 1, ?)"
                    " ON CONFLICT (rel, src, dst) DO UPDATE"
                    " SET association_id = excluded.association_id, owned = 1",
                    ((rel, s, d, aid, now) for s, d, aid in created),
                )
            if exists:
                db.executemany(
                    "INSERT INTO pairs(rel, src, dst, association_id, owned, first_seen)"
                    " VALUES (?, ?, ?, ?, 0, ?)"
                    " ON CONFLICT (rel, src, dst) DO UPDATE"
                    " SET association_id = coalesce(excluded.association_id, association_id)",
                    ((rel, s, d, aid, now) for s, d, aid in exists),
                )
            has_failures = (created or exists) and db.execute(
                "SELECT 1 FROM failures WHERE rel = ? LIMIT 1", (rel,)
            ).fetchone()
            if has_failures:
                db.executemany(
                    "DELETE FROM failures WHERE rel = ? AND src = ? AND dst = ?",
                    [(rel, r[0], r[1]) for r in (*created, *exists)],
                )
            if (created or exists) and relation in self._staging:
                # A resync is being staged: the CMDB just said these exist, so the
                # snapshot must not drop them even if their page was read earlier.
                db.executemany(
                    "INSERT INTO temp.stage(rel, src, dst, aid) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT DO UPDATE SET aid = coalesce(excluded.aid, aid)",
                    [(rel, r[0], r[1], r[2]) for r in (*created, *exists)],
                )
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

    def clear_failures(self, relation: str | None = None) -> None:
        """Forget failures of one relation, or of all."""
        with self._tx() as db:
            if relation is None:
                db.execute("DELETE FROM failures")
                return
            rel = self._rel(db, relation)
            if rel is not None:
                db.execute("DELETE FROM failures WHERE rel = ?", (rel,))

    def set_association_ids(self, relation: str, rows: Iterable[tuple[int, int, int]]) -> int:
        """Fill in association ids of known pairs from (src, dst, id); returns rows updated.

        Unknown pairs are ignored: this is a lookup result, not proof syncd should track them.
        """
        with self._tx() as db:
            rel = self._rel(db, relation)
            if rel is None:
                return 0
            cur = db.executemany(
                "UPDATE pairs SET association_id = ? WHERE rel = ? AND src = ? AND dst = ?",
                ((aid, rel, s, d) for s, d, aid in rows),
            )
            return max(cur.rowcount, 0)

    def remove(self, relation: str, keys: Iterable[PairKey]) -> None:
        """Forget pairs (after syncd deleted them from the CMDB)."""
        with self._tx() as db:
            rel = self._rel(db, relation)
            if rel is None:
                return
            db.executemany(
                "DELETE FROM pairs WHERE rel = ? AND src = ? AND dst = ?",
                ((rel, s, d) for s, d in unpack_all(keys)),
            )

    def mark_absent(self, relation: str, keys: Iterable[PairKey], now: float) -> None:
        """Known pairs the source no longer has: start or continue their absence count."""
        with self._tx() as db:
            rel = self._rel(db, relation)
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
        with self._tx() as db:
            rel = self._rel(db, relation)
            if rel is None:
                return
            absent = [
                (s, d)
                for s, d in db.execute(
                    "SELECT src, dst FROM pairs WHERE rel = ? AND absent_since IS NOT NULL",
                    (rel,),
                ).fetchall()
                if (s << 64 | d) in wanted
            ]
            db.executemany(
                "UPDATE pairs SET absent_since = NULL, absent_cycles = 0"
                " WHERE rel = ? AND src = ? AND dst = ?",
                ((rel, s, d) for s, d in absent),
            )

    def set_last_good_desired(self, relation: str, count: int) -> None:
        with self._tx() as db:
            rel = self._rel_w(db, relation)
            db.execute("UPDATE relations SET last_good_desired = ? WHERE id = ?", (count, rel))

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # ------------------------------------------------------------------ full resync

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
        with self._tx() as db:
            rel = self._rel_w(db, relation)
            self._staging.discard(relation)
            db.execute("DELETE FROM temp.stage WHERE rel = ?", (rel,))
            self._stage_rows(db, rel, rows)
            return self._apply_stage(db, rel, now)

    def begin_resync(self, relation: str) -> None:
        """Start a resync staged page by page (so 1M CMDB rows never sit in a Python list).

        Feed pages with :meth:`stage_resync`, then :meth:`finish_resync` swaps them in in one
        transaction, or :meth:`abort_resync` drops them. The stage lives in a TEMP table, so
        a crash mid-resync leaves the known state untouched. While staging, pairs recorded
        as created/existing are added to the stage too.
        """
        with self._tx() as db:
            rel = self._rel_w(db, relation)
            db.execute("DELETE FROM temp.stage WHERE rel = ?", (rel,))
            self._staging.add(relation)

    def stage_resync(self, relation: str, rows: Iterable[tuple[int, int, int]]) -> None:
        """Add one page of (src, dst, association_id) to a resync begun with begin_resync."""
        if relation not in self._staging:
            raise StateError(f"no resync of {relation!r} in progress")
        with self._tx() as db:
            rel = self._rel_w(db, relation)
            self._stage_rows(db, rel, rows)

    def finish_resync(self, relation: str, now: float) -> tuple[int, int]:
        """Make the staged rows the known state (see replace_from_cmdb); (added, removed)."""
        if relation not in self._staging:
            raise StateError(f"no resync of {relation!r} in progress")
        with self._tx() as db:
            rel = self._rel_w(db, relation)
            result = self._apply_stage(db, rel, now)
        self._staging.discard(relation)
        return result

    def abort_resync(self, relation: str) -> None:
        """Drop a staged resync; the known state stays as it was."""
        self._staging.discard(relation)
        with self._tx() as db:
            rel = self._rel(db, relation)
            if rel is not None:
                db.execute("DELETE FROM temp.stage WHERE rel = ?", (rel,))

    @staticmethod
    def _stage_rows(db: sqlite3.Connection, rel: int, rows: Iterable[tuple[int, int, int]]) -> None:
        db.executemany(
            "INSERT INTO temp.stage(rel, src, dst, aid) VALUES (?, ?, ?, ?)"
            " ON CONFLICT DO UPDATE SET aid = coalesce(excluded.aid, aid)",
            ((rel, s, d, aid) for s, d, aid in rows),
        )

    @staticmethod
    def _apply_stage(db: sqlite3.Connection, rel: int, now: float) -> tuple[int, int]:
        before = _scalar(db, "SELECT count(*) FROM pairs WHERE rel = ?", rel)
        incoming = _scalar(db, "SELECT count(*) FROM temp.stage WHERE rel = ?", rel)
        removed = 0
        if before:
            removed = db.execute(
                "DELETE FROM pairs WHERE rel = ?1 AND NOT EXISTS (SELECT 1 FROM temp.stage s"
                " WHERE s.rel = ?1 AND s.src = pairs.src AND s.dst = pairs.dst)",
                (rel,),
            ).rowcount
        db.execute(
            "INSERT INTO pairs(rel, src, dst, association_id, owned, first_seen)"
            " SELECT rel, src, dst, aid, 0, ?2 FROM temp.stage WHERE rel = ?1"
            " ON CONFLICT (rel, src, dst) DO UPDATE"
            " SET association_id = coalesce(excluded.association_id, association_id)"
            " WHERE association_id IS NOT coalesce(excluded.association_id, association_id)",
            (rel, now),
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


def _scalar(db: sqlite3.Connection, sql: str, *args: Any) -> int:
    return int(db.execute(sql, args).fetchone()[0])
