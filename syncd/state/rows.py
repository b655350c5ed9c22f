"""The typed rows the known state exchanges with its callers: what the CMDB said of a
pair (created, seen, refused) and why a pair waits (held, absent)."""

from __future__ import annotations

from typing import NamedTuple


class Created(NamedTuple):
    """A pair syncd created: in the CMDB now, and owned (a prune may delete it)."""

    src: int
    dst: int
    association_id: int


class Seen(NamedTuple):
    """A pair found in the CMDB (an "already exists", or a resync page); owner unchanged."""

    src: int
    dst: int
    association_id: int | None


class Failed(NamedTuple):
    """A pair the CMDB refused, and when to send it again (None: after the next resync)."""

    src: int
    dst: int
    kind: str
    message: str
    next_attempt: float | None


class Held(NamedTuple):
    """Why a pair is not sent this cycle."""

    kind: str
    message: str


class Absence(NamedTuple):
    since: float
    cycles: int
