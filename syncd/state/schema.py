"""The state store's schema: its tables, the check that a file is ours, and migrations.

Kept apart from :mod:`syncd.state.db` (connections and transactions) so what a state file
must contain, and how an older one (schema 1 -> 2) is brought up to date, reads in one place.
"""

from __future__ import annotations

import sqlite3
import time

from syncd.state.errors import SchemaMismatch, Unusable

SCHEMA_VERSION = 2
APPLICATION_ID = 0x73796E63  # "sync": tells our files from any other SQLite database

SCHEMA = """
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

INFLIGHT = """
CREATE TABLE IF NOT EXISTS inflight (
    rel   INTEGER NOT NULL,
    src   INTEGER NOT NULL,
    dst   INTEGER NOT NULL,
    since REAL NOT NULL,                 -- when the create was about to be sent
    PRIMARY KEY (rel, src, dst)
) WITHOUT ROWID
"""
"""Creates syncd sent whose answer it has not recorded yet (schema 2). Written before the
request leaves, so an answer lost to a 504 or a kill still proves who created the pair."""

_TABLES = frozenset({"meta", "relations", "pairs", "failures", "inflight"})
_COLUMNS = {
    "relations": {"id", "name", "last_resync", "last_good_desired"},
    "pairs": {"rel", "src", "dst", "association_id", "owned", "first_seen", "absent_since"},
    "failures": {"rel", "src", "dst", "kind", "message", "attempts", "next_attempt"},
    "inflight": {"rel", "src", "dst", "since"},
}
"""Columns each table must have (checked at open): a file without them is not ours to use."""


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
    missing = _TABLES - tables - ({"inflight"} if version < 2 else set())
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
    """Bring an older store up to date in place (1 -> 2: the in-flight creates)."""
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(INFLIGHT)
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('schema_version', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(SCHEMA_VERSION),),
    )
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.execute("COMMIT")


def _create(conn: sqlite3.Connection) -> None:
    _wal(conn)
    conn.execute("BEGIN IMMEDIATE")
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(INFLIGHT)
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
