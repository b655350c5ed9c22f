"""Absent means certainly absent: which known pairs a source fact with an unresolved key
could still mean. Pure.

Names drift between the inventory and the CMDB (a switch renamed in NetBox a day before
it is renamed in the CMDB). The source still states the cable; syncd only cannot map one
end. So a known pair is never treated as gone while some fact could be it:

- a fact whose **target** did not resolve but whose source did (instance ``s``) could be any
  pair ``(s, *)``: every known pair on that source instance is kept;
- a fact whose **source** did not resolve but whose target did (``d``) keeps every ``(*, d)``;
- a fact with **both** sides unresolved could be any pair at all: nothing is ruled out, so
  the whole relation is kept (``everything``) until it resolves.

A source that failed (its resolution included) is not represented here: the prune and
move guards already stop every delete of the relation for that cycle.

:func:`certainly_absent` is the rule for one pair, for any path that deletes a single
pair (a webhook, the watch); :func:`kept_for_uncertainty` applies it to many.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field

from syncd.core.pairs import PairKey, unpack

Reason = str
"""Why a pair is kept: the unresolved key that could mean it, e.g. ``target 'sw-1-renamed'``."""


@dataclass(frozen=True, slots=True)
class Uncertainty:
    """What the unresolved facts of one relation's read leave open."""

    by_source: Mapping[int, Reason] = field(default_factory=dict)
    """Source-side instance id -> the unresolved target key of a fact naming it."""
    by_target: Mapping[int, Reason] = field(default_factory=dict)
    """Target-side instance id -> the unresolved source key of a fact naming it."""
    everything: Reason | None = None
    """Set when a fact had both sides unresolved: any pair could be it."""

    def __bool__(self) -> bool:
        return bool(self.by_source or self.by_target or self.everything)

    def merged(self, other: Uncertainty) -> Uncertainty:
        """The union of two reads' uncertainty (several sources of one relation)."""
        if not other:
            return self
        if not self:
            return other
        return Uncertainty(
            {**other.by_source, **self.by_source},
            {**other.by_target, **self.by_target},
            self.everything or other.everything,
        )


CERTAIN = Uncertainty()
"""Every fact resolved: absent pairs are certainly absent."""


def keeping_reason(key: PairKey, uncertainty: Uncertainty) -> Reason | None:
    """The unresolved key that could mean ``key``, or None when no fact could be it."""
    if uncertainty.everything is not None:
        return uncertainty.everything
    src, dst = unpack(key)
    reason = uncertainty.by_source.get(src)
    if reason is not None:
        return reason
    return uncertainty.by_target.get(dst)


def certainly_absent(key: PairKey, desired: Set[PairKey], uncertainty: Uncertainty) -> bool:
    """May a path that deletes one pair delete ``key``? Only if the source does not state it
    and no fact with an unresolved key could be it."""
    return key not in desired and keeping_reason(key, uncertainty) is None


def kept_for_uncertainty(
    absent: Iterable[PairKey], uncertainty: Uncertainty
) -> dict[PairKey, Reason]:
    """Of pairs not in the desired set, those an unresolved fact could still mean, each with
    the key that keeps it."""
    if not uncertainty:
        return {}
    kept: dict[PairKey, Reason] = {}
    for key in absent:
        reason = keeping_reason(key, uncertainty)
        if reason is not None:
            kept[key] = reason
    return kept


def describe(side: str, key: str, origin: str) -> Reason:
    """The reason text for a fact's unresolved key (``side``: source or target)."""
    return f"{side} key {key!r} did not resolve ({origin})"


class OpenSides:
    """Builds a read's :class:`Uncertainty` from its facts that did not fully resolve."""

    def __init__(self) -> None:
        self.by_source: dict[int, Reason] = {}
        self.by_target: dict[int, Reason] = {}
        self.everything: Reason | None = None

    def add(
        self, src_key: object, dst_key: object, src: int | None, dst: int | None, origin: str
    ) -> None:
        """One fact: its raw keys, what each resolved to (None: nothing), its origin."""
        if src is not None and dst is not None:
            return
        if src is not None:
            self.by_source.setdefault(src, describe("target", str(dst_key), origin))
        elif dst is not None:
            self.by_target.setdefault(dst, describe("source", str(src_key), origin))
        elif self.everything is None:
            self.everything = (
                f"both keys of a fact did not resolve ({src_key!r} -> {dst_key!r}, {origin}):"
                " it could be any pair"
            )

    def uncertainty(self) -> Uncertainty:
        if not (self.by_source or self.by_target or self.everything):
            return CERTAIN
        return Uncertainty(self.by_source, self.by_target, self.everything)
