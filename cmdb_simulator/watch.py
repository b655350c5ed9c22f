"""bk-cmdb's ``resource_watch``: the request, its checks, the answer and the long poll.

Follows bk-cmdb v3.14.8 (111e7ac66a), with what differs per release (:class:`Release`).
The answer logic is the cache service's
(src/source_controller/cacheservice/service/cache.go:557-685) and its watch client's
(event/watch/watch.go:57-189,508-662): at most 200 nodes of the event chain
(:mod:`cmdb_simulator.chain`) after a cursor (plus the first node for ``bk_start_from``
and the no-event cursor), a hold of a little over 20 s when nothing matches,
``bk_watched: false`` with a cursor to go on from. A cursor naming no retained node
answers 1103007.

Pure except :func:`serve`, which awaits.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cmdb_simulator.chain import (
    CURSOR_TYPES,
    INST_ASST,
    NO_EVENT_CURSOR,
    TTL_SECONDS,
    ChainNode,
    EventChain,
    Row,
)
from cmdb_simulator.messages import (
    EVENT_CHAIN_NODE_NOT_EXIST,
    JSON_UNMARSHAL,
    PARAMS_INVALID,
    UNKNOWN_ERROR,
    CmdbError,
)
from cmdb_simulator.version import CmdbVersion

HOLD_SECONDS = 20.0
"""``timeoutWatchLoopSeconds`` (event/watch/watch.go:47-48)."""
POLL_SECONDS = 0.25
"""``loopInternal`` (event/watch/watch.go:50-51)."""
ERROR_DELAY_SECONDS = 0.5
"""The cache and event servers sleep 500 ms before answering a bad request
(service/cache.go:558-564, event_server/service/watch.go:32-36)."""

WATCHABLE = frozenset(CURSOR_TYPES) - {"no_event"}
"""``resourceKeyMap`` (event/util.go:30-51): what ``bk_resource`` may name on 3.12-3.14."""
_KUBE = frozenset(k for k in CURSOR_TYPES if k.startswith("kube_"))
_BIZ_SET = frozenset({"biz_set", "biz_set_relation"})
_NEEDS_FIELDS = frozenset({"host", "biz", "set", "module"})
_HAS_SUB_RESOURCE = frozenset({"object_instance", "mainline_instance", INST_ASST, "kube_workload"})


def watchable(version: CmdbVersion) -> frozenset[str]:
    """The resources a release's cache service knows (``GetResourceKeyWithCursorType``).

    3.10 has no ``plat``, ``project`` or ``kube_*`` (release-v3.10.51:
    src/source_controller/cacheservice/event/util.go:26-59), ``biz_set`` and
    ``biz_set_relation`` only from 3.10.12 and ``inst_asst`` only from 3.10.10;
    3.15 drops ``kube_*`` again (release-v3.15.1: event/util.go:30-46)."""
    if version.number < (3, 11, 0):
        known = WATCHABLE - _KUBE - {"plat", "project"}
        if version.number < (3, 10, 12):
            known -= _BIZ_SET
        return known if version.inst_asst_watch else known - {INST_ASST}
    return WATCHABLE - _KUBE if version.tenants else WATCHABLE


_EVENT_TYPES = frozenset({"create", "update", "delete"})


# --- the request -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WatchOptions:
    """``watch.WatchEventOptions`` as decoded (src/common/watch/watch.go:28-50)."""

    resource: str
    event_types: tuple[str, ...]
    fields: tuple[str, ...]
    start_from: int
    cursor: str
    sub_resource: str


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """The knobs a real CMDB hard-codes; the simulator lets tests shorten them."""

    hold_s: float = HOLD_SECONDS
    """``timeoutWatchLoopSeconds``: the threshold of the hold, not its length
    (:func:`hold_seconds`)."""
    error_delay_s: float = ERROR_DELAY_SECONDS
    retention_s: float = TTL_SECONDS
    wall: Callable[[], float] = time.time
    """The wall clock whose whole seconds the hold's check compares."""


@dataclass(frozen=True, slots=True)
class Release:
    """What differs between the releases answered as."""

    known: frozenset[str] = WATCHABLE
    """The resources the cache service knows (:func:`watchable`)."""
    looks_again: bool = True
    """At the end of a hold, look once more for matching events before answering with
    the newest cursor (77543aee8b, first in release-v3.10.11)."""

    @classmethod
    def of(cls, version: CmdbVersion) -> Release:
        return cls(watchable(version), version.number >= (3, 10, 11))


def hold_seconds(start_wall: float, threshold: float, poll: float = POLL_SECONDS) -> float:
    """How long a watch that finds nothing is held: bk-cmdb takes ``start :=
    time.Now().Unix()``, then after each 250 ms sleep checks ``time.Now().Unix()-start >
    timeoutWatchLoopSeconds`` (cs/event/watch/watch.go:584,610-614). Whole seconds, so
    the hold is more than the threshold and up to a second and a poll longer (20 s:
    20.25-21 s, plus bk-cmdb's own time per look). A fractional threshold (tests) also
    needs the time itself past it, which an integer one implies."""
    if not math.isfinite(threshold):
        return threshold
    start = math.floor(start_wall)
    k = max(1, math.floor(threshold / poll))
    while True:
        held = k * poll
        if held > threshold and math.floor(start_wall + held) - start > threshold:
            return held
        k += 1


