"""The store against a model made of Python sets: any sequence of writes, reopens included."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from syncd.core.pairs import PairKey, pack
from syncd.state import Created, Failed, Seen, StateStore
from tests.state.inspect_db import failures

R = "r"
pairs_st = st.frozensets(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=8)


class StoreModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="syncd-model-"))
        self.store, _ = StateStore.open(self.dir / "state.db")
        self.known: set[PairKey] = set()
        self.owned: set[PairKey] = set()
        self.failed: set[PairKey] = set()
        self.now = 0.0

    def tick(self) -> float:
        self.now += 1.0
        return self.now

    @rule(pairs=pairs_st)
    def created(self, pairs: frozenset[tuple[int, int]]) -> None:
        rows = [Created(s, d, 1 + s * 10 + d) for s, d in pairs]
        self.store.record_answer(R, created=rows, now=self.tick())
        keys = {pack(s, d) for s, d in pairs}
        self.known |= keys
        self.owned |= keys
        self.failed -= keys

    @rule(pairs=pairs_st)
    def exists(self, pairs: frozenset[tuple[int, int]]) -> None:
        self.store.record_answer(R, exists=[Seen(s, d, None) for s, d in pairs], now=self.tick())
        keys = {pack(s, d) for s, d in pairs}
        self.known |= keys
        self.failed -= keys

    @rule(pairs=pairs_st, held=st.booleans())
    def refused(self, pairs: frozenset[tuple[int, int]], held: bool) -> None:
        now = self.tick()
        rows = [Failed(s, d, "other", "no", None if held else now) for s, d in pairs]
        self.store.record_answer(R, failed=rows, now=now)
        self.failed |= {pack(s, d) for s, d in pairs}

    @rule(pairs=pairs_st)
    def deleted(self, pairs: frozenset[tuple[int, int]]) -> None:
        keys = {pack(s, d) for s, d in pairs}
        self.store.remove(R, keys)
        self.known -= keys
        self.owned -= keys

    @rule(pairs=pairs_st, finish=st.booleans())
    def resync(self, pairs: frozenset[tuple[int, int]], finish: bool) -> None:
        self.store.resync.begin(R)
        self.store.resync.stage(R, [(s, d, 1 + s * 10 + d) for s, d in pairs])
        if not finish:
            self.store.resync.abort(R)
            return
        self.store.resync.finish(R, self.tick())
        keys = {pack(s, d) for s, d in pairs}
        self.known = set(keys)
        self.owned &= keys
        self.failed -= keys

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store, warning = StateStore.open(self.dir / "state.db")
        assert warning is None

    @invariant()
    def matches_the_model(self) -> None:
        assert self.store.known_keys(R) == self.known
        assert self.store.count(R) == len(self.known)
        assert self.store.owned_keys(R) == self.owned
        assert {f.key for f in failures(self.store, R)} == self.failed
        held = self.store.held_back(R, self.now + 0.5)
        assert set(held) <= self.failed

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


StoreModel.TestCase.settings = settings(max_examples=40, stateful_step_count=20, deadline=None)
test_store_matches_a_set_model = StoreModel.TestCase
