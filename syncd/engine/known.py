"""The known state: which pairs are in the CMDB, in memory and in the state store.

The in-memory mirror (a set of PairKeys per relation, for set arithmetic at C
speed) and the store change together, here and nowhere else. Known state comes
from three places: memory, the state file after a restart, or the CMDB itself
(a resync, the first time and on SIGHUP).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Coroutine, Iterable, Iterator
from typing import Any, Protocol, TypeVar

import structlog

from syncd.cmdb.apis import PAGE_LIMIT
from syncd.cmdb.client import CmdbClient, CmdbError
from syncd.config.settings import RelationSettings
from syncd.core.batching import Mapping
from syncd.core.diff import Sides, known_beside
from syncd.core.outcome import BatchOutcome
from syncd.core.pairs import PairKey, from_hex, pack, unpack
from syncd.state import Failed, Held, Seen, StateStore
from syncd.support.tasks import nothing, together

log = structlog.get_logger("syncd")

SENDING_MAX_AGE = 300.0
"""Seconds a create may be awaited at most; an older one (its answer never recorded,
e.g. cancelled at shutdown) no longer counts as in flight."""


class HasPairs(Protocol):
    """A read of the desired state (:class:`syncd.engine.desired.Desired`)."""

    @property
    def pairs(self) -> set[PairKey]: ...


D = TypeVar("D", bound=HasPairs)


class RelationRefused(Exception):
    """The CMDB refused the relation as a whole (credentials, permission, model).

    Logged once, as ``relation_refused`` with ``fix``, however it was refused.
    """

    def __init__(
        self,
        error: str,
        fix: str,
        *,
        permission: object = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{error}; {fix}")
        self.error = error
        self.fix = fix
        self.permission = permission
        self.request_id = request_id


class ListObserver(Protocol):
    """Told when a relation's full list (resync) starts and ends (the informer's watch)."""

    def list_started(self, rel: RelationSettings) -> None: ...
    def list_finished(self, rel: RelationSettings, *, ok: bool) -> None: ...


class Known:
    """Known pairs per relation: the mirror, the store, and the CMDB reads behind them."""

    def __init__(self, client: CmdbClient, store: StateStore, clock: Callable[[], float]) -> None:
        self.client = client
        self.store = store
        self.clock = clock
        self._pairs: dict[str, set[PairKey]] = {}
        self._mapping: dict[str, Mapping] = {}
        self.lists: ListObserver | None = None
        self._sides: dict[str, Sides] = {}
        self._loading: dict[str, list[tuple[set[PairKey], list[PairKey]]]] = {}
        """Watch events that came while a relation's mirror was loading from the state, in
        order: the load may have read their rows before or after them, so they are applied
        again on top of what it read."""
        self._sending: dict[str, dict[int, tuple[Collection[PairKey], float]]] = {}
        """Creates sent and not answered yet, by attempt: their pairs and the monotonic time
        sent, in memory: the watch sees their events before the answer and must not call
        them drift."""

    def pairs(self, name: str) -> set[PairKey]:
        """The mirror (empty for a relation not observed yet)."""
        return self._pairs.get(name, set())

    def count(self, name: str) -> int:
        return len(self._pairs.get(name, ()))

    def stored_count(self, name: str) -> int:
        """The state's count (when the mirror was never loaded)."""
        return self.store.count(name)

    def association_ids(self, name: str, keys: Iterable[PairKey]) -> dict[PairKey, int | None]:
        """The stored association ids of ``keys`` (None: known, id not looked up yet)."""
        return self.store.association_ids(name, keys)

    def held_back(self, name: str, now: float) -> dict[PairKey, Held]:
        """Pairs whose last failure holds them back at ``now``."""
        return self.store.held_back(name, now)

    def mapping(self, name: str) -> Mapping:
        return self._mapping[name]

    # -- observing ------------------------------------------------------------

    async def observe(self, rel: RelationSettings, *, resync: bool) -> tuple[set[PairKey], bool]:
        """(known pairs, whether they were just read from the CMDB); loads the mapping too."""
        need_mapping = resync or rel.name not in self._mapping
        mapping = self.load_mapping(rel) if need_mapping else nothing()
        _, resynced = await together(mapping, self._load(rel, resync=resync))
        return self._pairs[rel.name], resynced

    async def observe_beside(
        self, rel: RelationSettings, desired: Coroutine[Any, Any, D], *, resync: bool
    ) -> tuple[set[PairKey], bool, D]:
        """:meth:`observe` while ``desired`` (the source's read) runs, and its result.

        A mirror loaded from the state is built once both are in, beside the desired
        pairs (:func:`syncd.core.diff.known_beside`): a million known pairs then cost a
        set table, not a second million ints. The state is read ahead a few chunks at a
        time by a thread of its own (:class:`syncd.state.knowntext.KnownAhead`).
        """
        loading = not resync and rel.name not in self._pairs and self.store.has_resynced(rel.name)
        if not loading:
            (known, resynced), wanted = await together(self.observe(rel, resync=resync), desired)
            return known, resynced, wanted
        need_mapping = rel.name not in self._mapping
        mapping = self.load_mapping(rel) if need_mapping else nothing()
        self._loading[rel.name] = []
        ahead = self.store.read_known_ahead(rel.name)
        try:
            _, wanted = await together(mapping, desired)
            passes = [ahead.chunks()]

            def chunks() -> Iterator[list[PairKey]]:
                texts = passes.pop() if passes else self.store.known_texts(rel.name)
                return map(from_hex, texts)

            sides = await asyncio.to_thread(known_beside, wanted.pairs, chunks)
        finally:
            ahead.close()
            events = self._loading.pop(rel.name)
        if self._mirror_loaded(rel.name, sides.known, events):
            self._sides[rel.name] = sides  # its difference holds only if nothing came since
        return sides.known, False, wanted

    def take_sides(self, name: str) -> Sides | None:
        """The difference :meth:`observe_beside` found with the mirror, once (it holds the
        desired set: not kept past the plan it is taken for)."""
        return self._sides.pop(name, None)

    async def _load(self, rel: RelationSettings, *, resync: bool) -> bool:
        if resync or not self.store.has_resynced(rel.name):
            await self.resync(rel)
            return True
        if rel.name not in self._pairs:
            # A million rows take a while: off the event loop, beside the source read.
            self._loading[rel.name] = []
            try:
                known = await self.store.load_known_keys(rel.name)
            finally:
                events = self._loading.pop(rel.name)
            self._mirror_loaded(rel.name, known, events)
        return False

    def _mirror_loaded(
        self, name: str, known: set[PairKey], events: list[tuple[set[PairKey], list[PairKey]]]
    ) -> bool:
        """Install a mirror read from the state, with the watch events that came during the
        read applied on top, in order; True when none came."""
        for created, deleted in events:
            known.update(created)
            known.difference_update(deleted)
        self._pairs[name] = known
        return not events

    async def read_cmdb(self, rel: RelationSettings) -> set[PairKey]:
        """What the CMDB holds now, without touching the state (``syncd plan``)."""
        _, known = await together(self.load_mapping(rel), self._read(rel))
        return known  # type: ignore[no-any-return]

    async def _read(self, rel: RelationSettings) -> set[PairKey]:
        known: set[PairKey] = set()
        async for page in self.client.iter_associations(rel.bk_obj_id, rel.bk_obj_asst_id):
            known.update(pack(s, d) for s, d, _ in page)
        return known

    async def load_mapping(self, rel: RelationSettings) -> None:
        row = await self.client.find_object_association(rel.bk_obj_asst_id)
        if row is None:
            raise RelationRefused(
                f"model association {rel.bk_obj_asst_id!r} does not exist in the CMDB",
                "create it there or fix the relation's bk_obj_asst_id",
            )
        self._mapping[rel.name] = Mapping.parse(row.get("mapping"))

    async def resync(self, rel: RelationSettings) -> None:
        """Rebuild known state for one relation from the CMDB itself.

        Pages are staged as they arrive and swapped in at the end in one
        transaction: a crash or a failed read mid-resync leaves the old state.
        Held-back pairs are released for the next try; their attempt counts stay.
        """
        name = rel.name
        known: set[PairKey] = set()
        self.store.resync.begin(name)
        if self.lists is not None:
            self.lists.list_started(rel)
        try:
            async for page in self.client.iter_associations(rel.bk_obj_id, rel.bk_obj_asst_id):
                self.store.resync.stage(name, page)
                known.update(pack(s, d) for s, d, _ in page)
            added, removed = self.store.resync.finish(name, self.clock())
        except BaseException:
            self.store.resync.abort(name)
            if self.lists is not None:
                self.lists.list_finished(rel, ok=False)
            raise
        self._pairs[name] = known
        log.info("resync", in_cmdb=len(known), added=added, removed=removed)
        if self.lists is not None:
            self.lists.list_finished(rel, ok=True)

    # -- changing -------------------------------------------------------------

    def intend(
        self, name: str, details: list[tuple[int, int]], keys: Collection[PairKey] | None = None
    ) -> int:
        """Before a create leaves: the request is recorded (durably), so an answer lost on
        the way back still proves, for a while, that syncd may have created its pairs.
        ``keys``: the details packed, when the caller has them. Returns the attempt's
        number for :meth:`record` and ``store.release``."""
        attempt = self.store.attempts.intend(name, details, self.clock())
        batch = keys if keys is not None else [pack(s, d) for s, d in details]
        self._sending.setdefault(name, {})[attempt] = (batch, time.monotonic())
        return attempt

    def record(
        self,
        name: str,
        outcome: BatchOutcome,
        failed: list[Failed],
        attempt: int | None = None,
        keys: Collection[PairKey] | None = None,
    ) -> None:
        """One answer: store it in one transaction, then mirror what is now in the CMDB.

        ``keys``: the batch's details packed, when the caller has them (a batch created
        whole then needs no packing). The attempt's pairs are no longer in flight: every
        detail of an outcome is decided or deferred.
        """
        self.store.record_answer(
            name,
            created=outcome.created,
            exists=outcome.exists,
            failed=failed,
            attempt=attempt,
            unanswered=outcome.unanswered(),
            reclaim=outcome.reclaim,
            now=self.clock(),
        )
        known = self._pairs[name]
        if keys is not None and len(outcome.created) == len(keys):
            known.update(keys)  # created whole: the batch is the new known pairs
        else:
            known.update([pack(s, d) for s, d, _ in outcome.created])
            known.update([pack(s, d) for s, d, _ in outcome.exists])
        if attempt is not None:
            self._sending.get(name, {}).pop(attempt, None)

    def sending(self, name: str, keys: Iterable[PairKey]) -> set[PairKey]:
        """Which of ``keys`` syncd is creating right now (sent, answer not recorded)."""
        sending = self._sending.get(name)
        if not sending:
            return set()
        oldest = time.monotonic() - SENDING_MAX_AGE
        for attempt in [a for a, (_, sent) in sending.items() if sent < oldest]:
            del sending[attempt]  # never answered (cancelled): no longer in flight
        in_flight = set().union(*(batch for batch, _ in sending.values()))
        return {k for k in keys if k in in_flight}

    def holds(self, name: str, keys: Iterable[PairKey]) -> set[PairKey]:
        """Which of ``keys`` are known (the mirror, or the store before it is loaded)."""
        keys = set(keys)
        if name in self._pairs:
            return keys & self._pairs[name]
        return {k for k, _ in self.store.association_ids(name, keys).items()}

    def observed(
        self, name: str, created: list[tuple[int, int, int | None]], deleted: list[PairKey]
    ) -> None:
        """Changes someone made in the CMDB (watch events): created pairs become known,
        never owned; deleted ones are forgotten. Written to the store, then the mirror."""
        if created:
            self.store.record_answer(name, exists=[Seen(*row) for row in created], now=self.clock())
        if deleted:
            self.store.remove(name, deleted)
        keys = {pack(s, d) for s, d, _ in created}
        mirror = self._pairs.get(name)
        if mirror is not None:
            mirror.update(keys)
            mirror.difference_update(deleted)
        elif name in self._loading:
            self._loading[name].append((keys, list(deleted)))

    def remove(self, name: str, keys: Iterable[PairKey]) -> None:
        """Pairs syncd deleted from the CMDB."""
        keys = list(keys)
        self.store.remove(name, keys)
        self._pairs[name].difference_update(keys)

    async def learn_blockers(self, rel: RelationSettings, refused: list[PairKey]) -> int:
        """Pairs the CMDB refused for a mapping conflict: find the pairs that block them and
        make those known (not owned), so the next plan holds the refused pairs by their
        blocker and releases them the moment it is gone, instead of resending each cycle.
        Returns how many blockers were new."""
        if not refused or self._mapping.get(rel.name, Mapping.N_N) is Mapping.N_N:
            return 0
        dsts = sorted({d for _, d in map(unpack, refused)})
        queries = [("bk_asst_inst_id", dsts)]
        if self._mapping[rel.name] is Mapping.ONE_ONE:
            queries.append(("bk_inst_id", sorted({s for s, _ in map(unpack, refused)})))
        found: list[tuple[int, int, int | None]] = []
        try:
            for fieldname, values in queries:
                for i in range(0, len(values), PAGE_LIMIT):
                    rule = {
                        "field": fieldname,
                        "operator": "in",
                        "value": values[i : i + PAGE_LIMIT],
                    }
                    async for page in self.client.iter_associations(
                        rel.bk_obj_id, rel.bk_obj_asst_id, [rule]
                    ):
                        found.extend(page)
        except CmdbError as exc:
            log.warning("blocker_lookup_failed", error=str(exc))
            return 0
        mirror = self._pairs.get(rel.name, set())
        new = {pack(s, d): (s, d, i) for s, d, i in found if pack(s, d) not in mirror}
        if new:
            self.observed(rel.name, list(new.values()), [])
        return len(new)

    async def fill_association_ids(self, rel: RelationSettings) -> None:
        """Pairs that came back "already exists" get their ids, looked up in bulk."""
        missing = self.store.missing_association_ids(rel.name)
        if not missing:
            return
        try:
            found = await self.client.lookup_association_ids(
                rel.bk_obj_id, rel.bk_obj_asst_id, missing
            )
        except CmdbError as exc:
            log.warning("association_id_lookup_failed", error=str(exc))
            return
        self.store.set_association_ids(rel.name, [(s, d, i) for (s, d), i in found.items()])
        gone = len(missing) - len(found)
        if gone:
            log.warning(
                "association_ids_missing",
                missing=gone,
                hint="pairs known to syncd were not found in the CMDB; SIGHUP resyncs",
            )
