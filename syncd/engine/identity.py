"""A relation's state belongs to what it describes, not to its name.

The state of a relation is tied to its ``bk_obj_id``, ``bk_asst_obj_id`` and
``bk_obj_asst_id``. At start (and for ``syncd plan``) the configuration is held against
what the state says:

- **the same name, other ids**: the old state is set aside under ``NAME@OLD_ASST_ID``
  (one ``relation_changed`` warning); the relation starts empty, so its first cycle
  resyncs the new association from the CMDB, and nothing is ever pruned from the old one;
- **a new name, the same ids as state no relation claims** (a rename): the state moves
  to the new name (``relation_renamed``), owned pairs and all;
- **state no relation claims** (a relation removed, or set aside above): kept, never
  pruned (no source speaks for it), reported at every start (``orphaned_state``) and by
  ``syncd plan``. A relation configured again with the same ids takes it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from syncd.config.settings import RelationSettings
from syncd.state import Identity, StateStore

log = structlog.get_logger("syncd")


@dataclass(frozen=True, slots=True)
class Orphan:
    """State no configured relation claims."""

    name: str
    identity: Identity | None
    known: int
    owned: int

    def as_dict(self) -> dict[str, object]:
        ids = self.identity._asdict() if self.identity is not None else {}
        return {"relation": self.name, **ids, "known": self.known, "owned": self.owned}


@dataclass(slots=True)
class IdentityCheck:
    changed: list[tuple[str, str]] = field(default_factory=list)
    """(relation, the name its old state was set aside under)."""
    renamed: list[tuple[str, str]] = field(default_factory=list)
    """(old name, new name) of state that moved with a renamed relation."""
    orphans: list[Orphan] = field(default_factory=list)

    @property
    def relocates(self) -> bool:
        """Some state would change hands (a relation changed or renamed)."""
        return bool(self.changed or self.renamed)


def identity_of(rel: RelationSettings) -> Identity:
    return Identity(rel.bk_obj_id, rel.bk_asst_obj_id, rel.bk_obj_asst_id)


def check_identities(
    store: StateStore, relations: list[RelationSettings], *, write: bool, quiet: bool = False
) -> IdentityCheck:
    """Hold the configuration against the state (see the module); ``write`` False only
    says what would happen (a read-only store). Logs what it finds unless ``quiet``."""
    say = _Quiet() if quiet else log
    stored = store.meta.stored_identities()
    configured = {rel.name: identity_of(rel) for rel in relations}
    check = IdentityCheck()
    for name, ident in configured.items():
        old = stored.get(name)
        if old is not None and old != ident:
            aside = _aside_name(name, old, {*stored, *configured})
            check.changed.append((name, aside))
            stored[aside] = stored.pop(name)
            if write:
                store.meta.rename_relation(name, aside)
            say.warning(
                "relation_changed",
                relation=name,
                was=old._asdict(),
                now=ident._asdict(),
                state_set_aside_as=aside,
                action="resync the new association from the CMDB; nothing is pruned "
                "from the old one",
            )
    for name, ident in configured.items():
        if name in stored:
            continue
        claims = [n for n, i in stored.items() if n not in configured and i == ident]
        if len(claims) == 1:
            check.renamed.append((claims[0], name))
            stored[name] = stored.pop(claims[0])
            if write:
                store.meta.rename_relation(claims[0], name)
            say.info("relation_renamed", relation=name, was=claims[0])
    if write:
        for name, ident in configured.items():
            if stored.get(name) is None:
                store.meta.set_relation_identity(name, ident)
    for name, was in stored.items():
        if name in configured:
            continue
        known, owned = store.meta.pair_counts(name)
        check.orphans.append(Orphan(name, was, known, owned))
        say.warning(
            "orphaned_state",
            relation=name,
            bk_obj_asst_id=was.bk_obj_asst_id if was is not None else None,
            known=known,
            owned=owned,
            hint="no configured relation describes this state: its pairs are kept and never "
            "pruned; configure a relation with the same ids to take them back",
        )
    return check


def _aside_name(name: str, old: Identity, taken: set[str]) -> str:
    base = f"{name}@{old.bk_obj_asst_id}"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}#{n}"
    return candidate


class _Quiet:
    def info(self, *args: object, **kw: object) -> None:
        pass

    def warning(self, *args: object, **kw: object) -> None:
        pass
