"""Rows a chunk a statement leave the table exactly as ``executemany`` a row a step does,
upserts and repeated keys included."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.state import multirow
from syncd.state.multirow import insert_rows

TABLE = (
    "CREATE TABLE t (rel INTEGER, k INTEGER, v INTEGER, owned INTEGER, at REAL,"
    " PRIMARY KEY (rel, k)) WITHOUT ROWID"
)
HEAD = "INSERT INTO t(rel, k, v, owned, at)"
UPSERT = (
    " ON CONFLICT (rel, k) DO UPDATE"
    " SET v = coalesce(excluded.v, v), owned = max(owned, excluded.owned)"
)


def table() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute(TABLE)
    return db


def contents(db: sqlite3.Connection) -> list[tuple[object, ...]]:
    return db.execute("SELECT * FROM t ORDER BY rel, k").fetchall()


rows_strategy = st.lists(
    st.tuples(
        st.integers(0, 30),  # few keys: repeats, so the upsert acts within one statement
        st.none() | st.integers(-(2**63), 2**63 - 1),
        st.integers(0, 1),
    ),
    max_size=450,  # more than two chunks
)


@settings(max_examples=60, deadline=None)
@given(before=rows_strategy, rows=rows_strategy)
def test_the_same_table_as_executemany(
    before: list[tuple[int, int | None, int]], rows: list[tuple[int, int | None, int]]
) -> None:
    one, other = table(), table()
    for db in (one, other):
        db.executemany(f"{HEAD} VALUES (7, ?, ?, ?, 1.5){UPSERT}", before)  # what was there already
    other.executemany(f"{HEAD} VALUES (?, ?, ?, ?, ?){UPSERT}", [(7, *r, 2.5) for r in rows])
    insert_rows(one, HEAD, "(?1, {}, {}, {}, ?2)", rows, constants=(7, 2.5), tail=UPSERT)
    assert contents(one) == contents(other)


def test_rows_beyond_a_chunk_take_several_statements() -> None:
    db = table()
    statements: list[str] = []
    db.set_trace_callback(statements.append)
    rows = [(k, k * 10, 1) for k in range(multirow.CHUNK * 2 + 1)]
    insert_rows(db, HEAD, "(?1, {}, {}, {}, ?2)", rows, constants=(1, 0.0))
    assert len([s for s in statements if s.startswith("INSERT")]) == 3
    assert len(contents(db)) == len(rows)


def test_nothing_to_insert_runs_nothing() -> None:
    db = table()
    statements: list[str] = []
    db.set_trace_callback(statements.append)
    insert_rows(db, HEAD, "(?1, {}, {}, {}, ?2)", [], constants=(1, 0.0))
    assert [s for s in statements if s.startswith("INSERT")] == []


@pytest.mark.parametrize(
    "rows",
    [
        [(1, 2, 3), (4, 5)],  # a short row
        [(1, 2), (4, 5, 6)],  # a long one
        [(k, k, 1) for k in range(multirow.CHUNK)] + [(1, 2)],  # in a later chunk
    ],
)
def test_rows_of_unequal_width_are_refused_before_anything_is_written(
    rows: list[tuple[int, ...]],
) -> None:
    db = table()
    with pytest.raises(ValueError, match="same number of values"):
        insert_rows(db, HEAD, "(?1, {}, {}, {}, ?2)", rows, constants=(1, 0.0))
    assert contents(db) == []


def test_rows_too_wide_for_a_statement_are_refused() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        insert_rows(table(), HEAD, "({})", [tuple(range(6))], constants=())
