"""The send step: one batch of details in, one outcome per detail out.

:data:`SendBatch` is the seam between the applier and the CMDB. :func:`send_batch` is
the plain form (one request, its answer classified); :class:`SettleBatch` is the
default, which also settles a batch the CMDB refuses as a whole. A batch answered per
index never touches the isolation machinery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from syncd.cmdb.client import CmdbClient
from syncd.config.settings import RelationSettings
from syncd.core.answer import Answer, Verdict
from syncd.core.isolate import Detail, IsolationBudget, batch_outcome, settle_batch
from syncd.core.outcome import BatchOutcome, classify_batch
from syncd.core.refusal import looked_up_sides
from syncd.support.log import wants

Details = list[tuple[int, int]]
SendBatch = Callable[[CmdbClient, RelationSettings, Details], Awaitable[BatchOutcome]]
"""The send step: (client, relation, details) -> an outcome for every detail."""


async def send_batch(client: CmdbClient, rel: RelationSettings, details: Details) -> BatchOutcome:
    """One batch_create request, its answer classified."""
    answer = await client.batch_create(
        rel.bk_obj_id, rel.bk_asst_obj_id, rel.bk_obj_asst_id, details
    )
    return classify_batch(details, answer, verbose=wants("info"))


class SettleBatch:
    """The default send step: a batch answered per index is classified at once; one the
    CMDB refuses as a whole is settled by ``syncd.core.isolate.settle_batch``.

    A batch the CMDB refuses as a whole is not lost: details the refusal names fail,
    the rest is sent again; an unnamed parameter refusal is bisected within the
    cycle's :class:`IsolationBudget` (shared by every relation); a relation-level
    refusal stops the relation's other isolations too. Isolation requests go through
    the same client (rate limit, concurrency, retries).
    """

    def __init__(self, budget: int, closed: asyncio.Event) -> None:
        self.limit = budget
        self.closed = closed
        self.budget = IsolationBudget(budget)
        self.refused: set[str] = set()

    def begin_cycle(self) -> None:
        """A new cycle: a full budget, no relation refused yet."""
        self.budget = IsolationBudget(self.limit)
        self.refused = set()

    async def __call__(
        self, client: CmdbClient, rel: RelationSettings, details: Details
    ) -> BatchOutcome:
        reclaim: set[Detail] = set()

        async def send(chunk: Sequence[Detail]) -> Answer:
            answer = await client.batch_create(
                rel.bk_obj_id, rel.bk_asst_obj_id, rel.bk_obj_asst_id, list(chunk)
            )
            if answer.may_have_acted:
                reclaim.update(chunk)
            return answer

        answer = await send(details)
        if answer.verdict is Verdict.OK:
            # Answered per index (the common case): no isolation machinery.
            return classify_batch(details, answer, verbose=wants("info"))
        first: Answer | None = answer

        async def resend(chunk: Sequence[Detail]) -> Answer:
            nonlocal first
            if first is not None:  # the batch's own request, answered above
                answer, first = first, None
                return answer
            return await send(chunk)

        def stop() -> bool:
            return self.closed.is_set() or rel.name in self.refused

        settled = await settle_batch(
            details,
            resend,
            looked_up=looked_up_sides(rel.bk_obj_id, rel.bk_asst_obj_id),
            budget=self.budget,
            stop=stop,
        )
        if settled.refusal is not None:
            self.refused.add(rel.name)
        outcome = batch_outcome(details, settled, verbose=wants("info"))
        return replace(outcome, reclaim=frozenset(reclaim)) if reclaim else outcome
