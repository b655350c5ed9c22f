"""Confirm hosts exist before sending pairs that name them (``sync.host_precheck``).

On an auth-enabled bk-cmdb a batch naming one host that does not exist is refused as a
whole (1199045 ``host N has no relations``); reacting costs one extra request per stale
host (``syncd.core.isolate``). Asking ``list_hosts_without_biz`` first costs one request per
1000 host ids not yet confirmed, and pairs naming a missing host are held back without
being sent. Confirmed hosts are trusted for ``sync.key_cache_ttl`` seconds, like
resolved natural keys, and forgotten on SIGHUP; a missing host is asked again each
time its pairs are due. A host deleted between the check and the send is still caught
by reacting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence

from syncd.cmdb.apis import HOST_PAGE_LIMIT
from syncd.cmdb.client import CmdbClient, CmdbError
from syncd.core.details import IndexKind
from syncd.core.outcome import BatchOutcome, FailedPair, LogLine, pair_fields
from syncd.core.refusal import INT64_MAX
from syncd.support.tasks import together

HOST = "host"
CHECKED_BY = "list_hosts_without_biz"


class HostCheck:
    """Which host ids exist, asked in bulk and cached for ``ttl`` seconds."""

    def __init__(
        self, client: CmdbClient, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = client
        self.ttl = ttl
        self.clock = clock
        self._confirmed: dict[int, float] = {}
        self._ahead: list[tuple[set[int], asyncio.Task[set[int]]]] = []

    def forget(self) -> None:
        self._confirmed.clear()

    def ask_ahead(self, host_ids: Iterable[int]) -> None:
        """Start asking about these ids now; :meth:`missing` over them waits for that
        answer instead of asking again (so the check overlaps what runs meanwhile)."""
        ids = set(host_ids)
        task = asyncio.ensure_future(self._ask(ids))
        task.add_done_callback(_retrieved)  # awaited by missing(), or by nobody
        self._ahead.append((ids, task))

    async def missing(self, host_ids: Iterable[int]) -> set[int]:
        """The ids among ``host_ids`` the CMDB does not have. Raises CmdbError.

        Ids that can never be valid (<= 0, beyond int64) are left to the CMDB's own
        refusal, which names them ``invalid_id``.
        """
        wanted = set(host_ids)
        gone: set[int] = set()
        ahead = [entry for entry in self._ahead if not entry[0].isdisjoint(wanted)]
        self._ahead = [entry for entry in self._ahead if entry[0].isdisjoint(wanted)]
        for ids, task in ahead:
            try:
                gone |= await task & wanted
            except CmdbError:
                continue  # asked again below
            wanted -= ids
        return gone | await self._ask(wanted) if wanted else gone

    async def _ask(self, host_ids: Iterable[int]) -> set[int]:
        now = self.clock()
        unconfirmed = {
            i
            for i in host_ids
            if 0 < i <= INT64_MAX and self._confirmed.get(i, float("-inf")) <= now
        }
        if not unconfirmed:
            return set()
        wanted = sorted(unconfirmed)
        chunks = [wanted[i : i + HOST_PAGE_LIMIT] for i in range(0, len(wanted), HOST_PAGE_LIMIT)]
        # Pages at once (the client's concurrency and rate limit apply), not one by one.
        found: set[int] = set().union(
            *await together(*(self.client.existing_hosts(chunk) for chunk in chunks))
        )
        expires = now + self.ttl
        for host_id in found:
            self._confirmed[host_id] = expires
        return unconfirmed - found


def _retrieved(task: asyncio.Task[set[int]]) -> None:
    """Mark an ask-ahead's outcome seen: nobody may come for it (the relation failed)."""
    if not task.cancelled():
        task.exception()


def host_sides(bk_obj_id: str, bk_asst_obj_id: str) -> tuple[bool, bool]:
    """Which sides of a relation are hosts."""
    return (bk_obj_id == HOST, bk_asst_obj_id == HOST)


def split_stale(
    details: Sequence[tuple[int, int]], missing: set[int], sides: tuple[bool, bool]
) -> tuple[list[tuple[int, int]], list[tuple[int, int, IndexKind]]]:
    """(details to send, details naming a missing host with their reason). Pure."""
    keep: list[tuple[int, int]] = []
    stale: list[tuple[int, int, IndexKind]] = []
    for src, dst in details:
        if sides[0] and src in missing:
            stale.append((src, dst, IndexKind.MISSING_SOURCE))
        elif sides[1] and dst in missing:
            stale.append((src, dst, IndexKind.MISSING_TARGET))
        else:
            keep.append((src, dst))
    return keep, stale


def stale_outcome(stale: Sequence[tuple[int, int, IndexKind]]) -> BatchOutcome:
    """Pairs held back by the pre-check: failed like a per-index miss, one line each. Pure."""
    failed: list[FailedPair] = []
    lines: list[LogLine] = []
    for index, (src, dst, kind) in enumerate(stale):
        host = src if kind is IndexKind.MISSING_SOURCE else dst
        error = f"host {host} does not exist ({CHECKED_BY}); not sent"
        failed.append(FailedPair(src, dst, kind, error))
        fields = pair_fields(
            "failed",
            "create",
            index,
            src,
            dst,
            error=error,
            reason=kind.value,
            checked_by=CHECKED_BY,
        )
        lines.append(("warning", fields))
    return BatchOutcome([], [], failed, lines)