def _strings(value: Any) -> tuple[str, ...]:
    """A Go ``[]string``: null is empty, null items are "", anything else fails to decode."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(v is None or isinstance(v, str) for v in value):
        raise CmdbError(JSON_UNMARSHAL)
    return tuple(v or "" for v in value)


def _string(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CmdbError(JSON_UNMARSHAL)
    return value


NOT_JSON = object()
"""A body that is not JSON at all."""


def decode(resource: str, body: Any) -> WatchOptions:
    """The event server's ``DecodeInto`` (event_server/service/watch.go:31-38): a wrong JSON
    type is 1199000; an empty body or null is the zero value. The path names the resource."""
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise CmdbError(JSON_UNMARSHAL)
    start_from = body.get("bk_start_from")
    if start_from is None:
        start_from = 0
    elif isinstance(start_from, bool) or not isinstance(start_from, int):
        raise CmdbError(JSON_UNMARSHAL)
    flt = body.get("bk_filter")
    if flt is None:
        flt = {}
    elif not isinstance(flt, Mapping):
        raise CmdbError(JSON_UNMARSHAL)
    return WatchOptions(
        resource=resource,
        event_types=_strings(body.get("bk_event_types")),
        fields=_strings(body.get("bk_fields")),
        start_from=start_from,
        cursor=_string(body.get("bk_cursor")),
        sub_resource=_string(flt.get("bk_sub_resource")),
    )


def validate(opts: WatchOptions, known: frozenset[str] = WATCHABLE) -> str | None:
    """``WatchEventOptions.Validate(false)`` (src/common/watch/watch.go:52-85), then the
    resource lookup (event/util.go:53-61): the raw Go error text, or None. ``known``: the
    resources the release has (:func:`watchable`); its ``Validate`` lets a sub resource
    through only for those of them that take one (3.10 and 3.15 have no kube_workload)."""
    with_sub = _HAS_SUB_RESOURCE & known
    for kind in opts.event_types:
        if kind not in _EVENT_TYPES:
            return "unsupported event type"
    if opts.resource in _NEEDS_FIELDS and not opts.fields:
        return f"{opts.resource} event must have fields"
    if opts.start_from != 0 and opts.cursor:
        return "bk_start_from and bk_cursor can not use at the same time"
    if opts.sub_resource and opts.resource not in with_sub:
        return f"{opts.resource} event cannot have sub resource"
    if opts.resource not in known:
        return f"unsupported cursor type {opts.resource}"
    return None


def stored_document(node: ChainNode, process: str) -> Row:
    """The association as MongoDB holds it, which is what a watch detail is.

    A create's detail is the change stream's ``fullDocument`` decoded into a map and
    marshalled with sorted keys (src/storage/stream/event/watch.go:262-268,
    src/common/json/json.go:25-30): the ``InstAsst`` struct, so ``bk_biz_id`` 0 too
    (src/common/metadata/association.go:555-575), and the ``_id`` ObjectId the driver
    gave the insert (each of a batch create's two inserts has its own). A delete's is
    the del-archive copy, ``_id`` removed (src/storage/dal/mongo/local/mongo.go:844-888)."""
    doc = {**node.row, "bk_biz_id": 0}
    if node.type == "create":
        doc["_id"] = object_id(int(node.at), process, node.id)
    return dict(sorted(doc.items()))


def object_id(sec: int, process: str, counter: int) -> str:
    """A MongoDB ObjectId in hex: 4 bytes of seconds, 5 per process, a 3-byte counter."""
    return f"{sec & 0xFFFFFFFF:08x}{process}{counter & 0xFFFFFF:06x}"


def _detail(doc: Row, fields: tuple[str, ...]) -> Row:
    """``CutJsonDataWithFields`` (src/common/json/tool.go:29-55): the named fields in the
    order asked, null where absent; all fields when none are named."""
    if not fields:
        return doc
    return {f: doc.get(f) for f in fields}


def _event(opts: WatchOptions, node: ChainNode, process: str) -> dict[str, Any]:
    return {
        "bk_cursor": node.cursor,
        "bk_resource": opts.resource,
        "bk_event_type": node.type,
        "bk_detail": _detail(stored_document(node, process), opts.fields),
    }


def _nothing(resource: str, cursor: str) -> dict[str, Any]:
    """An event entry without an event: only a cursor to go on from."""
    return {"bk_cursor": cursor, "bk_resource": resource, "bk_event_type": "", "bk_detail": None}


def _answer(chain: EventChain, opts: WatchOptions, nodes: list[ChainNode]) -> dict[str, Any]:
    return {"bk_watched": True, "bk_events": [_event(opts, n, chain.process) for n in nodes]}


def _unwatched(opts: WatchOptions, cursor: str) -> dict[str, Any]:
    return {"bk_watched": False, "bk_events": [_nothing(opts.resource, cursor)]}


async def serve(
    chain: EventChain,
    resource: str,
    body: Any,
    settings: WatchSettings,
    *,
    release: Release | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """One ``resource_watch`` request: the answer's ``data``, or raises CmdbError.
    ``release``: what the release answered as knows and does (default: 3.14)."""
    release = release or Release()
    try:
        opts = decode(resource, body)
    except CmdbError:
        await asyncio.sleep(settings.error_delay_s)
        raise
    problem = validate(opts, release.known)
    if problem is not None:
        await asyncio.sleep(settings.error_delay_s)
        raise CmdbError(UNKNOWN_ERROR, raw=problem)
    if opts.resource != INST_ASST:
        # Only inst_asst events are simulated; other resources see an empty chain.
        chain = EventChain()
    if opts.cursor:
        return await _with_cursor(chain, opts, settings, release.looks_again)
    if opts.start_from != 0:
        return _with_start_from(chain, opts, settings, time.time() if now is None else now)
    return _from_now(chain, opts)


def _from_now(chain: EventChain, opts: WatchOptions) -> dict[str, Any]:
    """``WatchFromNow`` (watch.go:508-573): the newest event if it matches, as an event."""
    node = chain.latest()
    if node is None or not node.hits(opts.event_types, opts.sub_resource):
        return _unwatched(opts, NO_EVENT_CURSOR)
    return _answer(chain, opts, [node])


def _with_start_from(
    chain: EventChain, opts: WatchOptions, settings: WatchSettings, now: float
) -> dict[str, Any]:
    """``WatchWithStartFrom`` (watch.go:57-189)."""
    diff = int(now) - opts.start_from
    if diff < 0 or diff > settings.retention_s:
        raise CmdbError(PARAMS_INVALID, "bk_start_from")
    tail = chain.latest()
    if tail is None:
        return _unwatched(opts, NO_EVENT_CURSOR)
    if tail.sec <= opts.start_from:
        if not tail.hits(opts.event_types, opts.sub_resource):
            return _unwatched(opts, NO_EVENT_CURSOR)
        return _answer(chain, opts, [tail])
    first = chain.after_time(opts.start_from)
    if first is None:
        return _unwatched(opts, NO_EVENT_CURSOR)
    nodes = chain.following(first.id, opts.event_types, opts.sub_resource)
    if first.hits(opts.event_types, opts.sub_resource):
        nodes.insert(0, first)
    if not nodes:
        return _unwatched(opts, tail.cursor)
    return _answer(chain, opts, nodes)


async def _with_cursor(
    chain: EventChain, opts: WatchOptions, settings: WatchSettings, looks_again: bool
) -> dict[str, Any]:
    """``WatchWithCursor`` (watch.go:575-662) and the answer built from it (cache.go:629-685).

    Events after the cursor come back at once; else the request is held until one
    matches (bk-cmdb polls every 250 ms; the simulator wakes on the event) or the hold
    (:func:`hold_seconds`) ends: then the newest node's cursor, or the no-event cursor
    when there is none."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + hold_seconds(settings.wall(), settings.hold_s)
    types, sub = opts.event_types, opts.sub_resource
    if opts.cursor == NO_EVENT_CURSOR:
        first = chain.earliest()
        if first is None:
            node_id = chain.total
            nodes: list[ChainNode] = []
        else:
            node_id = first.id
            nodes = chain.following(first.id, types, sub)
            if first.hits(types, sub):
                nodes.insert(0, first)
    else:
        node = chain.find(opts.cursor)
        if node is None:
            raise CmdbError(EVENT_CHAIN_NODE_NOT_EXIST)
        node_id = node.id
        nodes = chain.following(node_id, types, sub)
    while not nodes:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return _hold_ends(chain, opts, node_id, looks_again)
        if not looks_again and remaining <= POLL_SECONDS:
            # 3.10.10 checks the time before it looks: what the last sleep brought is
            # never looked at, and the newest cursor skips it
            # (release-v3.10.10: cs/event/watch/watch.go:447-473).
            await asyncio.sleep(remaining)
            continue
        # bk-cmdb looks again every 250 ms (loopInternal, watch.go:50-51); a flush wakes it
        # sooner. The 250 ms also picks up changes made straight in the store.
        await chain.wait(min(remaining, POLL_SECONDS))
        nodes = chain.following(node_id, types, sub)
    return _answer(chain, opts, nodes)


def _hold_ends(
    chain: EventChain, opts: WatchOptions, node_id: int, looks_again: bool
) -> dict[str, Any]:
    """The end of a hold (watch.go:614-652): look once more (3.10.11+), else the newest
    node's cursor so the next call skips what did not match."""
    last = chain.latest()
    if last is None:
        # watch.go:621-630 sets opts.Cursor to NoEventCursor, which the answer echoes.
        return _unwatched(opts, NO_EVENT_CURSOR)
    if looks_again:
        nodes = chain.following(node_id, opts.event_types, opts.sub_resource)
        if nodes:
            return _answer(chain, opts, nodes)
    return _unwatched(opts, last.cursor)
