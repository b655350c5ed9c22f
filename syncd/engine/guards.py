"""What the guards remember between cycles: source sizes, prune baselines, absence marks.

The empty-source guard compares a source's size with its last read; the prune guards
compare the desired count with the last good one (per source, too) and count how long
an owned pair has been absent. This module is the one reader and writer of those
values in the state (``store.meta``, the absence marks), so the rules for when each is
accepted live in one place; the decisions themselves are pure (:mod:`syncd.core.plan`).
"""

from __future__ import annotations

from dataclasses import replace

import structlog

from syncd.config.settings import RelationSettings
from syncd.core.plan import PruneInputs, RelationPlan
from syncd.engine.desired import Desired, size_key
from syncd.state import StateStore

log = structlog.get_logger("syncd")


class Guards:
    """The guards' memory of each relation, over the state store."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def last_sizes(self, rel: RelationSettings) -> dict[str, int]:
        """Each source's size at its last read, for the empty-source guard."""
        meta = self.store.meta
        return {name: meta.source_size(size_key(rel, name)) for name, _ in rel.named_sources()}

    def accept_any_size(self, rel: RelationSettings) -> None:
        """A resync is the operator's word: whatever size the sources have now is accepted."""
        meta = self.store.meta
        meta.set_source_size(rel.name, 0)
        if rel.several_sources:
            for name, _ in rel.named_sources():
                meta.set_source_size(size_key(rel, name), 0)
                meta.set_source_baseline(rel.name, name, 0)

    def relisted(self, name: str) -> None:
        """The known state was just read again from the CMDB: the prune baseline starts over."""
        self.store.meta.set_prune_baseline(name, 0)

    def prune_inputs(self, rel: RelationSettings, desired: Desired) -> PruneInputs | None:
        """What the prune decision needs from the state; None when the relation never prunes."""
        if not rel.prune.enabled:
            return None
        name, meta = rel.name, self.store.meta
        owned = self.store.owned_keys(name)
        prune = PruneInputs(
            guards=rel.prune.guards(),
            owned=owned,
            absent_before=self.store.absent_info(name, owned - desired.pairs),
            last_good_desired=meta.prune_baseline(name),
        )
        if not rel.several_sources:
            return prune
        return replace(
            prune,
            source_sizes={
                s.name: (s.pairs, meta.source_baseline(name, s.name))
                for s in desired.sources
                if s.pairs is not None
            },
            failed_sources=desired.failed,
        )

    def commit(
        self, rel: RelationSettings, desired: Desired, decided: RelationPlan, now: float
    ) -> None:
        """Write what this cycle observed: the sources' sizes, who is absent since when, and
        the baselines a read that passed the guards sets.

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
        if not rel.prune.enabled:
            return
        self.store.mark_present(name, desired.pairs)
        if not desired.failed:
            # A failed source's pairs look absent; their absence is not counted.
            self.store.mark_absent(name, decided.owned_absent, now)
        if decided.prune.blocked is None:
            meta.set_prune_baseline(name, len(desired.pairs))
            if rel.several_sources:
                for status in answered:
                    meta.set_source_baseline(name, status.name, status.pairs or 0)
        else:
            log.warning("prune_blocked", reason=decided.prune.blocked)
