"""bk-cmdb's ``inst_asst`` event chain: the events, their cursors and retention.

Every stored change of an instance association becomes a chain node: one for a single
create or a delete (both in a transaction, so the source and target tables'
change-stream events share a cluster time and cursor and are deduplicated,
event/flow/parser.go:142-173), two for each pair a batch create stores (two writes
without a transaction, each with its own cluster time; the flow drops only identical
cursors, event/flow/flow.go:252-267). Its cursor is bk-cmdb's own encoding
(src/common/watch/cursor.go:191-244): type 13, the association id as oid and unique
key, the operation (``insert``/``delete``) and the cluster time. Nodes older than the
retention window are gone, except the newest, which the watch token keeps
(event/watch/client.go:334-370). :mod:`cmdb_simulator.watch` answers requests from it.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import os
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]

INST_ASST = "inst_asst"
EVENT_STEP = 200
"""``eventStep``: nodes read after a cursor per answer (event/watch/watch.go:53-54)."""

TTL_SECONDS = 6 * 60 * 60
"""``InstAsstKey.ttlSeconds`` (src/source_controller/cacheservice/event/key.go:273-278)."""

CURSOR_TYPES: dict[str, int] = {
    "no_event": 1,
    "host": 2,
    "host_relation": 3,
    "biz": 4,
    "set": 5,
    "module": 6,
    "object_instance": 8,
    "process": 9,
    "process_instance_relation": 10,
    "host_identifier": 11,
    "mainline_instance": 12,
    INST_ASST: 13,
    "biz_set": 14,
    "biz_set_relation": 15,
    "plat": 16,
    "kube_cluster": 17,
    "kube_node": 18,
    "kube_namespace": 19,
    "kube_workload": 20,
    "kube_pod": 21,
    "project": 22,
}
"""``cursorTypeIntMap`` (src/common/watch/cursor.go:63-86)."""

_OPERATIONS = {"create": "insert", "delete": "delete"}


def encode_cursor(kind: str, oid: str, oper: str, sec: int, nano: int, uniq_key: str = "") -> str:
    """``Cursor.Encode``: base64 of ``1\\r<type>\\r<oid>\\r<oper>\\r<sec>\\r<nano>\\r<key>``."""
    raw = f"1\r{CURSOR_TYPES[kind]}\r{oid}\r{oper}\r{sec}\r{nano}\r{uniq_key}"
    return base64.b64encode(raw.encode()).decode()


NO_EVENT_CURSOR = encode_cursor("no_event", "5ea6d3f394c1f5d986e9bd86", "noEvent", 1, 1)
"""``NoEventCursor`` (cursor.go:41-61): "no event yet, start from the oldest one"."""


def _cluster_time(cursor: str) -> tuple[int, int] | None:
    """The cluster time of an ``inst_asst`` cursor, or None if it cannot be one."""
    try:
        parts = base64.b64decode(cursor, validate=True).decode().split("\r")
        if len(parts) < 6 or parts[1] != str(CURSOR_TYPES[INST_ASST]):
            return None
        return int(parts[4]), int(parts[5])
    except (ValueError, UnicodeDecodeError):
        return None


@dataclass(slots=True)
class ChainNode:
    """One event: ``id`` counts from 1 in the order events happened."""

    id: int
    type: str
    row: Row
    sec: int
    nano: int
    at: float

    @property
    def cursor(self) -> str:
        oid = str(self.row["id"])
        return encode_cursor(INST_ASST, oid, _OPERATIONS[self.type], self.sec, self.nano, oid)

    def hits(self, types: tuple[str, ...], sub_resource: str) -> bool:
        """``isNodeHitEventType`` and ``isNodeHitSubResource`` (watch.go:664-691); the sub
        resources of an inst_asst node are its source and target objects (parser.go:172-173)."""
        if types and self.type not in types:
            return False
        return not sub_resource or sub_resource in (
            self.row["bk_obj_id"],
            self.row["bk_asst_obj_id"],
        )


class EventChain:
    """The ``inst_asst`` event chain; :meth:`record` is the store's hook for every change.

    Recording only appends ``(kind, row)`` to a pending list, which costs next to
    nothing on the store's hot path; every read (and the server after each request)
    first moves pending events into the chain with one clock reading, stamping them
    in order, and wakes held watches. Stored column-wise (no object per event), so the
    garbage collector has nothing more to walk. Cluster times are kept as
    ``sec << 32 | inc``, strictly increasing with the id, so a cursor is found by
    bisection."""

    def __init__(
        self,
        retention: Callable[[], float] = lambda: TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._retention = retention
        self._clock = clock
        self._pending: list[tuple[str, Row]] = []
        self.record: Callable[[tuple[str, Row]], None] = self._pending.append
        """The store's hook: ``record(("create" | "delete", row))``."""
        self._first_id = 1
        """The id of the node at index 0."""
        self._head = 0
        """The index of the oldest node still retained."""
        self._kinds: list[str] = []
        self._rows: list[Row] = []
        self._times = array("q")
        self._ats = array("d")
        self._stamp = 0
        self._last: ChainNode | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self.process = os.urandom(5).hex()
        """The ObjectId's per-process bytes of the inserts this chain records."""

    @property
    def total(self) -> int:
        """Events recorded since start."""
        self.flush()
        return self._first_id + len(self._kinds) - 1

    @property
    def last(self) -> ChainNode | None:
        """The newest node ever, kept past retention like bk-cmdb's watch token."""
        self.flush()
        if self._kinds:
            return self._node(len(self._kinds) - 1)
        return self._last

    def _node(self, i: int) -> ChainNode:
        t = self._times[i]
        return ChainNode(
            self._first_id + i, self._kinds[i], self._rows[i], t >> 32, t & 0xFFFFFFFF, self._ats[i]
        )

    def flush(self) -> None:
        """Move recorded events into the chain, in order, and wake held watches."""
        pending = self._pending
        if not pending:
            return
        kinds, rows = zip(*pending, strict=True)
        pending.clear()
        now = self._clock()
        first = max(self._stamp + 1, int(now) << 32 | 1)  # a clock step back: go on
        self._stamp = first + len(kinds) - 1
        self._times.extend(range(first, self._stamp + 1))
        self._ats.extend([now] * len(kinds))
        self._kinds.extend(kinds)
        self._rows.extend(rows)
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def _expire(self) -> None:
        """Flush, then drop what is older than the retention window."""
        self.flush()
        horizon = self._clock() - self._retention()
        ats, head = self._ats, self._head
        if head < len(ats) and ats[head] < horizon:
            head = bisect.bisect_left(ats, horizon, lo=head)
        if head > 1024 and head * 2 > len(ats):
            self._last = self._node(len(ats) - 1)
            for column in (self._kinds, self._rows, self._times, self._ats):
                del column[:head]
            self._first_id += head
            head = 0
        self._head = head

    def retained(self) -> int:
        self._expire()
        return len(self._kinds) - self._head

    def earliest(self) -> ChainNode | None:
        """``getEarliestEvent``: the oldest node still retained."""
        self._expire()
        return self._node(self._head) if self._head < len(self._kinds) else None

    def latest(self) -> ChainNode | None:
        """``getLatestEvent``: the newest node still retained."""
        self._expire()
        return self._node(len(self._kinds) - 1) if self._head < len(self._kinds) else None

    def find(self, cursor: str) -> ChainNode | None:
        """The retained node with this cursor, else the watch token's (the newest node)."""
        when = _cluster_time(cursor)
        if when is None:
            return None
        self._expire()
        sec, nano = when
        if not (0 <= sec < 1 << 31 and 0 <= nano < 1 << 32):
            return None
        i = bisect.bisect_left(self._times, sec << 32 | nano, lo=self._head)
        if i < len(self._times) and (node := self._node(i)).cursor == cursor:
            return node
        last = self.last
        if last is not None and last.cursor == cursor:
            return last
        return None

    def after_time(self, sec: int) -> ChainNode | None:
        """The first retained node with a cluster time after ``sec`` (watch.go:133-141)."""
        self._expire()
        i = bisect.bisect_left(self._times, (sec + 1) << 32, lo=self._head)
        return self._node(i) if i < len(self._times) else None

    def following(
        self, node_id: int, types: tuple[str, ...], sub_resource: str, limit: int = EVENT_STEP
    ) -> list[ChainNode]:
        """``searchFollowingEventChainNodesByID``: matching nodes with a larger id, oldest first."""
        self._expire()
        out: list[ChainNode] = []
        kinds, rows = self._kinds, self._rows
        for i in range(max(self._head, node_id - self._first_id + 1), len(kinds)):
            if types and kinds[i] not in types:
                continue
            row = rows[i]
            if sub_resource and sub_resource not in (row["bk_obj_id"], row["bk_asst_obj_id"]):
                continue
            out.append(self._node(i))
            if len(out) >= limit:
                break
        return out

    async def wait(self, seconds: float) -> None:
        """Until the next event is flushed or ``seconds`` pass."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await asyncio.wait({fut}, timeout=seconds)
        finally:
            if not fut.done():
                fut.cancel()
                if fut in self._waiters:
                    self._waiters.remove(fut)
