"""The CMDB's association events as syncd reads them: events, cursors, gaps. Pure, no I/O.

Its own module because reading a ``resource_watch`` answer needs no daemon: the watch
(:mod:`syncd.informer.watch`), its tests and the bench read answers alike, and the reading can be
checked on values alone.
"""

from __future__ import annotations

import base64
from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple

from syncd.core.pairs import PairKey, pack

EXPIRED = 1103007
"""``Event chain node not exist``: the cursor is older than the CMDB keeps events."""
EVENT_STEP = 200
"""Events in a full answer (bk-cmdb's ``eventStep``): more are waiting."""


class WatchGap(Exception):
    """An answer syncd cannot go on from (no cursor): events may have been missed."""


class Event(NamedTuple):
    """One ``inst_asst`` event, as far as syncd needs it."""

    type: str
    """``create`` or ``delete``."""
    cursor: str
    bk_obj_id: str
    bk_obj_asst_id: str
    src: int
    dst: int
    association_id: int
    by: str | None
    """Who made the change, when the event says so (bk-cmdb's inst_asst events do not)."""

    @property
    def key(self) -> PairKey:
        return pack(self.src, self.dst)


def event_time(cursor: str) -> float | None:
    """The cluster time (Unix seconds) in a bk-cmdb event cursor, if it is one."""
    try:
        parts = base64.b64decode(cursor, validate=True).decode().split("\r")
        return float(parts[4]) if len(parts) >= 6 and parts[1] == "13" else None
    except (ValueError, UnicodeDecodeError):
        return None


def parse_event(raw: object) -> Event | None:
    """One entry of ``bk_events``; None for an entry that is no create or delete."""
    if not isinstance(raw, dict) or raw.get("bk_event_type") not in ("create", "delete"):
        return None
    detail = raw.get("bk_detail")
    cursor = raw.get("bk_cursor")
    if not isinstance(detail, dict) or not isinstance(cursor, str):
        return None
    try:
        by = detail.get("bk_updated_by") or detail.get("bk_created_by") or detail.get("operator")
        return Event(
            str(raw["bk_event_type"]),
            cursor,
            str(detail.get("bk_obj_id", "")),
            str(detail["bk_obj_asst_id"]),
            int(detail["bk_inst_id"]),
            int(detail["bk_asst_inst_id"]),
            int(detail.get("id") or 0),
            str(by) if by else None,
        )
    except (KeyError, TypeError, ValueError):
        return None


def parse_answer(data: object) -> tuple[list[Event], str, int]:
    """(events, the cursor to go on from, entries in the answer) of one watch answer."""
    entries = data.get("bk_events") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise WatchGap("answer has no bk_events")
    last = entries[-1].get("bk_cursor") if isinstance(entries[-1], dict) else None
    if not isinstance(last, str) or not last:
        raise WatchGap("answer's last event has no bk_cursor")
    watched = isinstance(data, dict) and data.get("bk_watched") is True
    events = [e for e in map(parse_event, entries) if e is not None] if watched else []
    return events, last, len(entries) if watched else 0


def last_wins(events: Iterable[Event]) -> dict[PairKey, Event]:
    """Each pair's last event, in the order of those last events: what a pair is now."""
    final: dict[PairKey, Event] = {}
    for event in events:
        final.pop(event.key, None)
        final[event.key] = event
    return final


class CreateEchoes:
    """Drops the second ``create`` event of an association: bk-cmdb sends two.

    A batch create stores each association in the source's and the target's table
    as two writes without a transaction (core/instance.go:149-172, svc/association.go:
    1166-1182); each is a change-stream event with its own cluster time and cursor,
    and the event flow drops only identical cursors (event/flow/flow.go:252-267). The
    two have the same ``bk_detail.id``, usually one after the other, sometimes in the
    next answer. Association ids are never reused (one global sequence), so a
    second create of an id is always the echo. Remembers the last ``size`` ids.
    """

    def __init__(self, size: int = 2 * EVENT_STEP) -> None:
        self.size = size
        self._ids: OrderedDict[int, None] = OrderedDict()
        self.dropped = 0
        """Echoes dropped so far."""

    def fresh(self, events: Iterable[Event]) -> list[Event]:
        """The events without the echoes; an event with no id is always kept."""
        out: list[Event] = []
        for event in events:
            if event.type == "create" and event.association_id:
                if event.association_id in self._ids:
                    self.dropped += 1
                    continue
                self._ids[event.association_id] = None
                if len(self._ids) > self.size:
                    self._ids.popitem(last=False)
            out.append(event)
        return out
