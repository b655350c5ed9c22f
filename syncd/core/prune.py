"""Which absent pairs may be deleted this cycle. Pure.

Deleting is the one thing a sync tool can do that an operator cannot undo by
running it again, so every guard errs towards keeping: only pairs syncd itself
created, only after they have been absent for a grace period in both time and
cycles, never when the source looks broken (failed, empty, or suddenly much
smaller), and never more than a capped number per cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from syncd.core.pairs import PairKey


@dataclass(frozen=True, slots=True)
class PruneGuards:
    grace_seconds: float = 3600.0
    grace_cycles: int = 3
    max_count: int = 1000
    max_fraction: float = 0.1
    max_shrink: float = 0.5


@dataclass(frozen=True, slots=True)
class PruneDecision:
    delete: list[PairKey] = field(default_factory=list)
    waiting: int = 0
    """Owned pairs absent, still inside their grace period."""
    capped: int = 0
    """Eligible pairs left for later cycles by the per-cycle cap."""
    blocked: str | None = None
    """Why no pruning at all happens this cycle, in one clear sentence."""


def source_guard(
    desired: int,
    last_good: int | None,
    guards: PruneGuards,
    *,
    source_ok: bool = True,
    what: str = "the source",
) -> str | None:
    """A reason to prune nothing this cycle, or None when the source looks sane."""
    if not source_ok:
        return f"{what} failed this cycle"
    if desired == 0:
        return f"{what} came back empty"
    if last_good and desired < last_good * (1.0 - guards.max_shrink):
        return (
            f"{what} shrank from {last_good} to {desired} pairs, more than "
            f"{guards.max_shrink:.0%}; send SIGHUP (systemctl reload syncd) to accept the new size"
        )
    return None


def sources_guard(
    sizes: Mapping[str, tuple[int, int | None]],
    failed: Mapping[str, str],
    guards: PruneGuards,
) -> str | None:
    """Several sources of one relation: a reason to prune nothing, naming the source.

    ``sizes`` maps each source that answered to (pairs now, the size pruning last
    accepted from it); ``failed`` each source that did not to its error. A pair that
    only a failed, emptied or shrunken source had would look absent, so any one of
    them holds back pruning for the whole relation. An empty source is accepted only
    once its accepted size is 0 (a resync, SIGHUP, says so).
    """
    if failed:
        names = ", ".join(repr(name) for name in failed)
        errors = "; ".join(f"{name}: {error}" for name, error in failed.items())
        word = "source" if len(failed) == 1 else "sources"
        return f"{word} {names} failed this cycle ({errors})"
    for name, (count, accepted) in sizes.items():
        what = f"source {name!r}"
        if count == 0 and accepted != 0:
            return (
                f"{what} came back empty; send SIGHUP (systemctl reload syncd) to accept "
                "an empty source"
            )
        reason = source_guard(count, accepted, guards, what=what) if count else None
        if reason is not None:
            return reason
    return None


def decide_prune(
    absent_owned: Mapping[PairKey, tuple[float, int]],
    *,
    known: int,
    now: float,
    guards: PruneGuards,
    blocked: str | None = None,
) -> PruneDecision:
    """Pick the owned, absent pairs whose grace is over, oldest absence first, capped.

    ``absent_owned`` maps each owned pair missing from the source to
    (absent since, consecutive absent cycles including this one).
    """
    if blocked is not None:
        return PruneDecision([], len(absent_owned), 0, blocked)
    ripe = sorted(
        (since, key)
        for key, (since, cycles) in absent_owned.items()
        if now - since >= guards.grace_seconds and cycles >= guards.grace_cycles
    )
    cap = min(guards.max_count, int(known * guards.max_fraction))
    chosen = [key for _, key in ripe[: max(0, cap)]]
    return PruneDecision(chosen, len(absent_owned) - len(ripe), len(ripe) - len(chosen), None)
