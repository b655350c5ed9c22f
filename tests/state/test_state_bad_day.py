"""The state store on a bad day (issue 13): a full disk, a read-only directory or file, a
schema that does not match, and creates whose answers were lost (ownership)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from syncd.core.pairs import pack
from syncd.state import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    Created,
    Failed,
    Seen,
    StateError,
    StateStore,
)
from syncd.state.attempts import RECLAIM_WINDOW
from syncd.state.errors import SchemaMismatch
from tests.mounts import fill, read_only, small_fs

R = "switch-host"


def _aside(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".corrupt-*"))


# -- ownership: creates in flight ------------------------------------------------------


def test_an_exists_answering_a_first_attempt_is_not_owned(tmp_path: Path) -> None:
    st, _ = StateStore.open(tmp_path / "s.db")
    attempt = st.attempts.intend(R, [(1, 10), (1, 11), (1, 12), (1, 13)], now=1.0)
    assert st.attempts.in_flight(R) == {pack(1, 10), pack(1, 11), pack(1, 12), pack(1, 13)}
    st.record_answer(
        R,
        created=[Created(1, 10, 100)],
        exists=[Seen(1, 11, None)],  # first attempt: someone else's
        failed=[Failed(1, 12, "missing", "no such host", 5.0)],
        attempt=attempt,
        now=2.0,
    )
    st.attempts.release(attempt)
    assert st.owned_keys(R) == {pack(1, 10)}
    # The point lookup a pushed change uses says the same of a few keys.
    asked = {pack(1, 10), pack(2, 20), pack(1, 11), pack(9, 99)}
    assert st.owned_among(R, asked) == {pack(1, 10)}
    assert st.owned_among("other", asked) == set()
    assert st.attempts.in_flight(R) == set()  # a definite answer settles the attempt
    st.close()


def test_an_exists_after_an_ambiguous_end_in_the_same_request_is_owned(tmp_path: Path) -> None:
    st, _ = StateStore.open(tmp_path / "s.db")
    attempt = st.attempts.intend(R, [(1, 11), (1, 13)], now=1.0)
    # The client's first try timed out; its retry answered "already exists" for (1, 11).
    st.record_answer(R, exists=[Seen(1, 11, None)], attempt=attempt, reclaim=[(1, 11)], now=2.0)
    assert st.owned_keys(R) == {pack(1, 11)}
    st.close()


def test_an_ambiguous_end_proves_ownership_within_the_window_only(tmp_path: Path) -> None:
    st, _ = StateStore.open(tmp_path / "s.db")
    attempt = st.attempts.intend(R, [(1, 10), (1, 11), (1, 12)], now=1.0)
    # Every try of the request timed out: the CMDB may have created all three.
    st.record_answer(R, attempt=attempt, unanswered=[(1, 10), (1, 11), (1, 12)], failed=[], now=2.0)
    st.attempts.release(attempt)
    assert st.attempts.in_flight(R) == {pack(1, 10), pack(1, 11), pack(1, 12)}
    retry = st.attempts.intend(R, [(1, 10)], now=100.0)  # the next cycle sends it again
    st.record_answer(R, exists=[Seen(1, 10, None)], attempt=retry, now=101.0)
    assert st.owned_keys(R) == {pack(1, 10)}
    late = 2.0 + RECLAIM_WINDOW + 1
    retry = st.attempts.intend(R, [(1, 11)], now=late)  # too late: proves nothing
    st.record_answer(R, exists=[Seen(1, 11, None)], attempt=retry, now=late)
    assert st.owned_keys(R) == {pack(1, 10)}
    st.close()


def test_an_attempt_of_a_killed_process_counts_and_a_live_one_does_not(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    st, _ = StateStore.open(path)
    st.attempts.intend(R, [(1, 10)], now=1.0)
    st.close()  # killed mid-request: the row stays, its process is gone
    st, _ = StateStore.open(path)
    live = st.attempts.intend(R, [(2, 20)], now=2.0)  # in flight in this process
    st.record_answer(R, exists=[Seen(1, 10, None), Seen(2, 20, None)], now=3.0)  # the watch
    assert st.owned_keys(R) == {pack(1, 10)}
    assert st.attempts.in_flight(R) == {pack(2, 20)}
    st.attempts.release(live)  # over, never answered (a failed write): ambiguous from now on
    st.record_answer(R, exists=[Seen(2, 20, None)], now=4.0)
    assert st.owned_keys(R) == {pack(1, 10), pack(2, 20)}
    st.close()


def test_a_resync_settles_what_was_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    st, _ = StateStore.open(path)
    st.attempts.intend(R, [(1, 10), (1, 11)], now=1.0)
    st.close()
    st, _ = StateStore.open(path)
    # Killed before the answer: the CMDB has (1, 10), never got (1, 11).
    st.resync.replace_from_cmdb(R, [(1, 10, 100), (3, 30, 300)], now=2.0)
    assert st.owned_keys(R) == {pack(1, 10)}
    assert st.attempts.in_flight(R) == set()
    st.close()


def test_a_resync_never_owns_through_an_old_attempt(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    st, _ = StateStore.open(path)
    st.attempts.intend(R, [(1, 10)], now=1.0)
    st.close()
    st, _ = StateStore.open(path)
    st.resync.replace_from_cmdb(R, [(1, 10, 100)], now=3 * 86400.0)  # three days on
    assert st.owned_keys(R) == set() and st.attempts.in_flight(R) == set()
    st.close()


def test_a_schema_2_store_is_upgraded_in_place(tmp_path: Path) -> None:
    """A file as syncd 0.2 wrote it: its in-flight pairs still prove what they proved."""
    path = tmp_path / "s.db"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_2)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO relations(id, name, last_resync) VALUES (1, ?, 1.0)", (R,))
    conn.execute("INSERT INTO pairs VALUES (1, 1, 2, 3, 1, 1.0, NULL, 0)")
    conn.executemany(
        "INSERT INTO inflight VALUES (1, ?, ?, ?)", [(5, 50, 10.0), (5, 51, 10.0), (6, 60, 20.0)]
    )
    conn.commit()
    conn.close()
    st, warning = StateStore.open(path)
    assert warning is None and _aside(path) == []
    assert st.owned_keys(R) == {pack(1, 2)} and st.has_resynced(R)
    assert st.attempts.in_flight(R) == {pack(5, 50), pack(5, 51), pack(6, 60)}
    assert st.meta.relation_identity(R) is None  # adopted from the configuration at start
    st.record_answer(R, exists=[Seen(5, 50, None), Seen(7, 70, None)], now=30.0)
    assert st.owned_keys(R) == {pack(1, 2), pack(5, 50)}
    assert st.attempts.in_flight(R) == {pack(5, 51), pack(6, 60)}
    st.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "inflight" not in tables and "attempts" in tables
    conn.close()


SCHEMA_2 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE relations (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
    last_resync REAL, last_good_desired INTEGER);
CREATE TABLE pairs (rel INTEGER NOT NULL, src INTEGER NOT NULL, dst INTEGER NOT NULL,
    association_id INTEGER, owned INTEGER NOT NULL DEFAULT 0, first_seen REAL NOT NULL,
    absent_since REAL, absent_cycles INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (rel, src, dst)) WITHOUT ROWID;
CREATE TABLE failures (rel INTEGER NOT NULL, src INTEGER NOT NULL, dst INTEGER NOT NULL,
    kind TEXT NOT NULL, message TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt REAL,
    last_failed REAL NOT NULL, PRIMARY KEY (rel, src, dst)) WITHOUT ROWID;
CREATE TABLE inflight (rel INTEGER NOT NULL, src INTEGER NOT NULL, dst INTEGER NOT NULL,
    since REAL NOT NULL, PRIMARY KEY (rel, src, dst)) WITHOUT ROWID;
"""
"""Schema 2 exactly as ``syncd/state/schema.py`` created it."""


