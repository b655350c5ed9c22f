"""The state store's schema: its tables, the check that a file is ours, and migrations.

Kept apart from :mod:`syncd.state.db` (connections and transactions) so what a state file
must contain, and how an older one (schema 1 -> 2 -> 3) is brought up to date, reads in one place.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from array import array
from collections.abc import Iterable

from syncd.state.errors import SchemaMismatch, Unusable

SCHEMA_VERSION = 3
APPLICATION_ID = 0x73796E63  # "sync": tells our files from any other SQLite database

SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE relations (
    id                INTEGER PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    bk_obj_id         TEXT,              -- what the state describes (schema 3), NULL: not
    bk_asst_obj_id    TEXT,              -- recorded yet (adopted from the configuration
    bk_obj_asst_id    TEXT,              -- at the next start)
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

INFLIGHT = """
CREATE TABLE IF NOT EXISTS inflight (
    rel   INTEGER NOT NULL,
    src   INTEGER NOT NULL,
    dst   INTEGER NOT NULL,
    since REAL NOT NULL,                 -- when the create was about to be sent
    PRIMARY KEY (rel, src, dst)
) WITHOUT ROWID
"""
"""Schema 2's creates in flight, one row a pair; schema 3 keeps them as ``attempts``."""

ATTEMPTS = """
CREATE TABLE IF NOT EXISTS attempts (
    rel   INTEGER NOT NULL,
    run   INTEGER NOT NULL,              -- the process that sent it (random per open)
    batch INTEGER NOT NULL,              -- its number within that process
    since REAL NOT NULL,                 -- when it was about to be sent
    ended REAL,                          -- ended with no answer for these pairs (NULL:
                                         -- in flight, or its process was killed)
    pairs BLOB NOT NULL,                 -- (src, dst) as little-endian int64s
    PRIMARY KEY (run, batch)
) WITHOUT ROWID
"""
"""Creates syncd sent and has no definite answer for, one row a request (schema 3).
Written before the request leaves; what it proves is :mod:`syncd.state.attempts`'s."""

_TABLES = frozenset({"meta", "relations", "pairs", "failures", "attempts"})
_COLUMNS = {
    "relations": {"id", "name", "last_resync", "last_good_desired"},
    "pairs": {"rel", "src", "dst", "association_id", "owned", "first_seen", "absent_since"},
    "failures": {"rel", "src", "dst", "kind", "message", "attempts", "next_attempt"},
    "inflight": {"rel", "src", "dst", "since"},
    "attempts": {"rel", "run", "batch", "since", "ended", "pairs"},
}
"""Columns each table must have (checked at open): a file without them is not ours to use."""
_BY_VERSION = {1: _TABLES - {"attempts"}, 2: (_TABLES - {"attempts"}) | {"inflight"}}
"""Tables an older version's file must have (it is migrated after the check)."""


def check_and_init(conn: sqlite3.Connection, *, readonly: bool = False) -> None:
    """The schema check at open: create a new file's schema, or prove an old one is ours."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if app_id == 0 and not tables and not readonly:
        _create(conn)
        return
    if app_id != APPLICATION_ID:
        raise Unusable("not a syncd state database")
    if version > SCHEMA_VERSION:
        raise SchemaMismatch(
            f"state schema version {version} is newer than this syncd understands "
            f"({SCHEMA_VERSION}); run the newer syncd, or move the file away to rebuild "
            "the state from the CMDB"
        )
    missing = _BY_VERSION.get(version, _TABLES) - tables
    if missing:
        raise Unusable(f"missing tables: {', '.join(sorted(missing))}")
    for table in sorted(_COLUMNS.keys() & tables):
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        lacking = _COLUMNS[table] - have
        if lacking:
            raise Unusable(f"table {table} lacks columns: {', '.join(sorted(lacking))}")
    check = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    if check != "ok":
        raise Unusable(f"integrity check failed: {check}")
    if not readonly:
        _wal(conn)
        if version < SCHEMA_VERSION:
            _migrate(conn)


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring an older store up to date in place, in one transaction (1 -> 2: the creates in
    flight; 2 -> 3: those as attempts of an earlier run, and each relation's identity)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(INFLIGHT)
    conn.execute(ATTEMPTS)
    have = {r[1] for r in conn.execute("PRAGMA table_info(relations)")}
    for column in ("bk_obj_id", "bk_asst_obj_id", "bk_obj_asst_id"):
        if column not in have:
            conn.execute(f"ALTER TABLE relations ADD COLUMN {column} TEXT")
    if version == 2:
        _inflight_to_attempts(conn)
    conn.execute("DROP TABLE inflight")
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('schema_version', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(SCHEMA_VERSION),),
    )
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.execute("COMMIT")


def _inflight_to_attempts(conn: sqlite3.Connection) -> None:
    """Schema 2's in-flight pairs, one attempt per relation and send time, of run 0 (a
    process that is gone): what they prove is judged by the same rules as a killed run's."""
    groups: dict[tuple[int, float], list[int]] = {}
    for rel, src, dst, since in conn.execute("SELECT rel, src, dst, since FROM inflight"):
        groups.setdefault((int(rel), float(since)), []).extend((int(src), int(dst)))
    conn.executemany(
        "INSERT INTO attempts(rel, run, batch, since, ended, pairs) VALUES (?, 0, ?, ?, NULL, ?)",
        [
            (rel, n, since, ids_blob(ids))
            for n, ((rel, since), ids) in enumerate(sorted(groups.items()), start=1)
        ],
    )


def ids_blob(ids: Iterable[int]) -> bytes:
    """``attempts.pairs``: ids as little-endian int64s, whatever this machine's order."""
    packed = array("q", ids)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def blob_ids(blob: bytes) -> array[int]:
    """The ids of an ``attempts.pairs`` blob (a truncated tail is ignored)."""
    packed = array("q")
    packed.frombytes(blob[: len(blob) - len(blob) % 8])
    if sys.byteorder != "little":
        packed.byteswap()
    return packed


def _create(conn: sqlite3.Connection) -> None:
    _wal(conn)
    conn.execute("BEGIN IMMEDIATE")
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(ATTEMPTS)
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('schema_version', ?), ('created', ?)",
        (str(SCHEMA_VERSION), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
    )
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.execute("COMMIT")


def _wal(conn: sqlite3.Connection) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise Unusable(f"cannot switch to WAL journal mode (got {mode})")
