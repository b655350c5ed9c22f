"""Settle one batch create even when the CMDB refuses it as a whole.

A refused batch is about one of three things (``syncd.core.refusal``): details it names
(fail those, send the rest again at once as a new request), the relation (stop,
never bisect), or a detail it does not name (bisect: send halves until each poison
detail stands alone and is failed with the CMDB's words; healthy halves get their
per-index answers). Requests beyond the batch's first are *isolation requests*:
they are bounded per batch by the bisection (at most ``2*k*ceil(log2 n)`` for k
poison details in n) and per cycle by a shared ``IsolationBudget``; what the budget
cannot pay for is ``deferred`` to the next cycle.

The controller does no I/O itself: ``send`` is injected (the engine passes a closure
over ``CmdbClient.batch_create``, so isolation requests go through the same rate
limit, concurrency cap and retries). Requests are sent one after another so each
answer can decide what the next request is. Every detail is decided exactly once,
under the request (``Exchange``) that decided it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from syncd.core.answer import Answer, Verdict
from syncd.core.details import BadAnswer, IndexKind, split_batch_data
from syncd.core.outcome import BatchOutcome, DetailRows, LogLine, RequestLines
from syncd.core.refusal import Refusal, Scope, read_refusal

Detail = tuple[int, int]
"""(bk_inst_id, bk_asst_inst_id)"""

Send = Callable[[Sequence[Detail]], Awaitable[Answer]]
"""One batch_create_instance_association request, retried by the client as usual."""

DEFAULT_CYCLE_BUDGET = 1000
"""Isolation requests per cycle, all relations together: 60 batches' worth of one
poison detail each (2*ceil(log2 200) = 16 requests), or 1000 stale hosts named by
the CMDB (one request each)."""

UNIFORM_LIMIT = 8
"""Unnamed refusals repeated word for word by this many details sent alone, with no
request of the batch accepted, are about the request, not a detail: stop bisecting."""


def isolation_bound(poison: int, size: int) -> int:
    """The most isolation requests one batch of ``size`` with ``poison`` bad details costs."""
    return 2 * poison * max(1, math.ceil(math.log2(max(size, 2))))


class IsolationBudget:
    """Isolation requests left this cycle, shared by every batch of every relation."""

    def __init__(self, limit: int = DEFAULT_CYCLE_BUDGET) -> None:
        if limit < 0:
            raise ValueError(f"isolation budget must be >= 0, got {limit}")
        self.limit = limit
        self.spent = 0

    @property
    def left(self) -> int:
        return self.limit - self.spent

    def take(self) -> bool:
        """Pay for one isolation request; False when the cycle's budget is spent."""
        if self.spent >= self.limit:
            return False
        self.spent += 1
        return True


