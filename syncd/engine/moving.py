"""Moves and holds in the engine: running a move's two steps, and the lines saying what
waits and why.

The decisions are :mod:`syncd.core.moves` and :mod:`syncd.core.uncertain` (pure); this is
what carries them out: the deletes of a cycle's moves before any of their creates, the
``pair`` lines of each step (``operation: "move"``), the ``held`` lines naming a blocking
pair, and the once-a-cycle ``moves_held`` and ``prune_kept`` lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import structlog

from syncd.config.settings import RelationSettings
from syncd.core.moves import MOVE_BLOCKED, MOVE_CAPPED
from syncd.core.outcome import BatchOutcome, LogLine, pair_fields
from syncd.core.pairs import PairKey, pack, unpack
from syncd.core.plan import RelationPlan
from syncd.engine.known import Known
from syncd.engine.report import RelationReport
from syncd.support.log import log_pairs

log = structlog.get_logger("syncd")

Replaces = Mapping[PairKey, list[dict[str, int | None]]]


class Deletes(Protocol):
    """What a move's first step needs of the applier (:class:`syncd.engine.apply.Applier`)."""

    @property
    def known(self) -> Known: ...

    async def delete(
        self,
        rel: RelationSettings,
        keys: list[PairKey],
        report: RelationReport,
        *,
        replaced_by: Mapping[PairKey, PairKey] | None = None,
    ) -> set[PairKey]: ...


"""A move's create -> the old pairs deleted for it (ids and association id, as logged)."""


def mark_moves(lines: Sequence[LogLine], replaces: Replaces) -> list[LogLine]:
    """A move's create lines: ``operation: "move"``, ``step: "create"`` and ``replaces``."""
    out: list[LogLine] = []
    for level, fields in lines:
        src, dst = fields.get("bk_inst_id"), fields.get("bk_asst_inst_id")
        old = (
            replaces.get(pack(src, dst)) if isinstance(src, int) and isinstance(dst, int) else None
        )
        if old is not None and fields.get("operation") == "create":
            fields = {**fields, "operation": "move", "step": "create", "replaces": old}
        out.append((level, fields))
    return out


def count_moves(outcome: BatchOutcome, replaces: Replaces) -> tuple[int, int]:
    """(moves completed, move creates failed) in one answer."""
    done = sum(1 for s, d, _ in (*outcome.created, *outcome.exists) if pack(s, d) in replaces)
    failed = sum(1 for f in outcome.failed if pack(f.src, f.dst) in replaces)
    return done, failed


def delete_fields(
    ok: bool,
    index: int,
    key: PairKey,
    association_id: int,
    error: str | None,
    replaced_by: Mapping[PairKey, PairKey] | None,
) -> dict[str, Any]:
    """A delete's ``pair`` line: a prune's, or a move's first step (``replaced_by``)."""
    extra: dict[str, Any] = {} if ok else {"error": error}
    operation = "delete"
    if replaced_by is not None:
        operation = "move"
        new_src, new_dst = unpack(replaced_by[key])
        extra["step"] = "delete"
        extra["replaced_by"] = {"bk_inst_id": new_src, "bk_asst_inst_id": new_dst}
    return pair_fields(
        "deleted" if ok else "failed",
        operation,
        index,
        *unpack(key),
        association_id=association_id,
        **extra,
    )


async def clear_for_moves(
    apply: Deletes, rel: RelationSettings, decided: RelationPlan, report: RelationReport
) -> tuple[list[list[PairKey]], Replaces]:
    """A move's first step: delete every pair the moves replace (all before any create).

    Returns the batches without the creates whose old pair could not be deleted (they are
    tried again next cycle), and what each remaining create replaces.
    """
    store = apply.known.store
    deletes = sorted({old for move in decided.moves for old in move.replaces})
    ids = store.association_ids(rel.name, deletes)
    if any(ids.get(k) is None for k in deletes):
        await apply.known.fill_association_ids(rel)
        ids = store.association_ids(rel.name, deletes)
    replaced_by = {old: move.create for move in decided.moves for old in move.replaces}
    gone = await apply.delete(rel, deletes, report, replaced_by=replaced_by)
    ready = {m.create for m in decided.moves if all(old in gone for old in m.replaces)}
    waiting = len(decided.moves) - len(ready)
    if waiting:
        report.moves_held += waiting
        log.warning(
            "moves_waiting",
            moves=waiting,
            reason="a pair they replace could not be deleted; tried again next cycle",
        )
    unready = {m.create for m in decided.moves} - ready
    batches = [
        b for b in ([k for k in batch if k not in unready] for batch in decided.batches) if b
    ]
    replaces: Replaces = {
        move.create: blocked_by(move.replaces, ids)
        for move in decided.moves
        if move.create in ready
    }
    return batches, replaces


