"""Small values kept beside the known pairs: source sizes, prune baselines, watch cursors.

They guard and resume the stages rather than describe pairs, and are single rows (mostly
in the ``meta`` table), so they sit apart from the pair queries of :mod:`syncd.state.store`.
"""

from __future__ import annotations

import sqlite3
from typing import NamedTuple

from syncd.state.db import Database


class Identity(NamedTuple):
    """What a relation's state describes: one model association between two objects."""

    bk_obj_id: str
    bk_asst_obj_id: str
    bk_obj_asst_id: str


class Meta:
    """Source sizes, prune baselines and watch cursors (``StateStore.meta``)."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def watch_cursor(self, bk_obj_id: str, tenant: str | None = None) -> str | None:
        """Where the watch of one object's associations goes on from after a restart.

        A multi-tenant CMDB keeps an event chain per tenant, so a cursor is kept per
        (tenant, object): another tenant's would be unknown there (1103007)."""
        with self._db.read() as db:
            row = db.execute(
                "SELECT value FROM meta WHERE key = ?", (_watch_cursor_key(bk_obj_id, tenant),)
            ).fetchone()
            return None if row is None else str(row[0])

    def set_watch_cursor(
        self, bk_obj_id: str, cursor: str | None, tenant: str | None = None
    ) -> None:
        """Keep (or, with None, drop: the known state is not in step with any cursor)."""
        key = _watch_cursor_key(bk_obj_id, tenant)
        with self._db.tx() as db:
            if cursor is None:
                db.execute("DELETE FROM meta WHERE key = ?", (key,))
                return
            db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, cursor),
            )

    def tenant_mismatch(self, tenant: str | None) -> str | None:
        """Why this state cannot serve ``tenant`` (``cmdb.tenant_id``), or None.

        The known pairs, their ownership and the association ids belong to one tenant's
        data: carried to another tenant, a resync there would keep the ownership of any
        pair that happens to exist in both, and a prune could then delete a pair syncd
        never created there. The first use records the tenant (none: ``""``); a state
        made before tenants is taken as the configured one's.
        """
        want = tenant or ""
        with self._db.tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (_TENANT_KEY,)).fetchone()
            if row is None:
                db.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (_TENANT_KEY, want))
                return None
        have = str(row[0])
        if have == want:
            return None
        made = f"tenant {have!r}" if have else "a CMDB without tenants"
        now = f"tenant {want!r}" if want else "a CMDB without tenants (no cmdb.tenant_id)"
        return (
            f"the state was made for {made}, but this configuration syncs {now}: give each "
            "tenant a state.path of its own (or move this file away to start afresh)"
        )

    # ------------------------------------------------------------------ identity

    def stored_identities(self) -> dict[str, Identity | None]:
        """Every relation the state holds, with what its state describes (None: not
        recorded yet, a state file of schema 2 or older)."""
        with self._db.read() as db:
            try:
                rows = db.execute(
                    "SELECT name, bk_obj_id, bk_asst_obj_id, bk_obj_asst_id FROM relations"
                ).fetchall()
            except sqlite3.OperationalError:  # schema 2, opened read-only
                rows = [(n, None, None, None) for (n,) in db.execute("SELECT name FROM relations")]
        return {
            name: None if obj is None else Identity(obj, asst, oa)
            for name, obj, asst, oa in sorted(rows)
        }

    def relation_identity(self, relation: str) -> Identity | None:
        return self.stored_identities().get(relation)

    def pair_counts(self, relation: str) -> tuple[int, int]:
        """(known, owned) pairs of a relation's state."""
        with self._db.read() as db:
            row = db.execute(
                "SELECT count(*), coalesce(sum(owned), 0) FROM pairs"
                " WHERE rel = (SELECT id FROM relations WHERE name = ?)",
                (relation,),
            ).fetchone()
            return int(row[0]), int(row[1])

    def set_relation_identity(self, relation: str, identity: Identity) -> None:
        with self._db.tx() as db:
            rel = self._db.rel_w(db, relation)
            db.execute(
                "UPDATE relations SET bk_obj_id = ?, bk_asst_obj_id = ?, bk_obj_asst_id = ?"
                " WHERE id = ?",
                (*identity, rel),
            )

    def rename_relation(self, old: str, new: str) -> None:
        """Move a relation's whole state (pairs, failures, attempts) to another name, which
        must have none; its meta rows keyed by name stay behind (they are baselines)."""
        with self._db.tx() as db:
            db.execute("UPDATE relations SET name = ? WHERE name = ?", (new, old))
        self._db.forget_rel_ids()

    # ------------------------------------------------------------------ baselines

    # Two sizes of a relation's source guard against a broken read. The source size is
    # the last read's, for the empty-source guard; the prune baseline is the last size
    # pruning accepted, for the shrink guard. A resync resets both (the operator's word).

    def source_size(self, relation: str) -> int:
        """Pairs the source had at its last committed read (0: none yet)."""
        with self._db.read() as db:
            row = db.execute(
                "SELECT value FROM meta WHERE key = ?", (_source_size_key(relation),)
            ).fetchone()
            return 0 if row is None else int(row[0])

    def set_source_size(self, relation: str, count: int) -> None:
        with self._db.tx() as db:
            db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (_source_size_key(relation), str(count)),
            )

    def prune_baseline(self, relation: str) -> int | None:
        """Size of the last desired set pruning accepted (a guard against a truncated source)."""
        with self._db.read() as db:
            row = db.execute(
                "SELECT last_good_desired FROM relations WHERE name = ?", (relation,)
            ).fetchone()
            return None if row is None or row[0] is None else int(row[0])

    def set_prune_baseline(self, relation: str, count: int) -> None:
        with self._db.tx() as db:
            rel = self._db.rel_w(db, relation)
            db.execute("UPDATE relations SET last_good_desired = ? WHERE id = ?", (count, rel))

    def source_baseline(self, relation: str, source: str) -> int | None:
        """One of a relation's several sources: the size pruning last accepted from it."""
        with self._db.read() as db:
            row = db.execute(
                "SELECT value FROM meta WHERE key = ?", (_source_baseline_key(relation, source),)
            ).fetchone()
            return None if row is None else int(row[0])

    def set_source_baseline(self, relation: str, source: str, count: int) -> None:
        with self._db.tx() as db:
            db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (_source_baseline_key(relation, source), str(count)),
            )


_TENANT_KEY = "cmdb_tenant"


def _source_size_key(relation: str) -> str:
    return f"last_desired:{relation}"


def _watch_cursor_key(bk_obj_id: str, tenant: str | None) -> str:
    """Without a tenant the key of old (a CMDB without tenants); a tenant id has no ':'."""
    if tenant is None:
        return f"watch_cursor:{bk_obj_id}"
    return f"watch_cursor:{tenant}:{bk_obj_id}"


def _source_baseline_key(relation: str, source: str) -> str:
    return f"prune_baseline:{relation}/{source}"
