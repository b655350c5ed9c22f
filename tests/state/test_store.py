"""The SQLite state store: persistence, transactions, resync and recovery from bad files."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.core.pairs import pack
from syncd.state import SCHEMA_VERSION, StateError, StateLocked, StateStore
from tests.state.inspect_db import FailureRow, failures, last_resync, meta, relations

R = "switch-host"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "syncd.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[StateStore]:
    st, warning = StateStore.open(db_path)
    assert warning is None
    yield st
    st.close()


def test_open_creates_parent_dir_and_wal(db_path: Path) -> None:
    st, warning = StateStore.open(db_path)
    assert warning is None and db_path.is_file()
    assert meta(st, "schema_version") == str(SCHEMA_VERSION)
    st.close()
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_empty_relation_reads(store: StateStore) -> None:
    assert store.known_keys("nope") == set()
    assert store.count("nope") == 0
    assert not store.has_resynced("nope")
    assert store.owned_keys("nope") == set()
    assert failures(store, "nope") == []
    assert store.held_back("nope", 0.0) == {}
    assert store.failure_attempts("nope", [pack(1, 2)]) == {}
    assert store.association_ids("nope", [pack(1, 2)]) == {}
    assert store.missing_association_ids("nope") == []
    assert store.absent_info("nope", [pack(1, 2)]) == {}
    assert store.meta.prune_baseline("nope") is None
    store.remove("nope", [pack(1, 2)])  # no-ops, no relation row created
    store.mark_absent("nope", [pack(1, 2)], 1.0)
    assert relations(store) == []


def test_record_answer_and_persistence(db_path: Path) -> None:
    st, _ = StateStore.open(db_path)
    st.record_answer(
        R,
        created=[(1, 10, 100), (2, 20, 200)],
        exists=[(3, 30, None), (4, 40, 400)],
        failed=[(5, 50, "missing_instance", "实例不存在", 123.0), (6, 60, "conflict", "1:1", None)],
        now=100.0,
    )
    st.close()

    st, warning = StateStore.open(db_path)
    assert warning is None
    assert st.known_keys(R) == {pack(1, 10), pack(2, 20), pack(3, 30), pack(4, 40)}
    assert st.count(R) == 4
    assert st.owned_keys(R) == {pack(1, 10), pack(2, 20)}
    assert st.association_ids(R, [pack(1, 10), pack(3, 30), pack(9, 9)]) == {
        pack(1, 10): 100,
        pack(3, 30): None,
    }
    assert st.missing_association_ids(R) == [(3, 30)]
    assert st.failure_attempts(R, [pack(5, 50), pack(6, 60), pack(1, 10)]) == {
        pack(5, 50): 1,
        pack(6, 60): 1,
    }
    assert st.held_back(R, now=100.0) == {
        pack(5, 50): ("missing_instance", "实例不存在"),
        pack(6, 60): ("conflict", "1:1"),
    }
    # backoff over: only the held one (next_attempt NULL) stays back
    assert st.held_back(R, now=200.0) == {pack(6, 60): ("conflict", "1:1")}
    fails = failures(st, R)
    assert [f.key for f in fails] == [pack(5, 50), pack(6, 60)]
    assert fails[0] == FailureRow(5, 50, "missing_instance", "实例不存在", 1, 123.0, 100.0)
    assert relations(st) == [R]
    st.close()


def test_failures_count_attempts_and_clear_on_success(store: StateStore) -> None:
    for i in range(3):
        store.record_answer(R, failed=[(5, 50, "missing", f"try {i}", 10.0 * i)], now=float(i))
    (f,) = failures(store, R)
    assert (f.attempts, f.message, f.next_attempt, f.last_failed) == (3, "try 2", 20.0, 2.0)
    store.record_answer(R, exists=[(5, 50, None)], now=5.0)
    assert failures(store, R) == []
    store.record_answer(R, failed=[(6, 60, "x", "y", None)], now=6.0)
    store.record_answer(R, created=[(6, 60, 600)], now=7.0)
    assert failures(store, R) == []


def test_exists_keeps_owned_and_id_created_takes_ownership(store: StateStore) -> None:
    store.record_answer(R, created=[(1, 10, 100)], now=1.0)
    store.record_answer(R, exists=[(1, 10, None)], now=2.0)  # e.g. a retried request
    assert store.owned_keys(R) == {pack(1, 10)}
    assert store.association_ids(R, [pack(1, 10)]) == {pack(1, 10): 100}
    store.record_answer(R, exists=[(2, 20, 200)], now=3.0)
    assert store.owned_keys(R) == {pack(1, 10)}
    store.record_answer(R, created=[(2, 20, 201)], now=4.0)  # deleted behind us, recreated
    assert store.owned_keys(R) == {pack(1, 10), pack(2, 20)}
    assert store.association_ids(R, [pack(2, 20)]) == {pack(2, 20): 201}


def test_relations_are_separate(store: StateStore) -> None:
    store.record_answer("a", created=[(1, 1, 1)], now=1.0)
    store.record_answer("b", created=[(2, 2, 2)], failed=[(3, 3, "k", "m", None)], now=1.0)
    assert store.known_keys("a") == {pack(1, 1)}
    assert store.known_keys("b") == {pack(2, 2)}
    assert len(failures(store, "b")) == 1 and failures(store, "a") == []


def test_record_answer_is_all_or_nothing(store: StateStore) -> None:
    store.record_answer(R, created=[(1, 10, 100)], failed=[(9, 90, "k", "m", None)], now=1.0)
    with pytest.raises(ValueError):  # not an SQLite error: passed on as is, after rollback
        store.record_answer(
            R,
            created=[(2, 20, 200), (3, 30)],  # type: ignore[list-item]  # second row is broken
            now=2.0,
        )
    with pytest.raises(StateError):  # a negative id breaks a CHECK; the failure row must stay
        store.record_answer(R, exists=[(9, 90, None), (-1, 5, None)], now=2.0)

    class Boom(Exception):
        pass

    def rows() -> Iterator[tuple[int, int, str, str, float | None]]:
        yield (7, 70, "k", "m", None)
        raise Boom

    with pytest.raises(Boom):
        store.record_answer(R, created=[(4, 40, 400)], failed=_Seq(rows()), now=3.0)  # type: ignore[arg-type]
    assert store.known_keys(R) == {pack(1, 10)}
    assert [f.key for f in failures(store, R)] == [pack(9, 90)]
    assert relations(store) == [R]
    # a relation first written by a failed transaction does not linger (nor its cached id)
    with pytest.raises(ValueError):
        store.record_answer("new", created=[(1, 2, 3), (1,)], now=1.0)  # type: ignore[list-item]
    assert relations(store) == [R]
    store.record_answer("new", created=[(1, 2, 3)], now=1.0)
    assert store.known_keys("new") == {pack(1, 2)}


class _Seq:
    """A truthy 'sequence' whose iteration fails midway, as a bug upstream might."""

    def __init__(self, it: Iterator[tuple[int, int, str, str, float | None]]) -> None:
        self.it = it

    def __bool__(self) -> bool:
        return True

    def __iter__(self) -> Iterator[tuple[int, int, str, str, float | None]]:
        return self.it


def test_a_pair_deleted_and_created_again_by_others_is_no_longer_owned(
    store: StateStore,
) -> None:
    """Same key, another association id: a foreign instance, whatever syncd created before."""
    store.record_answer(R, created=[(1, 10, 100), (2, 20, 200), (3, 30, 300)], now=1.0)
    store.record_answer(R, exists=[(4, 40, None)], now=1.0)  # id not known yet
    assert store.owned_keys(R) == {pack(1, 10), pack(2, 20), pack(3, 30)}
    # (2,20) was deleted and created again by another client: id 201, not syncd's 200
    store.resync.replace_from_cmdb(
        R, [(1, 10, 100), (2, 20, 201), (3, 30, None), (4, 40, 400)], now=2.0
    )
    assert store.owned_keys(R) == {pack(1, 10), pack(3, 30)}
    assert store.association_ids(R, [pack(2, 20)]) == {pack(2, 20): 201}


def test_replace_from_cmdb(store: StateStore) -> None:
    store.record_answer(R, created=[(1, 10, 100), (2, 20, 200)], exists=[(3, 30, None)], now=1.0)
    store.record_answer(
        R, failed=[(4, 40, "k", "m", 99.0), (5, 50, "conflict", "m", None)], now=1.0
    )
    assert not store.has_resynced(R)
    # CMDB: (2,20) was deleted behind our back, (4,40) exists now, (6,60) created by others
    added, removed = store.resync.replace_from_cmdb(
        R, iter([(1, 10, 100), (3, 30, 300), (4, 40, 400), (6, 60, 600), (6, 60, 600)]), now=2.0
    )
    assert (added, removed) == (2, 1)
    assert store.known_keys(R) == {pack(1, 10), pack(3, 30), pack(4, 40), pack(6, 60)}
    assert store.owned_keys(R) == {pack(1, 10)}
    assert store.association_ids(R, [pack(3, 30)]) == {pack(3, 30): 300}
    assert store.missing_association_ids(R) == []
    assert store.has_resynced(R) and last_resync(store, R) == 2.0
    # (4,40) is known now; the held conflict is released for one more try
    (f,) = failures(store, R)
    assert f.key == pack(5, 50) and f.next_attempt == 2.0 and f.attempts == 1
    assert store.held_back(R, now=2.0) == {}
    assert store.resync.replace_from_cmdb(R, [], now=3.0) == (0, 4)
    assert store.count(R) == 0


def test_staged_resync(store: StateStore) -> None:
    store.record_answer(R, created=[(1, 10, 100), (2, 20, 200)], now=1.0)
    store.resync.begin(R)
    store.resync.stage(R, [(1, 10, 100)])
    store.record_answer(R, created=[(7, 70, 700)], now=1.5)  # answer during paging
    store.resync.stage(R, [(3, 30, 300)])
    assert store.count(R) == 3  # nothing swapped in yet
    assert store.resync.finish(R, now=2.0) == (1, 1)
    assert store.known_keys(R) == {pack(1, 10), pack(3, 30), pack(7, 70)}
    with pytest.raises(StateError):
        store.resync.stage(R, [(1, 1, 1)])
    store.resync.begin(R)
    store.resync.stage(R, [])
    store.resync.abort(R)
    assert store.count(R) == 3
    with pytest.raises(StateError):
        store.resync.finish(R, now=3.0)


def test_association_ids_bulk_and_set(store: StateStore) -> None:
    n = 3000  # above the point-lookup threshold
    store.record_answer(R, exists=[(i, i, None) for i in range(n)], now=1.0)
    assert len(store.missing_association_ids(R)) == n
    assert store.set_association_ids(R, ((i, i, 10 * i) for i in range(n))) == n
    assert store.set_association_ids(R, [(99999, 1, 5)]) == 0  # unknown pairs are ignored
    assert store.count(R) == n
    ids = store.association_ids(R, {pack(i, i) for i in range(0, n, 2)})
    assert len(ids) == n // 2 and ids[pack(4, 4)] == 40
    assert store.missing_association_ids(R) == []


def test_remove_and_absence(store: StateStore) -> None:
    store.record_answer(R, created=[(1, 1, 1), (2, 2, 2), (3, 3, 3)], now=1.0)
    store.mark_absent(R, [pack(1, 1), pack(2, 2)], now=10.0)
    store.mark_absent(R, [pack(1, 1)], now=20.0)
    assert store.absent_info(R, [pack(1, 1), pack(2, 2), pack(3, 3)]) == {
        pack(1, 1): (10.0, 2),
        pack(2, 2): (10.0, 1),
    }
    store.mark_present(R, {pack(2, 2), pack(3, 3)})
    assert store.absent_info(R, [pack(1, 1), pack(2, 2)]) == {pack(1, 1): (10.0, 2)}
    store.remove(R, [pack(1, 1), pack(9, 9)])
    assert store.known_keys(R) == {pack(2, 2), pack(3, 3)}


def test_baselines_persist(db_path: Path) -> None:
    st, _ = StateStore.open(db_path)
    assert st.meta.source_size(R) == 0 and st.meta.prune_baseline(R) is None
    st.meta.set_source_size(R, 7)
    st.meta.set_source_size(R, 8)
    st.meta.set_prune_baseline(R, 42)
    st.close()
    with StateStore.open(db_path)[0] as st:
        assert st.meta.source_size(R) == 8
        assert st.meta.source_size("other") == 0
        assert st.meta.prune_baseline(R) == 42


def test_closed_store_raises(db_path: Path) -> None:
    st, _ = StateStore.open(db_path)
    st.close()
    st.close()  # idempotent
    with pytest.raises(StateError, match="closed"):
        st.known_keys(R)


def _aside(db_path: Path) -> list[Path]:
    return sorted(p for p in db_path.parent.iterdir() if ".corrupt-" in p.name)


def test_garbage_file_is_moved_aside(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(os.urandom(8192))
    (db_path.parent / (db_path.name + "-wal")).write_bytes(b"junk wal")
    st, warning = StateStore.open(db_path)
    assert warning is not None and "moved it to" in warning and "rebuilt from the CMDB" in warning
    moved, wal = _aside(db_path)
    assert wal.name == moved.name + "-wal"  # the log went with its database
    assert str(moved) in warning and moved.read_bytes() != b""
    assert not (db_path.parent / (db_path.name + "-wal")).read_bytes().startswith(b"junk")
    st.record_answer(R, created=[(1, 2, 3)], now=1.0)
    assert st.known_keys(R) == {pack(1, 2)}
    st.close()
    # a second garbage file the same second gets its own name
    db_path.unlink()
    db_path.write_bytes(b"not sqlite at all" * 100)
    st, warning = StateStore.open(db_path)
    assert warning is not None
    assert len([p for p in _aside(db_path) if not p.name.endswith("-wal")]) == 2
    st.close()


def test_foreign_sqlite_db_is_moved_aside(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE pairs (a TEXT, b TEXT)")
    conn.execute("INSERT INTO pairs VALUES ('x', 'y')")
    conn.commit()
    conn.close()
    st, warning = StateStore.open(db_path)
    assert warning is not None and "not a syncd state database" in warning
    assert st.count(R) == 0
    st.close()
    (moved,) = _aside(db_path)
    conn = sqlite3.connect(moved)
    assert conn.execute("SELECT * FROM pairs").fetchall() == [("x", "y")]
    conn.close()


def test_missing_tables_are_moved_aside(db_path: Path) -> None:
    """(A newer schema is refused and kept: tests/state/test_state_bad_day.py.)"""
    st, _ = StateStore.open(db_path)
    st.close()
    conn = sqlite3.connect(db_path)
    conn.execute("DROP TABLE failures")
    conn.close()
    st, warning = StateStore.open(db_path)
    assert warning is not None and "missing tables: failures" in warning
    st.close()


def test_empty_file_is_initialised(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.touch()
    st, warning = StateStore.open(db_path)
    assert warning is None
    st.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_moved_aside(db_path: Path) -> None:
    st, _ = StateStore.open(db_path)
    st.close()
    db_path.chmod(0)
    st, warning = StateStore.open(db_path)
    assert warning is not None
    st.close()


def test_locked_store_is_not_moved_aside(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st, _ = StateStore.open(db_path)
    st.close()
    monkeypatch.setattr("syncd.state.db._BUSY_TIMEOUT_MS", 50)
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("PRAGMA locking_mode = EXCLUSIVE")
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StateError):
            StateStore.open(db_path)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert _aside(db_path) == []


@pytest.mark.slow
def test_kill_9_mid_write_leaves_state_consistent(db_path: Path) -> None:
    """A child writes answers in a loop and is SIGKILLed; what survives is whole answers."""
    st, _ = StateStore.open(db_path)
    st.close()
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from syncd.state import StateStore
        st, _ = StateStore.open(Path({str(db_path)!r}))
        print("ready", flush=True)
        i = 0
        while True:
            st.record_answer("r", created=[(i, j, i * 1000 + j) for j in range(50)],
                             failed=[(i, 999, "k", "m", None)], now=float(i))
            i += 1
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    st, warning = StateStore.open(db_path)
    assert warning is None
    keys = st.known_keys("r")
    answers = len(keys) // 50
    assert answers > 0 and len(keys) == answers * 50
    assert keys == {pack(i, j) for i in range(answers) for j in range(50)}
    assert len(failures(st, "r")) == answers
    st.close()


def test_damaged_pages_are_moved_aside(db_path: Path) -> None:
    st, _ = StateStore.open(db_path)
    st.record_answer(R, created=[(i, i, i) for i in range(5000)], now=1.0)
    st.close()
    data = bytearray(db_path.read_bytes())
    assert data[:16] == b"SQLite format 3\x00" and len(data) > 16 * 4096
    data[4096 * 2 : 4096 * 12] = os.urandom(4096 * 10)  # keep the header, wreck the b-trees
    db_path.write_bytes(bytes(data))
    st, warning = StateStore.open(db_path)
    assert warning is not None and "moved it to" in warning
    assert st.count(R) == 0
    st.close()


def test_directory_at_state_path_is_moved_aside(db_path: Path) -> None:
    db_path.mkdir(parents=True)
    st, warning = StateStore.open(db_path)
    assert warning is not None and "not a regular file" in warning
    assert db_path.is_file() and _aside(db_path)[0].is_dir()
    st.close()


def test_one_writer_per_state_file(db_path: Path) -> None:
    st, _ = StateStore.open(db_path, lock=True)
    with pytest.raises(StateLocked, match=f"pid {os.getpid()}") as info:
        StateStore.open(db_path, lock=True)
    assert info.value.holder == str(os.getpid())
    st.close()
    again, _ = StateStore.open(db_path, lock=True)  # released on close
    again.close()


def test_readonly_open_never_creates_moves_or_repairs(db_path: Path) -> None:
    with pytest.raises(StateError, match="missing"):
        StateStore.open_readonly(db_path)
    assert not db_path.parent.exists()
    st, _ = StateStore.open(db_path)
    st.record_answer(R, created=[(1, 2, 3)], now=1.0)
    st.close()
    before = sorted(p.name for p in db_path.parent.iterdir())
    ro = StateStore.open_readonly(db_path)
    assert ro.known_keys(R) == ro.owned_keys(R) == {pack(1, 2)}
    with pytest.raises(StateError):
        ro.record_answer(R, created=[(4, 5, 6)], now=2.0)
    ro.close()
    assert sorted(p.name for p in db_path.parent.iterdir()) == before
    db_path.write_bytes(b"garbage" * 100)
    with pytest.raises(StateError, match="unusable"):
        StateStore.open_readonly(db_path)
    assert db_path.read_bytes() == b"garbage" * 100 and _aside(db_path) == []


def test_known_texts_in_chunks_equal_known_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import syncd.state.knowntext as store_module
    from syncd.core.pairs import from_hex

    monkeypatch.setattr(store_module, "_TEXT_CHUNK", 7)
    st, _ = StateStore.open(tmp_path / "k.db")
    rows = [(s, d, 10 * s + d + 1) for s in (1, 2, 2**59) for d in range(10)]
    st.resync.replace_from_cmdb("r", rows, 1.0)
    st.resync.replace_from_cmdb("other", [(5, 5, 1)], 1.0)
    chunks = list(st.known_texts("r"))
    assert len(chunks) == 5  # 30 pairs, 7 a chunk
    keys = [k for text in chunks for k in from_hex(text)]
    assert keys == sorted(pack(s, d) for s, d, _ in rows)  # each pair once, in key order
    assert st.known_keys("r") == set(keys)
    assert list(st.known_texts("nope")) == []


def test_known_ahead_reads_in_its_own_thread_and_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import syncd.state.knowntext as store_module
    from syncd.core.pairs import from_hex

    monkeypatch.setattr(store_module, "_TEXT_CHUNK", 3)
    st, _ = StateStore.open(tmp_path / "a.db")
    st.resync.replace_from_cmdb("r", [(1, d, d + 1) for d in range(20)], 1.0)
    ahead = st.read_known_ahead("r")
    assert {k for text in ahead.chunks() for k in from_hex(text)} == st.known_keys("r")
    ahead.close()
    # Never read from: closing ends the thread anyway (it waits on a full queue).
    idle = st.read_known_ahead("r")
    idle.close()
    idle._thread.join(timeout=5)
    assert not idle._thread.is_alive()
    # A failed read reaches the reader.
    st.close()
    with pytest.raises(StateError):
        list(st.read_known_ahead("r").chunks())
