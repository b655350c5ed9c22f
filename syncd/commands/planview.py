"""Render ``syncd plan``: a terminal view and a stable JSON document.

The JSON field names are a contract (documented in the README): scripts gate
change windows on them, so fields are only ever added.
"""

from __future__ import annotations

import json
from typing import Any

from syncd.config.settings import RelationSettings, Settings
from syncd.core.pairs import unpack
from syncd.core.plan import RelationPlan, SourceStatus
from syncd.engine.identity import IdentityCheck

PLAN_FORMAT_VERSION = 1


def plan_document(
    settings: Settings,
    plans: list[RelationPlan | str],
    association_ids: dict[str, dict[int, int | None]],
    identities: IdentityCheck | None = None,
) -> dict[str, Any]:
    """The JSON plan. A ``str`` in ``plans`` is a relation that could not be planned."""
    relations: list[dict[str, Any]] = []
    identities = identities or IdentityCheck()
    aside = dict(identities.changed)
    renamed = {new: old for old, new in identities.renamed}
    for rel, plan in zip(settings.relations, plans, strict=True):
        entry: dict[str, Any] = {"relation": rel.name, "bk_obj_asst_id": rel.bk_obj_asst_id}
        if rel.name in aside:
            entry["state_set_aside_as"] = aside[rel.name]
        if rel.name in renamed:
            entry["renamed_from"] = renamed[rel.name]
        if isinstance(plan, str):
            entry.update(_failed_entry(plan, rel.prune.enabled))
        else:
            entry.update(_planned_entry(plan, rel, association_ids.get(rel.name, {})))
        relations.append(entry)
    changes = any(e.get("create") or e.get("delete") or e.get("move") for e in relations)
    doc: dict[str, Any] = {
        "version": PLAN_FORMAT_VERSION,
        "changes": changes,
        "relations": relations,
    }
    if identities.orphans:  # only then: plans of a tidy state stay byte for byte the same
        doc["orphans"] = [o.as_dict() for o in identities.orphans]
    return doc


def _planned_entry(
    plan: RelationPlan, rel: RelationSettings, ids: dict[int, int | None]
) -> dict[str, Any]:
    """One planned relation's part of the document (field order is the output's)."""
    moving = {m.create for m in plan.moves}
    create = [_pair(k) for k in plan.to_create if k not in moving]
    delete = [{**_pair(k), "association_id": ids.get(k)} for k in plan.prune.delete]
    move = [
        {**_pair(m.create), "replaces": [_with_id(old, ids) for old in m.replaces]}
        for m in plan.moves
    ]
    held = [
        {**_pair(k), "reason": kind, "error": message}
        | (
            {"blocked_by": [_with_id(b, ids) for b in plan.blockers[k]]}
            if k in plan.blockers
            else {}
        )
        for k, (kind, message) in sorted(plan.held.items())
    ]
    kept = [{**_with_id(k, ids), "key": why} for k, why in sorted(plan.kept.items())]
    deferred = [_pair(k) for k in sorted(plan.deferred)]
    unresolved = [
        {"side": u.side, "key": u.key, "origin": u.origin, "source_name": u.source}
        for u in sorted(plan.unresolved)
    ]
    counted: dict[str, list[dict[str, Any]]] = {
        "create": create,
        "delete": delete,
        "held": held,
        "deferred": deferred,
        "unresolved": unresolved,
    }
    return {
        "error": None,
        "desired": plan.desired,
        "known": plan.known,
        "counts": {
            **{name: len(items) for name, items in counted.items()},
            "absent": len(plan.absent),
            "bad_records": plan.bad_records,
            "move": len(move),
            "kept_uncertain": len(kept),
        },
        "source_counts": dict(sorted(plan.source_counts.items())),
        "sources": [_source(s) for s in plan.sources],
        **counted,
        "prune": _prune(plan, rel),
        "move": move,
        "kept": kept,
        "moves": {
            "enabled": rel.moves.enabled,
            "blocked": plan.moves_blocked,
            "capped": plan.moves_capped,
        },
    }


def _prune(plan: RelationPlan, rel: RelationSettings) -> dict[str, Any]:
    prune = plan.prune
    return {
        "enabled": rel.prune.enabled,
        "blocked": prune.blocked,
        "waiting": prune.waiting,
        "capped": prune.capped,
    }


def _held(
    key: int, kind: str, message: str, plan: RelationPlan, ids: dict[int, int | None]
) -> dict[str, Any]:
    entry = {**_pair(key), "reason": kind, "error": message}
    if key in plan.blockers:
        entry["blocked_by"] = [_with_id(b, ids) for b in plan.blockers[key]]
    return entry


def _source(s: SourceStatus) -> dict[str, Any]:
    return {
        "name": s.name,
        "type": s.type,
        "desired": s.pairs,
        "bad_records": s.bad_records,
        "unresolved": s.unresolved,
        "error": s.error,
    }


def _failed_entry(error: str, prune_enabled: bool) -> dict[str, Any]:
    """A relation that could not be planned: every key, empty or null, so scripts need
    no special case."""
    counts = (
        "create",
        "delete",
        "held",
        "deferred",
        "unresolved",
        "absent",
        "bad_records",
        "move",
        "kept_uncertain",
    )
    return {
        "error": error,
        "desired": None,
        "known": None,
        "counts": dict.fromkeys(counts, 0),
        "source_counts": {},
        "sources": [],
        "create": [],
        "delete": [],
        "held": [],
        "deferred": [],
        "unresolved": [],
        "prune": {
            "enabled": prune_enabled,
            "blocked": "the relation could not be planned" if prune_enabled else None,
            "waiting": 0,
            "capped": 0,
        },
        "move": [],
        "kept": [],
        "moves": {"enabled": True, "blocked": None, "capped": 0},
    }


