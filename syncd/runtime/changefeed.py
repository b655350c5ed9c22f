"""Pushed changes, applied in small groups as they come, retried until something covers them.

A webhook hands its :class:`~syncd.engine.change.Change` to :meth:`ChangeFeed.push`, which
merges it into each fed relation's pending change and wakes the feed. The feed waits
``gather`` seconds for companions (NetBox sends a cable, then its two ends, within a few
milliseconds), then applies at most ``group_max`` cables and devices per relation and
comes straight back for what arrived meanwhile: a burst is applied as it comes, never
held back until it ends, and no group is larger than the bound.

When an apply cannot be sure (no full read yet, a NetBox read or a CMDB request failed)
the relation wants a full read: one is asked for at once, and again with backoff
(``retry_base`` doubling up to ``retry_cap``) after every cycle that fails it, until a
cycle that began after the last such change succeeds. Until then readiness says so. The
apply itself goes through one seam, ``apply(relation, change) -> bool``, so this plugs
into whatever schedules the daemon's work.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass

import structlog

from syncd.engine.change import Change

log = structlog.get_logger("syncd.push")

ApplyChange = Callable[[str, Change], Awaitable[bool]]
"""(relation, change) -> True when applied, False when only a full read can tell."""
RequestCycle = Callable[[str, Collection[str]], None]


@dataclass
class _Wanted:
    since: float
    """The last change a full read must have started after to cover."""
    attempt: int = 0
    reason: str = ""
    timer: asyncio.TimerHandle | None = None


def take(change: Change, limit: int) -> tuple[Change, Change]:
    """At most ``limit`` of ``change`` (cables first, in order), and the rest."""
    cables = sorted(change.cables)
    devices = sorted(change.devices)
    head_c = cables[:limit]
    head_d = devices[: max(0, limit - len(head_c))]
    head = Change(frozenset(head_c), frozenset(head_d))
    rest = Change(frozenset(cables[len(head_c) :]), frozenset(devices[len(head_d) :]))
    return head, rest


class ChangeFeed:
    """One pushing source's changes for the relations it feeds."""

    def __init__(
        self,
        relations: list[str],
        apply: ApplyChange,
        request_cycle: RequestCycle,
        *,
        gather: float = 0.05,
        group_max: int = 100,
        retry_base: float = 1.0,
        retry_cap: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.relations = relations
        self.apply = apply
        self.request_cycle = request_cycle
        self.gather = gather
        self.group_max = group_max
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.clock = clock
        self.pending: dict[str, Change] = {}
        self.wanted: dict[str, _Wanted] = {}
        self.groups = 0
        self._wake = asyncio.Event()

    # -- in --------------------------------------------------------------------------------

    def push(self, change: Change | None, reason: str) -> str:
        """Take one delivery's change (None: only a full read can tell); says what becomes
        of it: ``applied`` (queued), ``full_read`` or ``ignored`` (it names nothing)."""
        if change is None:
            for name in self.relations:
                self.want_full(name, reason)
            return "full_read"
        if change.size == 0:
            return "ignored"
        for name in self.relations:
            if name in self.wanted:
                self.want_full(name, reason)  # a full read after now covers it
            else:
                self.pending[name] = self.pending.get(name, Change()) | change
        self._wake.set()
        return "applied"

    def want_full(self, name: str, reason: str) -> None:
        """Ask for a full read of ``name`` now; it is asked again until one succeeds."""
        wanted = self.wanted.get(name)
        if wanted is None:
            wanted = self.wanted[name] = _Wanted(self.clock())
        wanted.since, wanted.reason = self.clock(), reason
        self.pending.pop(name, None)
        self.request_cycle(f"netbox webhook: {reason}", [name])

    # -- the applying loop ---------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not self.pending:
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                if stop.is_set():
                    return
                if self.gather:
                    await asyncio.sleep(self.gather)
            await self.apply_group()

    async def apply_group(self) -> None:
        """Apply one group per relation with something pending (relations side by side)."""
        groups: dict[str, Change] = {}
        for name, change in list(self.pending.items()):
            head, rest = take(change, self.group_max)
            groups[name] = head
            if rest.size:
                self.pending[name] = rest
            else:
                del self.pending[name]
        if not groups:
            return
        self.groups += 1
        results = await asyncio.gather(
            *(self._apply_one(name, group) for name, group in groups.items())
        )
        for name, ok in zip(groups, results, strict=True):
            if not ok:
                self.want_full(name, "a pushed change could not be applied on its own")

    async def _apply_one(self, name: str, change: Change) -> bool:
        try:
            return await self.apply(name, change)
        except Exception as exc:  # the feed must outlive a bug in one apply
            log.error("change_apply_crashed", relation=name, error=repr(exc))
            return False

    # -- covered by a full read ----------------------------------------------------------

    def cycle_finished(self, outcomes: Mapping[str, bool], started: float) -> None:
        """A cycle that began at ``started`` (this feed's clock) ran these relations with
        these results: a success after the last change covers it; a failure retries."""
        for name, ok in outcomes.items():
            wanted = self.wanted.get(name)
            if wanted is None:
                continue
            if ok and started >= wanted.since:
                if wanted.timer is not None:
                    wanted.timer.cancel()
                del self.wanted[name]
                log.info("push_covered", relation=name, attempts=wanted.attempt + 1)
            elif not ok:
                self._retry_later(name, wanted)

    def _retry_later(self, name: str, wanted: _Wanted) -> None:
        if wanted.timer is not None:
            wanted.timer.cancel()
        wanted.attempt += 1
        delay = min(self.retry_cap, self.retry_base * 2 ** (wanted.attempt - 1))
        log.info("push_retry", relation=name, attempt=wanted.attempt, delay=delay)
        loop = asyncio.get_running_loop()
        wanted.timer = loop.call_later(
            delay, self.request_cycle, f"retry {wanted.attempt} of a pushed change", [name]
        )

    def not_ready(self) -> str | None:
        """Readiness: the relations whose pushed changes are not in the CMDB yet."""
        if not self.wanted:
            return None
        names = ", ".join(sorted(self.wanted))
        tries = max(w.attempt for w in self.wanted.values())
        return f"pushed changes of {names} wait for a full read ({tries} retries so far)"

    def close(self) -> None:
        for wanted in self.wanted.values():
            if wanted.timer is not None:
                wanted.timer.cancel()
