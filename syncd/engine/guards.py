"""What the guards remember between cycles: source sizes, prune baselines, absence marks.

The empty-source guard compares a source's size with its last read; the relation guard
(for pruning and moves alike) compares the desired count with the last good one (per
source, too), and pruning counts how long an owned pair has been absent. This module is
the one reader and writer of those values in the state (``store.meta``, the absence
marks), so the rules for when each is accepted live in one place; the decisions
themselves are pure (:mod:`syncd.core.plan`).
"""

from __future__ import annotations

from typing import NamedTuple

import structlog

from syncd.config.settings import RelationSettings
from syncd.core.pairs import PairKey
from syncd.core.plan import PruneInputs, RelationPlan, relation_guard
from syncd.core.prune import PruneGuards
from syncd.engine.desired import Desired, size_key
from syncd.state import StateStore

log = structlog.get_logger("syncd")


class Baselines(NamedTuple):
    """What one read is compared with, and the verdict of the relation guard."""

    guards: PruneGuards
    last_good: int | None
    sizes: dict[str, tuple[int, int | None]]
    blocked: str | None


class Guards:
    """The guards' memory of each relation, over the state store."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def last_sizes(self, rel: RelationSettings) -> dict[str, int]:
        """Each source's size at its last read, for the empty-source guard."""
        meta = self.store.meta
        return {name: meta.source_size(size_key(rel, name)) for name, _ in rel.named_sources()}

    def accept_any_size(self, rel: RelationSettings) -> None:
        """The operator's word (a resync, unless said otherwise): whatever size the sources
        have now is accepted; the empty-source and shrink guards start over from it."""
        meta = self.store.meta
        meta.set_source_size(rel.name, 0)
        meta.set_prune_baseline(rel.name, 0)
        if rel.several_sources:
            for name, _ in rel.named_sources():
                meta.set_source_size(size_key(rel, name), 0)
                meta.set_source_baseline(rel.name, name, 0)

    def owned(self, name: str) -> set[PairKey]:
        """The pairs syncd created (the only ones it may delete or move)."""
        return self.store.owned_keys(name)

    def seen(self, rel: RelationSettings, desired: Desired) -> Baselines:
        """The baselines this read is compared with, and the relation guard's verdict."""
        name, meta = rel.name, self.store.meta
        guards = rel.prune.guards()
        last_good = meta.prune_baseline(name)
        sizes: dict[str, tuple[int, int | None]] = {}
        if rel.several_sources:
            sizes = {
                s.name: (s.pairs, meta.source_baseline(name, s.name))
                for s in desired.sources
                if s.pairs is not None
            }
        blocked = relation_guard(len(desired.pairs), last_good, guards, sizes, desired.failed)
        return Baselines(guards, last_good, sizes, blocked)

    def prune_inputs(
        self, rel: RelationSettings, desired: Desired, seen: Baselines
    ) -> PruneInputs | None:
        """What the prune decision needs from the state; None when the relation never prunes."""
        if not rel.prune.enabled:
            return None
        owned = self.owned(rel.name)
        return PruneInputs(
            guards=seen.guards,
            owned=owned,
            absent_before=self.store.absent_info(rel.name, owned - desired.pairs),
            last_good_desired=seen.last_good,
            source_sizes=seen.sizes,
            failed_sources=desired.failed if rel.several_sources else {},
        )

    def commit(
        self, rel: RelationSettings, desired: Desired, decided: RelationPlan, now: float
    ) -> None:
        """Write what this cycle observed: the sources' sizes, the baselines a read that
        passed the relation guard sets (for pruning and moves alike), and who is absent
        since when.

        Only the daemon's path calls this; ``syncd plan`` decides the same way and
        writes nothing.
        """
        name, meta = rel.name, self.store.meta
        if len(desired.pairs) != meta.source_size(name):
            meta.set_source_size(name, len(desired.pairs))
        answered = [s for s in desired.sources if s.pairs is not None]
        if rel.several_sources:
            for status in answered:
                meta.set_source_size(size_key(rel, status.name), status.pairs or 0)
        if decided.guard is None:
            # Written only when it changed: no transaction per cycle for a steady source.
            if meta.prune_baseline(name) != len(desired.pairs):
                meta.set_prune_baseline(name, len(desired.pairs))
            for status in answered if rel.several_sources else ():
                if meta.source_baseline(name, status.name) != (status.pairs or 0):
                    meta.set_source_baseline(name, status.name, status.pairs or 0)
        if not rel.prune.enabled:
            return
        # Kept pairs may be stated: their absence is not counted (no copy of a large set
        # when nothing is kept).
        present = desired.pairs | decided.kept.keys() if decided.kept else desired.pairs
        self.store.mark_present(name, present)
        if not desired.failed:
            # A failed source's pairs look absent; their absence is not counted.
            self.store.mark_absent(name, decided.owned_absent, now)
        if decided.prune.blocked is not None:
            log.warning("prune_blocked", reason=decided.prune.blocked)