def test_a_schema_1_store_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_2.split("CREATE TABLE inflight")[0])
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO relations(id, name) VALUES (1, ?)", (R,))
    conn.execute("INSERT INTO pairs VALUES (1, 1, 2, 3, 1, 1.0, NULL, 0)")
    conn.execute("INSERT INTO pairs VALUES (1, 4, 5, 6, 0, 1.0, NULL, 0)")
    conn.commit()
    conn.close()
    st, warning = StateStore.open(path)
    assert warning is None and _aside(path) == []
    assert st.owned_keys(R) == {pack(1, 2)} and st.count(R) == 2
    st.attempts.intend(R, [(7, 8)], now=2.0)
    assert st.attempts.in_flight(R) == {pack(7, 8)}
    st.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


# -- a schema that does not match --------------------------------------------------------


def test_a_newer_schema_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    st, _ = StateStore.open(path)
    st.record_answer(R, created=[Created(1, 2, 3)], now=1.0)
    st.close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(SchemaMismatch, match="newer than this syncd"):
        StateStore.open(path, lock=True)
    with pytest.raises(StateError, match="newer than this syncd"):
        StateStore.open_readonly(path)
    assert path.read_bytes() == before and _aside(path) == []


def test_missing_columns_are_found_at_open(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    st, _ = StateStore.open(path)
    st.close()
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE pairs DROP COLUMN absent_since")
    conn.close()
    with pytest.raises(StateError, match="lacks columns: absent_since"):
        StateStore.open_readonly(path)
    st, warning = StateStore.open(path)  # not at the first write of a cycle
    assert warning is not None and "lacks columns: absent_since" in warning
    st.close()


# -- a full disk -------------------------------------------------------------------------


def _write_until_full(st: StateStore) -> int:
    for i in range(100_000):
        try:
            st.record_answer(R, created=[Created(i, j, i * 1000 + j) for j in range(50)], now=1.0)
        except StateError as exc:
            assert "full" in str(exc)
            return i
    raise AssertionError("never full")


def test_sqlite_full_fails_the_write_and_the_next_one_succeeds(tmp_path: Path) -> None:
    """SQLITE_FULL from SQLite's own page limit (runs anywhere, no mount needed)."""
    st, _ = StateStore.open(tmp_path / "s.db")
    pages = st.database.conn.execute("PRAGMA page_count").fetchone()[0]
    st.database.conn.execute(f"PRAGMA max_page_count = {pages + 20}")
    answers = _write_until_full(st)
    assert st.count(R) == answers * 50  # all of each answer or none of it
    st.database.conn.execute("PRAGMA max_page_count = 1000000")
    st.record_answer(R, created=[Created(9999, 1, 1)], now=2.0)
    assert st.count(R) == answers * 50 + 1
    st.close()


def test_a_full_filesystem_fails_writes_not_the_store(tmp_path: Path) -> None:
    with small_fs(tmp_path / "fs", 512) as fs:
        path = fs / "s.db"
        st, _ = StateStore.open(path, lock=True)
        pad = fill(fs, 48)
        answers = _write_until_full(st)
        assert st.count(R) == answers * 50
        st.close()
        st, warning = StateStore.open(path, lock=True)  # a full disk is not a bad file
        assert warning is None and _aside(path) == []
        pad.unlink()
        st.record_answer(R, created=[Created(9999, 1, 1)], now=2.0)
        assert st.count(R) == answers * 50 + 1
        st.close()


# -- read-only -----------------------------------------------------------------------------


def test_a_valid_file_in_a_read_only_directory_is_not_moved_aside(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    path = folder / "s.db"
    st, _ = StateStore.open(path, lock=True)
    st.record_answer(R, created=[Created(1, 2, 3)], now=1.0)
    st.close()
    with read_only(folder):
        with pytest.raises(StateError) as info:
            StateStore.open(path, lock=True)
        assert str(path) in str(info.value)
        ro = StateStore.open_readonly(path)  # `syncd plan` can still read it
        assert ro.owned_keys(R) == {pack(1, 2)}
        ro.close()
    assert _aside(path) == []
    st, warning = StateStore.open(path, lock=True)
    assert warning is None and st.owned_keys(R) == {pack(1, 2)}
    st.close()


def test_a_read_only_file_is_read_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    st, _ = StateStore.open(path)
    st.record_answer(R, created=[Created(1, 2, 3)], now=1.0)
    st.close()
    with read_only(path):
        st, warning = StateStore.open(path, lock=True)
        assert warning is None and st.owned_keys(R) == {pack(1, 2)}
        with pytest.raises(StateError, match="readonly"):
            st.record_answer(R, created=[Created(4, 5, 6)], now=2.0)
        st.close()
    assert _aside(path) == []
