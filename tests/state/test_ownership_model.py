"""Pruning never deletes a foreign pair: random interleavings of syncd's creates (answered,
ambiguous, killed mid-request), a foreign client's creates, relists, watch events, prunes
and the passing of time, against a CMDB modelled as "who created each pair".

syncd's side is the real thing from the answer on: ``classify_batch`` turns each
(possibly retried) answer into an outcome, and the real state store records it. Its one
assumption is the rule's own bound. When syncd's create of a pair ends ambiguously,
nobody can tell whether syncd or another client made the pair if the other client made
it just before (the pair unknown to syncd yet) or within ``RECLAIM_WINDOW`` after: the
model does not generate those interleavings (a create of a pair someone else holds
ends with an answer; the foreign client leaves a pair alone in the window).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from syncd.core.answer import Answer, Verdict
from syncd.core.outcome import BatchOutcome, classify_batch
from syncd.core.pairs import pack, unpack
from syncd.state import Failed, StateStore
from syncd.state.attempts import RECLAIM_WINDOW

R = "r"
SYNCD, FOREIGN = "syncd", "foreign"
pair_st = st.tuples(st.integers(1, 3), st.integers(1, 3))
pairs_st = st.lists(pair_st, min_size=1, max_size=4, unique=True)
ENDS = ["answered", "retried", "ambiguous", "killed"]


class Ownership(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="syncd-own-"))
        self.store, _ = StateStore.open(self.dir / "state.db")
        self.cmdb: dict[tuple[int, int], tuple[str, int]] = {}
        """pair -> (who created it, association id)"""
        self.ids = iter(range(1, 10**6))
        self.unsure: dict[tuple[int, int], float] = {}
        """pair -> when syncd's create of it last ended ambiguously"""
        self.now = 1000.0

    # -- the CMDB ----------------------------------------------------------------

    def create(self, pair: tuple[int, int], who: str) -> tuple[bool, int]:
        """(created now, its id); a pair already there answers "exists"."""
        if pair in self.cmdb:
            return False, self.cmdb[pair][1]
        self.cmdb[pair] = (who, next(self.ids))
        return True, self.cmdb[pair][1]

    def answer(self, details: list[tuple[int, int]], *, after_ambiguous: bool) -> Answer:
        created: dict[str, int] = {}
        errors: dict[str, str] = {}
        for i, pair in enumerate(details):
            made, assoc = self.create(pair, SYNCD)
            if made:
                created[str(i)] = assoc
            else:
                errors[str(i)] = "the association already exist"
        data = {"success_created": created, "error_msg": errors}
        return Answer(Verdict.OK, 200, 0, "", data, after_ambiguous=after_ambiguous)

    # -- syncd -------------------------------------------------------------------

    def record(self, outcome: BatchOutcome, attempt: int) -> None:
        failed = [Failed(f.src, f.dst, f.reason, f.message, self.now) for f in outcome.failed]
        self.store.record_answer(
            R,
            created=outcome.created,
            exists=outcome.exists,
            failed=failed,
            attempt=attempt,
            unanswered=outcome.unanswered(),
            reclaim=outcome.reclaim,
            now=self.now,
        )

    @rule(pairs=pairs_st, end=st.sampled_from(ENDS), acted=st.booleans())
    def syncd_sends(self, pairs: list[tuple[int, int]], end: str, acted: bool) -> None:
        known = self.store.known_keys(R)
        details = [p for p in pairs if pack(*p) not in known]  # what the diff would send
        if not details:
            return
        if any(self.cmdb.get(p, (SYNCD,))[0] == FOREIGN for p in details):
            end = "answered"  # ambiguous, this would be the rule's blind spot (see above)
        attempt = self.store.attempts.intend(R, details, self.now)
        if end == "answered":
            self.record(
                classify_batch(details, self.answer(details, after_ambiguous=False)), attempt
            )
        elif end == "retried":  # the first try timed out (having acted or not), the retry answered
            if acted:
                for pair in details:
                    self.create(pair, SYNCD)
            answer = self.answer(details, after_ambiguous=True)
            self.record(classify_batch(details, answer), attempt)
        elif end == "ambiguous":  # every try timed out
            for pair in details if acted else ():
                self.create(pair, SYNCD)
            answer = Answer(Verdict.AMBIGUOUS, 504, None, "gateway timeout")
            self.record(classify_batch(details, answer), attempt)
            self.unsure.update(dict.fromkeys(details, self.now))
        else:  # SIGKILL mid-request: nothing recorded, a new process next
            for pair in details if acted else ():
                self.create(pair, SYNCD)
            self.unsure.update(dict.fromkeys(details, self.now))
            self.store.close()
            self.store, _ = StateStore.open(self.dir / "state.db")
            return
        self.store.attempts.release(attempt)

    @rule(pair=pair_st)
    def foreign_creates(self, pair: tuple[int, int]) -> None:
        since = self.unsure.get(pair)
        if since is not None and self.now - since <= RECLAIM_WINDOW:
            return  # indistinguishable from syncd's own create: the rule's bound
        self.create(pair, FOREIGN)

    @rule()
    def relist(self) -> None:
        rows = [(s, d, assoc) for (s, d), (_, assoc) in self.cmdb.items()]
        self.store.resync.replace_from_cmdb(R, rows, now=self.now)

    @rule(pair=pair_st)
    def watch_sees_a_create(self, pair: tuple[int, int]) -> None:
        if pair in self.cmdb:
            self.store.record_answer(R, exists=[(*pair, self.cmdb[pair][1])], now=self.now)

    @rule()
    def prune(self) -> None:
        """Delete every owned pair (the guards and grace are not what is tested here)."""
        owned = self.store.owned_keys(R)
        for key in owned:
            pair = unpack(key)
            assert self.cmdb.get(pair, (SYNCD, 0))[0] == SYNCD, f"would delete foreign {pair}"
            self.cmdb.pop(pair, None)
        self.store.remove(R, owned)

    @rule(seconds=st.sampled_from([1.0, 60.0, RECLAIM_WINDOW / 2, RECLAIM_WINDOW + 1]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @invariant()
    def owned_pairs_are_syncds(self) -> None:
        for key in self.store.owned_keys(R):
            pair = unpack(key)
            assert self.cmdb.get(pair, (SYNCD, 0))[0] == SYNCD, f"foreign {pair} is owned"

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


Ownership.TestCase.settings = settings(max_examples=40, stateful_step_count=20, deadline=None)
test_pruning_never_deletes_a_foreign_pair = Ownership.TestCase
