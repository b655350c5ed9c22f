"""The state database: opening, checking, moving aside, locking, transactions.

The schema and its check live in :mod:`syncd.state.schema`, the file lock in
:mod:`syncd.state.lock`, the errors in :mod:`syncd.state.errors`.

Why SQLite and why like this:

* The state must survive restarts and ``kill -9`` at any moment. Every write is one
  transaction (WAL journal, ``synchronous=NORMAL``): a killed process loses nothing
  committed; a power loss may lose the last few commits (re-learnt as "already exists"),
  never consistency.
* One threading model: the connection belongs to the event loop's thread, and its
  calls are short. A long scan (a million known pairs after a restart) runs in a worker
  thread on a connection of its own (:meth:`Database.scan`), so the loop never waits on
  a lock the scan holds; WAL lets that reader run beside the writer.
* A file that cannot be used (garbage, another program's database, missing tables or
  columns, unreadable) is moved aside and a fresh store created: the known state can
  always be rebuilt from the CMDB, a crash loop helps nobody. A transient condition
  (locked, disk full, read-only) is an error instead, and so is a newer syncd's schema
  (:class:`SchemaMismatch`): moving a good store aside would lose the owned flags. So is
  any file in a directory that cannot be written: nothing there can be judged or moved.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from syncd.state.errors import StateError, Unusable
from syncd.state.lock import take_lock
from syncd.state.schema import check_and_init
from syncd.support.pidlock import PidLock

# SQLite primary result codes that say "try later", not "this file is bad".
_TRANSIENT_CODES = frozenset(
    {
        5,  # SQLITE_BUSY: another process holds the lock
        6,  # SQLITE_LOCKED
        7,  # SQLITE_NOMEM
        8,  # SQLITE_READONLY: a read-only file, directory or mount
        10,  # SQLITE_IOERR: the disk failed this call (full, gone); the file may be fine
        13,  # SQLITE_FULL: disk full
        14,  # SQLITE_CANTOPEN: e.g. no room or no permission for the '-wal'/'-shm' files
    }
)

_BUSY_TIMEOUT_MS = 10_000
_BUSY_SLICE_MS = 100
"""SQLite waits for a lock in C, where no signal handler runs: in slices this long, so a
stop signal is heard within one (the rest of the wait is a Python loop)."""

stop_waiting = threading.Event()
"""Set when the process is stopping: a wait for another program's lock gives up."""


