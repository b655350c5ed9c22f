"""The state store on a bad day (issue 13): a full disk, a read-only directory or file, a
schema that does not match, and creates whose answers were lost (ownership)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from syncd.core.pairs import pack
from syncd.state import SCHEMA_VERSION, Created, Failed, Seen, StateError, StateStore
from syncd.state.errors import SchemaMismatch
from tests.mounts import fill, read_only, small_fs

R = "switch-host"


def _aside(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".corrupt-*"))


# -- ownership: creates in flight ------------------------------------------------------


def test_an_exists_for_a_pair_in_flight_is_owned(tmp_path: Path) -> None:
    st, _ = StateStore.open(tmp_path / "s.db")
    st.intend(R, [(1, 10), (1, 11), (1, 12), (1, 13)], now=1.0)
    assert st.in_flight(R) == {pack(1, 10), pack(1, 11), pack(1, 12), pack(1, 13)}
    st.record_answer(
        R,
        created=[Created(1, 10, 100)],
        exists=[Seen(1, 11, None), Seen(2, 20, None)],  # (2, 20): someone else's
        failed=[Failed(1, 12, "missing", "no such host", 5.0), Failed(1, 13, "request", "x", 1)],
        answered=[(1, 12)],  # refused one by one; (1, 13): the whole request failed
        now=2.0,
    )
    assert st.owned_keys(R) == {pack(1, 10), pack(1, 11)}
    # The point lookup a pushed change uses says the same of a few keys.
    asked = {pack(1, 10), pack(2, 20), pack(1, 12), pack(9, 99)}
    assert st.owned_among(R, asked) == {pack(1, 10)}
    assert st.owned_among("other", asked) == set()
    assert st.in_flight(R) == {pack(1, 13)}  # the CMDB may have acted on it
    st.close()


def test_a_resync_settles_what_was_in_flight(tmp_path: Path) -> None:
    st, _ = StateStore.open(tmp_path / "s.db")
    st.intend(R, [(1, 10), (1, 11)], now=1.0)
    # Killed before the answer: the CMDB has (1, 10), never got (1, 11).
    st.replace_from_cmdb(R, [(1, 10, 100), (3, 30, 300)], now=2.0)
    assert st.owned_keys(R) == {pack(1, 10)}
    assert st.in_flight(R) == set()
    st.close()


def test_a_schema_1_store_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    st, _ = StateStore.open(path)
    st.record_answer(R, created=[Created(1, 2, 3)], exists=[Seen(4, 5, 6)], now=1.0)
    st.close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE inflight")
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    st, warning = StateStore.open(path)
    assert warning is None and _aside(path) == []
    assert st.owned_keys(R) == {pack(1, 2)} and st.count(R) == 2
    st.intend(R, [(7, 8)], now=2.0)
    assert st.in_flight(R) == {pack(7, 8)}
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