def blocked_by(
    pairs: tuple[PairKey, ...], ids: Mapping[PairKey, int | None]
) -> list[dict[str, int | None]]:
    """Known pairs as a line or the plan names them: both ids and the association id."""
    return [
        {"bk_inst_id": s, "bk_asst_inst_id": d, "association_id": ids.get(old)}
        for old in pairs
        for s, d in [unpack(old)]
    ]


def _named_holds(decided: RelationPlan) -> dict[PairKey, tuple[str, str]]:
    """Held creates a known pair blocks and no move replaces (caps and guards apart)."""
    return {
        key: why
        for key, why in decided.held.items()
        if key in decided.blockers and why[0] not in (MOVE_CAPPED, MOVE_BLOCKED)
    }


HELD_REPEAT = 3600.0
"""Seconds before a pair still held for the same reason is named again."""

Holds = dict[PairKey, tuple[str, str]]


class HeldLines:
    """Which held creates were named, and when. A pair a foreign blocker holds is named
    when it is first held, when its reason or its blockers change, and once an hour while
    it stays held: not every cycle (a thousand held pairs at a 5-minute interval would be
    288,000 lines a day). The relation line counts every held pair, every cycle."""

    def __init__(self, repeat: float = HELD_REPEAT) -> None:
        self.repeat = repeat
        self._named: dict[str, dict[PairKey, tuple[tuple[str, tuple[PairKey, ...]], float]]] = {}

    def due(self, relation: str, decided: RelationPlan, now: float) -> Holds:
        """The held creates to name this cycle; forgets those no longer held, so a pair
        held again later is news again."""
        holds = _named_holds(decided)
        named = self._named.setdefault(relation, {})
        for released in named.keys() - holds.keys():
            del named[released]
        due: Holds = {}
        for key, why in holds.items():
            mark = (why[0], decided.blockers[key])
            last = named.get(key)
            if last is None or last[0] != mark or not 0 <= now - last[1] < self.repeat:
                named[key] = (mark, now)
                due[key] = why
        return due


def blocking_pairs(decided: RelationPlan, holds: Holds) -> set[PairKey]:
    """The known pairs that the ``held`` lines of ``holds`` name."""
    return {old for key in holds for old in decided.blockers[key]}


def log_blocked(decided: RelationPlan, holds: Holds, ids: Mapping[PairKey, int | None]) -> None:
    """One ``held`` line per create of ``holds`` (see HeldLines), naming the blocking pairs
    (ids and association id) and what to do."""
    lines: list[LogLine] = [
        (
            "warning",
            pair_fields(
                "held",
                "create",
                None,
                *unpack(key),
                reason=reason,
                error=message,
                blocked_by=blocked_by(decided.blockers[key], ids),
            ),
        )
        for key, (reason, message) in sorted(holds.items())
    ]
    if lines:
        log_pairs(lines)


KEPT_SAMPLE = 20
"""Kept pairs named on the ``prune_kept`` line; ``syncd plan`` lists every one."""


def log_holds(decided: RelationPlan) -> None:
    """Once per cycle: what the move caps and guards held back, and what was kept."""
    if decided.moves_capped or decided.moves_blocked:
        log.warning(
            "moves_held",
            capped=decided.moves_capped,
            blocked=decided.moves_blocked,
            hint="they run in a later cycle",
        )
    if decided.kept:
        sample = sorted(decided.kept.items())[:KEPT_SAMPLE]
        log.info(
            "prune_kept",
            pairs=len(decided.kept),
            reason="a fact with an unresolved key could still state them",
            kept=[{**_pair(key), "key": why} for key, why in sample],
        )


def _pair(key: PairKey) -> dict[str, Any]:
    src, dst = unpack(key)
    return {"bk_inst_id": src, "bk_asst_inst_id": dst}