def _is_transient(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _TRANSIENT_CODES


class Database:
    """One checked SQLite connection, its transactions, and relation ids."""

    def __init__(self, conn: sqlite3.Connection, path: Path, lock: PidLock | None = None) -> None:
        """Use :meth:`open`; this only wraps an already checked connection."""
        self._conn: sqlite3.Connection | None = conn
        self.path = path
        self._lock = lock
        self._rel_ids: dict[str, int] = {}

    @classmethod
    def open(cls, path: Path, *, lock: bool = False) -> tuple[Database, str | None]:
        """Open or create. A corrupt/unreadable/foreign file is moved aside to
        '<path>.corrupt-<UTC timestamp>' and a fresh store is created; the second item is then
        a warning text saying so (never a crash loop). A missing parent dir is created.

        A file that is merely locked by another process, or a full disk, raises StateError.
        With ``lock`` (the daemon), an exclusive lock on '<path>.lock' is taken first and
        held until :meth:`close`: a second writer gets :class:`StateLocked`.
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create the state directory {path.parent}: {exc}") from exc
        held = take_lock(path) if lock else None
        try:
            return cls._open_or_replace(path, held)
        except BaseException:
            if held is not None:
                held.close()
            raise

    @classmethod
    def open_readonly(cls, path: Path) -> Database:
        """Open an existing store read-only (``syncd plan``): never creates, moves or repairs.

        Raises StateError, naming why, when the file is missing or unusable.
        """
        try:
            return cls(_connect(Path(path), readonly=True), Path(path))
        except Unusable as exc:
            raise StateError(f"state file {path} is unusable ({exc})") from None

    @classmethod
    def _open_or_replace(cls, path: Path, held: PidLock | None) -> tuple[Database, str | None]:
        try:
            return cls(_connect(path), path, held), None
        except Unusable as exc:
            reason = str(exc)
        if not os.access(path.parent, os.W_OK):
            # Nothing can be written here now, so nothing can be judged either: a valid
            # file in a read-only directory is not moved aside, the next cycle tries again.
            raise StateError(
                f"state file {path} cannot be used ({reason}) and its directory is not writable"
            )
        moved = _move_aside(path)
        try:
            db = cls(_connect(path), path, held)
        except Unusable as exc:
            raise StateError(f"cannot create a fresh state store at {path}: {exc}") from exc
        warning = (
            f"state file {path} was unusable ({reason}); moved it to {moved} and started an "
            "empty state store: the known state will be rebuilt from the CMDB"
        )
        return db, warning

    def close(self) -> None:
        """Close the connection; a WAL checkpoint folds the log back into the file."""
        if self._conn is None:
            return
        # If a reader holds the WAL, the data is safe in it anyway.
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()
        self._conn = None
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StateError("the state store is closed")
        return self._conn

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it or none of it."""
        db = self.conn
        _begin(db)
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
    def read(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self.conn
        except sqlite3.Error as exc:
            raise StateError(f"state read failed: {exc}") from exc

    @contextmanager
    def scan(self) -> Iterator[sqlite3.Connection]:
        """A connection of its own, read-only, for one long read in a worker thread."""
        self.conn  # noqa: B018 - closed stores refuse scans too
        try:
            conn = sqlite3.connect(_readonly_uri(self.path), uri=True)
        except sqlite3.Error as exc:
            raise StateError(f"state read failed: {exc}") from exc
        try:
            yield conn
        except sqlite3.Error as exc:
            raise StateError(f"state read failed: {exc}") from exc
        finally:
            conn.close()

    def forget_rel_ids(self) -> None:
        """Relation names changed (a rename): look the ids up again."""
        self._rel_ids.clear()

    def rel(self, db: sqlite3.Connection, relation: str) -> int | None:
        """The relation's id, or None when it has no row."""
        rel = self._rel_ids.get(relation)
        if rel is None:
            row = db.execute("SELECT id FROM relations WHERE name = ?", (relation,)).fetchone()
            if row is None:
                return None
            rel = int(row[0])
            self._rel_ids[relation] = rel
        return rel

    def rel_w(self, db: sqlite3.Connection, relation: str) -> int:
        """The relation's id, creating its row (inside the caller's transaction)."""
        rel = self.rel(db, relation)
        if rel is None:
            cur = db.execute("INSERT INTO relations(name) VALUES (?)", (relation,))
            rel = int(cur.lastrowid or 0)
            self._rel_ids[relation] = rel
        return rel


def _begin(db: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE, waiting up to the busy timeout for another program's lock."""
    give_up = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            db.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.Error as exc:
            busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF == 5
            if not busy or time.monotonic() >= give_up or stop_waiting.is_set():
                raise StateError(f"cannot start a state transaction: {exc}") from exc


def scalar(db: sqlite3.Connection, sql: str, *args: Any) -> int:
    return int(db.execute(sql, args).fetchone()[0])


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Connect, check the file is ours (or new) and bring the schema up to date."""
    if path.exists() and not path.is_file():
        raise Unusable("not a regular file")
    # Look before SQLite does: opening garbage makes SQLite delete a '-wal' next to it
    # on close, and that file is evidence worth keeping with the one moved aside.
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except FileNotFoundError:
        head = b""
    except OSError as exc:
        raise Unusable(f"cannot read: {exc.strerror or exc}") from exc
    if head and head != b"SQLite format 3\x00":
        raise Unusable("not an SQLite database")
    if readonly and not head:
        raise Unusable("missing or empty")
    target: str | Path = _readonly_uri(path) if readonly else path
    try:
        conn = sqlite3.connect(target, isolation_level=None, timeout=0, uri=readonly)
    except sqlite3.Error as exc:
        if _is_transient(exc):
            raise StateError(f"cannot open the state store {path}: {exc}") from exc
        raise Unusable(str(exc)) from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        check_and_init(conn, readonly=readonly)
        conn.execute(f"PRAGMA busy_timeout = {min(_BUSY_SLICE_MS, _BUSY_TIMEOUT_MS)}")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: a 1M-pair resync stays in RAM
        if not readonly:
            # Pairs whose association id is still to be looked up: asked every cycle, rare,
            # so a partial index answers without scanning (and caching) a million rows.
            conn.execute(
                "CREATE INDEX IF NOT EXISTS pairs_without_id ON pairs(association_id, rel)"
                " WHERE association_id IS NULL"
            )
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS stage ("
            " rel INTEGER NOT NULL, src INTEGER NOT NULL, dst INTEGER NOT NULL, aid INTEGER,"
            " PRIMARY KEY (rel, src, dst)) WITHOUT ROWID"
        )
    except (Unusable, StateError):
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        if _is_transient(exc):
            raise StateError(f"cannot open the state store {path}: {exc}") from exc
        raise Unusable(str(exc)) from exc
    return conn


def _readonly_uri(path: Path) -> str:
    """Read-only, creating nothing: with no '-wal' beside it no writer has the file open,
    so it is opened immutable (SQLite would otherwise create '-wal' and '-shm')."""
    wal = path.with_name(path.name + "-wal")
    mode = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    return f"{path.resolve().as_uri()}?{mode}"


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