def _pair(key: int) -> dict[str, int]:
    src, dst = unpack(key)
    return {"bk_inst_id": src, "bk_asst_inst_id": dst}


def _with_id(key: int, ids: dict[int, int | None]) -> dict[str, int | None]:
    return {**_pair(key), "association_id": ids.get(key)}


def render_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False)


def render_text(doc: dict[str, Any], *, limit: int = 20) -> str:
    """A reviewer's view: counts first, then up to ``limit`` pairs of each kind."""
    out: list[str] = []
    for rel in doc["relations"]:
        out.append(f"relation {rel['relation']} ({rel['bk_obj_asst_id']})")
        if "state_set_aside_as" in rel:
            out.append(
                f"  its ids changed: the old state is set aside as {rel['state_set_aside_as']}"
                " and the new association resynced"
            )
        if "renamed_from" in rel:
            out.append(f"  renamed from {rel['renamed_from']}: its state moves with it")
        if rel.get("error"):
            out.append(f"  ERROR: {rel['error']}")
            continue
        c = rel["counts"]
        out.append(
            f"  desired {rel['desired']}, in CMDB {rel['known']}: "
            f"create {c['create']}, delete {c['delete']}, held back {c['held']}, "
            f"deferred {c['deferred']}, unresolved {c['unresolved']}, "
            f"bad records {c['bad_records']}"
            + (f", move {c['move']}" if c["move"] else "")
            + (f", kept for uncertainty {c['kept_uncertain']}" if c["kept_uncertain"] else "")
        )
        for label, sign, items in (
            ("create", "+", rel["create"]),
            ("delete", "-", rel["delete"]),
        ):
            for item in items[:limit]:
                extra = f"  (association {item['association_id']})" if label == "delete" else ""
                out.append(f"  {sign} {item['bk_inst_id']} -> {item['bk_asst_inst_id']}{extra}")
            if len(items) > limit:
                out.append(f"  {sign} ... and {len(items) - limit} more")
        _render_moves(out, rel, limit)
        for item in rel["held"][:limit]:
            blockers = ", ".join(_named(b) for b in item.get("blocked_by", ()))
            by = f" by {blockers}" if blockers else ""
            out.append(
                f"  ~ {item['bk_inst_id']} -> {item['bk_asst_inst_id']}  held: {item['reason']}{by}"
            )
        if len(rel["held"]) > limit:
            out.append(f"  ~ ... and {len(rel['held']) - limit} more held back")
        _render_sources(out, rel, limit)
        for item in rel["kept"][:limit]:
            out.append(f"  = {_named(item)}  kept: {item['key']}")
        if len(rel["kept"]) > limit:
            out.append(f"  = ... and {len(rel['kept']) - limit} more kept for uncertainty")
        _render_prune(out, rel["prune"], c["absent"])
    for orphan in doc.get("orphans", ()):
        out.append(
            f"orphaned state {orphan['relation']} ({orphan.get('bk_obj_asst_id', '?')}): "
            f"{orphan['known']} known, {orphan['owned']} owned; kept, never pruned"
        )
    out.append("changes pending" if doc["changes"] else "no changes")
    return "\n".join(out)


def _render_sources(out: list[str], rel: dict[str, Any], limit: int) -> None:
    """Each source's answer (when there are several), then the keys no instance carries."""
    several = len(rel["sources"]) > 1
    for status in rel["sources"] if several else ():
        if status["error"]:
            out.append(f"  ! source {status['name']} failed: {status['error']}")
        else:
            out.append(
                f"  source {status['name']} ({status['type']}): {status['desired']} desired, "
                f"{status['unresolved']} unresolved, {status['bad_records']} bad records"
            )
    for item in rel["unresolved"][:limit]:
        where = f"{item['source_name']}: {item['origin']}" if several else item["origin"]
        out.append(f"  ? {item['side']} key {item['key']!r} not in the CMDB ({where})")
    if len(rel["unresolved"]) > limit:
        out.append(f"  ? ... and {len(rel['unresolved']) - limit} more unresolved")


def _render_prune(out: list[str], prune: dict[str, Any], absent: int) -> None:
    """Why pairs absent from the source are not deleted now, if they are not."""
    if not prune["enabled"]:
        if absent:
            out.append(f"  pruning off: {absent} pair(s) absent from the source are kept")
    elif prune["blocked"]:
        out.append(f"  pruning blocked: {prune['blocked']}")
    elif prune["waiting"] or prune["capped"]:
        out.append(
            f"  pruning: {prune['waiting']} in their grace period, "
            f"{prune['capped']} over this cycle's cap"
        )


def _named(item: dict[str, Any]) -> str:
    assoc = item.get("association_id")
    where = f" (association {assoc})" if assoc is not None else ""
    return f"{item['bk_inst_id']} -> {item['bk_asst_inst_id']}{where}"


def _render_moves(out: list[str], rel: dict[str, Any], limit: int) -> None:
    """``> old -> new``: each move with the pairs it replaces; then what holds moves back."""
    for item in rel["move"][:limit]:
        old = ", ".join(_named(r) for r in item["replaces"])
        out.append(f"  > {old}  =>  {item['bk_inst_id']} -> {item['bk_asst_inst_id']}")
    if len(rel["move"]) > limit:
        out.append(f"  > ... and {len(rel['move']) - limit} more moves")
    moves = rel["moves"]
    if moves["blocked"]:
        out.append(f"  moves blocked: {moves['blocked']}")
    elif moves["capped"]:
        out.append(f"  moves: {moves['capped']} over this cycle's cap")