class Settled(StrEnum):
    """How a detail was decided."""

    ANSWERED = "answered"
    """The CMDB answered for it, per index or by naming it: see ``kind``."""
    REQUEST = "request"
    """Its request failed as a whole (busy, timeout, relation refused): retry next cycle."""
    DEFERRED = "deferred"
    """The cycle's isolation budget was spent before it could be decided: next cycle."""


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request of an isolation: what was sent and what came back."""

    batch: int
    indexes: tuple[int, ...]
    """Positions in the original batch, in the order sent (the CMDB's index = position here)."""
    answer: Answer
    extra: bool
    """An isolation request (not the batch's first)."""


@dataclass(frozen=True, slots=True)
class DetailOutcome:
    index: int
    """Position in the original batch."""
    settled: Settled
    kind: IndexKind | None = None
    association_id: int | None = None
    message: str = ""
    exchange: Exchange | None = None
    """The request that decided it; None for DEFERRED."""
    position: int | None = None
    """Its index within ``exchange``'s details."""

    @property
    def reason(self) -> str:
        """The ``reason`` of a failed detail's log line and state row."""
        return self.kind.value if self.kind is not None else self.settled.value


@dataclass(slots=True)
class Isolation:
    """What became of one batch."""

    outcomes: list[DetailOutcome]
    """One per detail, in batch order."""
    exchanges: list[Exchange] = field(default_factory=list)
    refusal: Refusal | None = None
    """A relation-level refusal met on the way (``fix`` says what to change)."""
    refused_by: Exchange | None = None

    @property
    def extra_requests(self) -> int:
        return sum(1 for ex in self.exchanges if ex.extra)

    @property
    def deferred(self) -> list[DetailOutcome]:
        """Not decided this cycle (budget spent, or told to stop): send them next cycle."""
        return [o for o in self.outcomes if o.settled is Settled.DEFERRED]

    def decided_by(self) -> list[tuple[Exchange, list[DetailOutcome]]]:
        """Each request with the details it decided, by position: one group of log lines
        (``batch`` = ``exchange.batch``, ``index`` = ``outcome.position``) per request."""
        groups: dict[int, list[DetailOutcome]] = {ex.batch: [] for ex in self.exchanges}
        for outcome in self.outcomes:
            if outcome.exchange is not None:
                groups[outcome.exchange.batch].append(outcome)
        return [
            (ex, sorted(groups[ex.batch], key=lambda o: o.position or 0))
            for ex in self.exchanges
            if groups[ex.batch]
        ]


async def settle_batch(
    details: Sequence[Detail],
    send: Send,
    *,
    looked_up: tuple[bool, bool] = (True, True),
    budget: IsolationBudget | None = None,
    batch_ids: Iterator[int] | None = None,
    stop: Callable[[], bool] | None = None,
    uniform_limit: int = UNIFORM_LIMIT,
) -> Isolation:
    """Send ``details`` as one request and settle each of them, isolating what is refused.

    ``looked_up`` comes from ``syncd.core.refusal.looked_up_sides`` for the relation;
    ``batch_ids`` numbers every request (the engine's batch counter); ``stop`` is asked
    before each isolation request (shutdown, or the relation refused by another
    batch): when it says so, what is undecided is deferred.
    """
    if not details:
        raise ValueError("settle_batch needs at least one detail")
    run = _Run(
        list(details),
        send,
        looked_up,
        budget if budget is not None else IsolationBudget(),
        batch_ids if batch_ids is not None else itertools.count(1),
        stop if stop is not None else _never,
        uniform_limit,
    )
    await run.settle(list(range(len(details))), extra=False)
    outcomes = [run.decided[i] for i in range(len(details))]
    return Isolation(outcomes, run.exchanges, run.refusal, run.refused_by)


def _never() -> bool:
    return False


class _Run:
    def __init__(
        self,
        details: list[Detail],
        send: Send,
        looked_up: tuple[bool, bool],
        budget: IsolationBudget,
        batch_ids: Iterator[int],
        stop: Callable[[], bool],
        uniform_limit: int,
    ) -> None:
        self.details = details
        self.send = send
        self.looked_up = looked_up
        self.budget = budget
        self.batch_ids = batch_ids
        self.stop = stop
        self.uniform_limit = uniform_limit
        self.decided: dict[int, DetailOutcome] = {}
        self.exchanges: list[Exchange] = []
        self.refusal: Refusal | None = None
        self.refused_by: Exchange | None = None
        self.accepted = False
        self.unnamed_words: tuple[int | None, str] | None = None
        self.uniform_singletons = 0

    def decide(self, outcome: DetailOutcome) -> None:
        if outcome.index in self.decided:
            raise AssertionError(f"detail {outcome.index} decided twice")
        self.decided[outcome.index] = outcome

    def fail_whole(self, indexes: list[int], ex: Exchange, message: str) -> None:
        for position, index in enumerate(indexes):
            self.decide(DetailOutcome(index, Settled.REQUEST, None, None, message, ex, position))

    async def settle(self, indexes: list[int], *, extra: bool) -> bool:
        """Send ``indexes`` as one request and decide them; True when answered per index."""
        if self.refused_by is not None:
            # The relation was refused: nothing more is sent; they fail with its words.
            self.fail_whole(indexes, self.refused_by, self.refused_by.answer.error)
            return False
        if extra and ((stopped := self.stop()) or not self.budget.take()):
            why = "isolation stopped" if stopped else "isolation budget spent"
            for index in indexes:
                self.decide(DetailOutcome(index, Settled.DEFERRED, message=why))
            return False
        ex = Exchange(next(self.batch_ids), tuple(indexes), await self._send(indexes), extra)
        self.exchanges.append(ex)
        answer = ex.answer
        if answer.verdict is Verdict.OK:
            try:
                results = split_batch_data(answer.data, len(indexes))
            except BadAnswer as exc:
                self.fail_whole(indexes, ex, f"syncd: {exc}")
                return False
            self.accepted = True
            for res in results:
                self.decide(
                    DetailOutcome(
                        indexes[res.index],
                        Settled.ANSWERED,
                        res.kind,
                        res.association_id,
                        res.message,
                        ex,
                        res.index,
                    )
                )
            return True
        refusal = read_refusal(answer, [self.details[i] for i in indexes], self.looked_up)
        if refusal.scope is Scope.RELATION:
            self.refusal, self.refused_by = refusal, ex
            self.fail_whole(indexes, ex, answer.error)
        elif refusal.scope is Scope.REQUEST:
            self.fail_whole(indexes, ex, answer.error)
        elif refusal.scope is Scope.DETAILS:
            for position, kind in refusal.named.items():
                self.decide(
                    DetailOutcome(
                        indexes[position], Settled.ANSWERED, kind, None, answer.error, ex, position
                    )
                )
            rest = [index for pos, index in enumerate(indexes) if pos not in refusal.named]
            if rest:
                await self.settle(rest, extra=True)
        else:
            await self.bisect(indexes, ex)
        return False

    async def bisect(self, indexes: list[int], ex: Exchange) -> None:
        """``indexes`` were refused together, naming nothing: find the poison."""
        answer = ex.answer
        if len(indexes) == 1:
            # Only reached for a detail refused under its own request (see below).
            self.decide(
                DetailOutcome(
                    indexes[0], Settled.ANSWERED, IndexKind.OTHER, None, answer.error, ex, 0
                )
            )
            self._note_singleton(answer, ex)
            return
        if self.unnamed_words is None:
            self.unnamed_words = (answer.code, answer.message)
        half = (len(indexes) + 1) // 2
        first, second = indexes[:half], indexes[half:]
        first_ok = await self.settle(first, extra=True)
        if first_ok and len(second) > 1 and self.refused_by is None:
            # The whole was refused and its first half was not: the poison is in the
            # second half, so split it without sending it whole.
            await self.bisect(second, ex)
        else:
            await self.settle(second, extra=True)

    def _note_singleton(self, answer: Answer, ex: Exchange) -> None:
        if self.accepted or (answer.code, answer.message) != self.unnamed_words:
            return
        self.uniform_singletons += 1
        if self.uniform_singletons >= self.uniform_limit:
            self.refusal = Refusal(
                Scope.RELATION,
                fix=(
                    f"{self.uniform_singletons} details sent alone were refused with the "
                    "same words and none was accepted: the refusal is about the request, "
                    "not a detail; check the relation's model ids and the CMDB's logs"
                ),
            )
            self.refused_by = ex

    async def _send(self, indexes: list[int]) -> Answer:
        return await self.send([self.details[i] for i in indexes])


def batch_outcome(
    details: Sequence[Detail], iso: Isolation, *, verbose: bool = True
) -> BatchOutcome:
    """The rows and lines of a settled batch: each detail once, its ``pair`` line under
    the request that decided it (``index`` = its position in that request). Pure.

    ``verbose`` False leaves out the info lines of created and existing pairs.
    """
    rows = DetailRows()
    deferred: list[tuple[int, int]] = []
    lines: dict[int, list[LogLine]] = {ex.batch: [] for ex in iso.exchanges}
    for outcome in iso.outcomes:
        src, dst = details[outcome.index]
        if outcome.settled is Settled.DEFERRED or outcome.exchange is None:
            deferred.append((src, dst))
            continue
        kind = outcome.kind if outcome.settled is Settled.ANSWERED else None
        refused = outcome.exchange.answer.verdict is not Verdict.OK
        rows.add(
            lines[outcome.exchange.batch],
            outcome.position,
            src,
            dst,
            kind,
            outcome.association_id,
            outcome.message,
            verbose,
            isolated=refused and kind is not None,
        )
    requests = [
        RequestLines(ex.answer.request_id, sorted(lines[ex.batch], key=_line_index))
        for ex in iso.exchanges
    ]
    refusal = None
    answer = iso.exchanges[0].answer if iso.exchanges else None
    if iso.refusal is not None and iso.refused_by is not None:
        answer = replace(iso.refused_by.answer, hint=iso.refusal.fix)
        refusal = f"{answer.error}; {iso.refusal.fix}"
    return BatchOutcome(
        rows.created,
        rows.exists,
        rows.failed,
        [line for group in requests for line in group.lines],
        refusal,
        answer,
        requests,
        deferred,
        iso.extra_requests,
    )


def _line_index(line: LogLine) -> int:
    index = line[1].get("index")
    return index if isinstance(index, int) else 0
