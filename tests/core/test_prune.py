"""Pruning guards, each on its own."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from syncd.core.prune import PruneGuards, decide_prune, source_guard

G = PruneGuards(grace_seconds=100, grace_cycles=2, max_count=10, max_fraction=0.5, max_shrink=0.5)


def test_grace_in_time_and_cycles() -> None:
    absent = {1: (0.0, 5), 2: (950.0, 5), 3: (0.0, 1)}
    d = decide_prune(absent, known=100, now=1000.0, guards=G)
    assert d.delete == [1]  # 2 is too recent, 3 has too few cycles
    assert d.waiting == 2 and d.capped == 0 and d.blocked is None


def test_cap_by_count_and_fraction_oldest_first() -> None:
    absent = {k: (float(k), 3) for k in range(20)}
    d = decide_prune(absent, known=100, now=1000.0, guards=G)
    assert d.delete == list(range(10)) and d.capped == 10
    d = decide_prune(absent, known=6, now=1000.0, guards=G)
    assert d.delete == [0, 1, 2] and d.capped == 17


def test_blocked_deletes_nothing() -> None:
    d = decide_prune({1: (0.0, 9)}, known=10, now=1e6, guards=G, blocked="no")
    assert d.delete == [] and d.blocked == "no" and d.waiting == 1


def test_source_guards() -> None:
    assert source_guard(10, 10, G, source_ok=False) == "the source failed this cycle"
    assert source_guard(0, 10, G) == "the source came back empty"
    reason = source_guard(4, 10, G)
    assert reason is not None and "shrank from 10 to 4" in reason and "SIGHUP" in reason
    assert source_guard(5, 10, G) is None
    assert source_guard(5, None, G) is None


@given(
    absent=st.dictionaries(
        st.integers(0, 1000), st.tuples(st.floats(0, 2000), st.integers(0, 5)), max_size=50
    ),
    known=st.integers(0, 200),
)
def test_never_more_than_caps_never_unripe(
    absent: dict[int, tuple[float, int]], known: int
) -> None:
    d = decide_prune(absent, known=known, now=1000.0, guards=G)
    assert len(d.delete) <= min(G.max_count, int(known * G.max_fraction))
    for key in d.delete:
        since, cycles = absent[key]
        assert 1000.0 - since >= G.grace_seconds and cycles >= G.grace_cycles
    assert len(set(d.delete)) == len(d.delete)


def test_sources_guard_names_the_source() -> None:
    from syncd.core.prune import sources_guard

    assert sources_guard({"a": (5, 5), "b": (3, None)}, {}, G) is None
    assert sources_guard({"a": (5, 5)}, {"b": "exit 3"}, G) == (
        "source 'b' failed this cycle (b: exit 3)"
    )
    two = sources_guard({}, {"b": "x", "c": "y"}, G)
    assert two == "sources 'b', 'c' failed this cycle (b: x; c: y)"
    assert sources_guard({"a": (0, 4)}, {}, G) == (
        "source 'a' came back empty; send SIGHUP (systemctl reload syncd) to accept an empty source"
    )
    assert sources_guard({"a": (0, None)}, {}, G) is not None  # never accepted empty
    assert sources_guard({"a": (0, 0)}, {}, G) is None  # SIGHUP accepted it
    reason = sources_guard({"a": (10, 10), "b": (4, 10)}, {}, G)
    assert reason is not None and reason.startswith("source 'b' shrank from 10 to 4 pairs")
