"""The simulated CMDB's data: instances, model associations and instance associations.

Pure and synchronous. Every per-detail step is O(1): pairs are indexed by
``(bk_obj_asst_id, src, dst)``, the 1:1 and 1:n checks read per-side counters,
and instance existence is a set lookup or a range test. Rows live once and are
reachable from both objects, as the CMDB keeps each association in the tables
of both its source and its target model.
"""

from __future__ import annotations

import bisect
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from cmdb_simulator import query
from cmdb_simulator.fixture import (
    HOST,
    Fixture,
    FixtureError,
    InstanceAssociation,
    ModelAssociation,
    id_field,
)
from cmdb_simulator.messages import (
    ASSOCIATION_ALREADY_EXIST,
    ASST_INST_NOT_EXIST,
    INST_TO_ASST_NOT_EXIST,
    ONE_TO_MANY_VIOLATED,
    ONE_TO_ONE_VIOLATED,
)

Row = dict[str, Any]
SUPPLIER_ACCOUNT = "0"
ChangeHook = Callable[[tuple[str, Row]], None]
"""Told ``("create" | "delete", row)`` for every association stored or removed."""


def host_ip(host_id: int) -> str:
    """A stable, unique-per-id inner IP for generated hosts."""
    return f"10.{(host_id >> 16) & 255}.{(host_id >> 8) & 255}.{host_id & 255}"


class ObjectTable:
    """Instances of one object: explicit rows plus id ranges generated on first read."""

    def __init__(self, obj_id: str) -> None:
        self.obj_id = obj_id
        self.id_field = id_field(obj_id)
        self.explicit: dict[int, Row] = {}
        self.ranges: list[tuple[int, int]] = []
        self._rows: list[Row] | None = None
        self._indexes: dict[str, dict[Any, list[Row]]] = {}

    def exists(self, inst_id: int) -> bool:
        if inst_id in self.explicit:
            return True
        for lo, hi in self.ranges:  # noqa: SIM110 - a plain loop is faster than any() here
            if lo <= inst_id <= hi:
                return True
        return False

    def generated(self, inst_id: int) -> Row:
        if self.obj_id == HOST:
            return {
                "bk_host_id": inst_id,
                "bk_host_innerip": host_ip(inst_id),
                "bk_host_name": f"host-{inst_id}",
                "bk_cloud_id": 0,
            }
        return {
            "bk_inst_id": inst_id,
            "bk_inst_name": f"{self.obj_id}-{inst_id}",
            "bk_obj_id": self.obj_id,
        }

    def add(self, entries: Iterable[Mapping[str, Any]]) -> None:
        for entry in entries:
            inst_id = int(entry[self.id_field])
            self.explicit[inst_id] = {**self.generated(inst_id), **entry}
        self._rows = None
        self._indexes.clear()

    def add_range(self, lo: int, hi: int) -> None:
        self.ranges.append((lo, hi))
        self._rows = None
        self._indexes.clear()

    def rows(self) -> list[Row]:
        """All instances in id order (generated ones materialised once)."""
        if self._rows is None:
            ids: set[int] = set(self.explicit)
            for lo, hi in self.ranges:
                ids.update(range(lo, hi + 1))
            self._rows = [self.explicit.get(i) or self.generated(i) for i in sorted(ids)]
        return self._rows

    def index(self, fld: str) -> dict[Any, list[Row]]:
        """Rows by a field's value (array fields indexed per element), built on demand."""
        idx = self._indexes.get(fld)
        if idx is None:
            idx = {}
            for row in self.rows():
                value = row.get(fld)
                for v in value if isinstance(value, list) else (value,):
                    if isinstance(v, dict):
                        continue
                    idx.setdefault((isinstance(v, bool), v), []).append(row)
            self._indexes[fld] = idx
        return idx

    def __len__(self) -> int:
        return len(self.rows())


def _sort_key(fld: str) -> Any:
    def key(row: Mapping[str, Any]) -> tuple[int, Any]:
        v = row.get(fld)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return (0, v)
        if v is None:
            return (2, "")
        return (1, str(v))

    return key


def sort_rows(rows: list[Row], sort: str, natural: str) -> list[Row]:
    """Apply a CMDB ``page.sort`` (``"a,-b"``); rows already come in ``natural`` order."""
    specs = [s.strip() for s in sort.split(",") if s.strip()] if sort else []
    if not specs or specs == [natural]:
        return rows
    if specs == [f"-{natural}"]:
        return rows[::-1]
    out = list(rows)
    for spec in reversed(specs):
        desc = spec.startswith("-")
        fld = spec.lstrip("-+").split(":")[0]
        out.sort(key=_sort_key(fld), reverse=desc)
    return out


def project(rows: Iterable[Row], fields: list[str] | None) -> list[Row]:
    if not fields:
        return [dict(r) for r in rows]
    return [{f: r[f] for f in fields if f in r} for r in rows]


class DuplicateKeyError(Exception):
    """The unique index refused an insert: another request stored the pair meanwhile."""


class Store:
    """All data of one simulated CMDB."""

    def __init__(
        self,
        fixture: Fixture,
        *,
        supplier_account: str | None = SUPPLIER_ACCOUNT,
        ids: Iterator[int] | None = None,
    ) -> None:
        self.supplier_account = supplier_account
        """None on the multi-tenant line, whose rows have no ``bk_supplier_account``
        (release-v3.15.1: src/common/metadata/association.go:542-559)."""
        self.tables: dict[str, ObjectTable] = {}
        self.models: dict[str, ModelAssociation] = {}
        self.model_ids: dict[str, int] = {}
        self.rows: dict[int, Row] = {}
        self.by_pair: dict[tuple[str, int, int], int] = {}
        self.doubled: dict[tuple[str, int, int], list[int]] = {}
        """Second rows of a pair, stored by a lost race where no unique index exists."""
        self.by_asst: dict[str, dict[int, Row]] = {}
        self.by_object: dict[str, dict[int, Row]] = {}
        self.ids_by_asst: dict[str, list[int]] = {}
        self.ids_by_object: dict[str, list[int]] = {}
        """The ids of ``by_asst`` / ``by_object`` in ascending order, for ``id > last``
        pages by bisection (ids only grow, so an insert appends)."""
        self.src_count: dict[tuple[str, int], int] = {}
        self.dst_count: dict[tuple[str, int], int] = {}
        self.version = 0
        self.created_total = 0
        """Associations inserted since start (the fixture's own pairs not counted)."""
        self.deleted_total = 0
        """Associations deleted since start, by any API or :meth:`delete_pairs`."""
        self._ids = ids if ids is not None else itertools.count(1)
        """Association ids; tenants share one sequence, as bk-cmdb draws them system-wide
        (release-v3.15.1: core/instance.go:158-160)."""
        self._cache: tuple[Any, int, list[Row]] | None = None
        self.on_change: ChangeHook | None = None
        """Set after seeding (the fixture's pairs are no events): the watch's event chain."""
        for obj_id, entries in fixture.objects.items():
            self.table(obj_id).add(entries)
        for obj_id, ranges in fixture.instance_ranges.items():
            for lo, hi in ranges:
                self.table(obj_id).add_range(lo, hi)
        for i, model in enumerate(fixture.model_associations, start=1):
            self.models[model.bk_obj_asst_id] = model
            self.model_ids[model.bk_obj_asst_id] = i
        for i, pair in enumerate(fixture.instance_associations):
            self._seed_pair(fixture.source, i, pair)
        self.created_total = 0

    # --- instances ----------------------------------------------------------------------------

    def table(self, obj_id: str) -> ObjectTable:
        table = self.tables.get(obj_id)
        if table is None:
            table = self.tables[obj_id] = ObjectTable(obj_id)
        return table

    def instance_exists(self, obj_id: str, inst_id: int) -> bool:
        table = self.tables.get(obj_id)
        return table is not None and table.exists(inst_id)

    def search_instances(
        self, obj_id: str, rule: Any, fields: list[str] | None, start: int, limit: int, sort: str
    ) -> tuple[int, list[Row]]:
        """Matching instances of one object: (total count, one page)."""
        table = self.tables.get(obj_id)
        if table is None:
            return 0, []
        candidates = table.rows()
        if rule is not None:
            for fld, values in query.equality_hints(rule).items():
                idx = table.index(fld)
                seen: dict[int, Row] = {}
                for v in values:
                    for row in idx.get((isinstance(v, bool), v), ()):
                        seen[id(row)] = row
                candidates = sorted(seen.values(), key=lambda r: int(r[table.id_field]))
                break
            pred = query.compile_rule(rule)
            candidates = [r for r in candidates if pred(r)]
        ordered = sort_rows(candidates, sort, table.id_field)
        return len(ordered), project(ordered[start : start + limit], fields)

    # --- model associations -------------------------------------------------------------------

    def model_row(self, model: ModelAssociation) -> Row:
        return {
            "id": self.model_ids[model.bk_obj_asst_id],
            "bk_obj_asst_id": model.bk_obj_asst_id,
            "bk_obj_asst_name": model.bk_obj_asst_name,
            "bk_obj_id": model.bk_obj_id,
            "bk_asst_obj_id": model.bk_asst_obj_id,
            "bk_asst_id": model.bk_asst_id,
            "mapping": model.mapping,
            "on_delete": model.on_delete,
            "is_pre": False,
        } | _owner(self.supplier_account)

    def find_models(self, cond: Mapping[str, Any], *, check_dangerous: bool = True) -> list[Row]:
        """Model associations matching a Mongo condition; raises :class:`MongoError`."""
        if check_dangerous:
            check_dangerous_ops(cond)
        match = mongo_matcher(cond)
        return [r for r in (self.model_row(m) for m in self.models.values()) if match(r)]

    # --- instance associations ----------------------------------------------------------------

    def writer(self, model: ModelAssociation, obj_id: str, asst_obj_id: str) -> PairWriter:
        """A per-request helper with the indexes of one relation bound, for the hot loop."""
        return PairWriter(self, model, obj_id, asst_obj_id)

    def check_mapping(self, model: ModelAssociation, src: int, dst: int) -> int | None:
        asst_id = model.bk_obj_asst_id
        if model.mapping == "1:1" and (
            self.src_count.get((asst_id, src), 0) > 0 or self.dst_count.get((asst_id, dst), 0) > 0
        ):
            return ONE_TO_ONE_VIOLATED
        if model.mapping == "1:n" and self.dst_count.get((asst_id, dst), 0) > 0:
            return ONE_TO_MANY_VIOLATED
        return None

    def next_id(self) -> int:
        """One global, only-growing sequence, like the CMDB's ``cc_idgenerator``."""
        return next(self._ids)

    def delete_row(self, row_id: int) -> bool:
        row = self.rows.pop(row_id, None)
        if row is None:
            return False
        asst_id, src, dst = row["bk_obj_asst_id"], row["bk_inst_id"], row["bk_asst_inst_id"]
        key = (asst_id, src, dst)
        extra = self.doubled.get(key)
        if extra is None:
            del self.by_pair[key]
        else:
            if self.by_pair[key] == row_id:
                self.by_pair[key] = extra.pop(0)
            else:
                extra.remove(row_id)
            if not extra:
                del self.doubled[key]
        self.by_asst[asst_id].pop(row_id, None)
        self.by_object[row["bk_obj_id"]].pop(row_id, None)
        self.by_object[row["bk_asst_obj_id"]].pop(row_id, None)
        _drop_id(self.ids_by_asst[asst_id], row_id)
        _drop_id(self.ids_by_object[row["bk_obj_id"]], row_id)
        if row["bk_asst_obj_id"] != row["bk_obj_id"]:
            _drop_id(self.ids_by_object[row["bk_asst_obj_id"]], row_id)
        _decrement(self.src_count, (asst_id, src))
        _decrement(self.dst_count, (asst_id, dst))
        self.version += 1
        self.deleted_total += 1
        if self.on_change is not None:
            self.on_change(("delete", row))
        return True

    def delete_ids(self, obj_id: str, ids: Iterable[int]) -> int:
        """Delete associations by id from ``obj_id``'s table; unknown ids are skipped."""
        table = self.by_object.get(obj_id, {})
        return sum(1 for i in set(ids) if i in table and self.delete_row(i))

    def delete_pairs(self, asst_id: str, pairs: Iterable[tuple[int, int]]) -> int:
        count = 0
        for src, dst in pairs:
            row_id = self.by_pair.get((asst_id, src, dst))
            if row_id is not None and self.delete_row(row_id):
                count += 1
        return count

    def pairs(self, asst_id: str) -> set[tuple[int, int]]:
        rows = self.by_asst.get(asst_id, {}).values()
        return {(r["bk_inst_id"], r["bk_asst_inst_id"]) for r in rows}

    def associations(self, asst_id: str) -> list[Row]:
        return [dict(r) for r in self.by_asst.get(asst_id, {}).values()]

    def _object_rows(self, obj_id: str, rule: Any) -> Iterable[Row]:
        """Rows in ``obj_id``'s table in id order, narrowed by ``bk_obj_asst_id`` if possible."""
        hints = query.equality_hints(rule) if rule is not None else {}
        assts = hints.get("bk_obj_asst_id")
        if assts is None:
            return self.by_object.get(obj_id, {}).values()
        picked = [
            row
            for asst_id in dict.fromkeys(a for a in assts if isinstance(a, str))
            for row in self.by_asst.get(asst_id, {}).values()
            if row["bk_obj_id"] == obj_id or row["bk_asst_obj_id"] == obj_id
        ]
        if len(assts) > 1:
            picked.sort(key=lambda r: int(r["id"]))
        return picked

    def search_associations(
        self, obj_id: str, rule: Any, fields: list[str] | None, start: int, limit: int, sort: str
    ) -> list[Row]:
        """One page of the rows in ``obj_id``'s table (it is source or target) that match."""
        return self.search_associations_page(obj_id, rule, fields, start, limit, sort)[0]

    def search_associations_page(
        self, obj_id: str, rule: Any, fields: list[str] | None, start: int, limit: int, sort: str
    ) -> tuple[list[Row], int]:
        """One page, and how many matching rows ``start`` skipped (what MongoDB's skip walks)."""
        page = self.page_by_key(obj_id, rule, fields, start, limit, sort)
        if page is not None:
            return page
        return self.page_by_filter(obj_id, rule, fields, start, limit, sort)

    def page_by_key(
        self, obj_id: str, rule: Any, fields: list[str] | None, start: int, limit: int, sort: str
    ) -> tuple[list[Row], int] | None:
        """A keyset page (``id > last`` sorted by id) from the id index: O(log n + page)
        rows looked at, not every row filtered; None when the query is not one."""
        bound = query.id_lower_bound(rule) if rule is not None else None
        if sort != "id" or bound is None or start < 0 or limit < 0:
            return None
        assts = query.equality_hints(rule).get("bk_obj_asst_id")
        if assts is None:
            ids = self.ids_by_object.get(obj_id, [])
            rows = self.by_object.get(obj_id, {})
        elif len(assts) == 1 and isinstance(assts[0], str):
            ids = self.ids_by_asst.get(assts[0], [])
            rows = self.by_asst.get(assts[0], {})
        else:
            return None
        value, inclusive = bound
        first = (bisect.bisect_left if inclusive else bisect.bisect_right)(ids, value)
        pred = query.compile_rule(rule)
        wanted = start + limit
        found: list[Row] = []
        at = first
        while at < len(ids) and len(found) < wanted:
            # A slice per step, not islice(ids, first, None), which walks the skipped ids.
            for row_id in ids[at : at + wanted]:
                row = rows[row_id]
                if (row["bk_obj_id"] == obj_id or row["bk_asst_obj_id"] == obj_id) and pred(row):
                    found.append(row)
                    if len(found) >= wanted:
                        break
            at += wanted
        return project(found[start:wanted], fields), min(start, len(found))

    def page_by_filter(
        self, obj_id: str, rule: Any, fields: list[str] | None, start: int, limit: int, sort: str
    ) -> tuple[list[Row], int]:
        """Any page: every candidate row filtered and sorted (cached while nothing changes)."""
        key = (obj_id, json.dumps(rule, sort_keys=True, default=str), sort)
        if self._cache is not None and self._cache[0] == key and self._cache[1] == self.version:
            matched = self._cache[2]
        else:
            rows = self._object_rows(obj_id, rule)
            if rule is not None:
                pred = query.compile_rule(rule)
                rows = (r for r in rows if pred(r))
            matched = sort_rows(list(rows), sort, "id")
            self._cache = (key, self.version, matched)
        return project(matched[start : start + limit], fields), min(max(start, 0), len(matched))

    def count_associations(self, obj_id: str, rule: Any) -> int:
        """Rows where ``obj_id`` is the source (what the CMDB's count reports)."""
        pred = query.compile_rule(rule) if rule is not None else None
        return sum(
            1
            for r in self._object_rows(obj_id, rule)
            if r["bk_obj_id"] == obj_id and (pred is None or pred(r))
        )

    def find_associations(self, obj_id: str, cond: Mapping[str, Any]) -> list[Row]:
        """Rows in ``obj_id``'s table matching a Mongo condition; raises :class:`MongoError`."""
        check_dangerous_ops(cond)
        match = mongo_matcher(cond)
        return [dict(r) for r in self.by_object.get(obj_id, {}).values() if match(r)]

    # --- fixture seeding ----------------------------------------------------------------------

    def _seed_pair(self, source: str, i: int, pair: InstanceAssociation) -> None:
        key = f"instance_associations[{i}]"
        model = self.models[pair.bk_obj_asst_id]
        obj, asst_obj = model.bk_obj_id, model.bk_asst_obj_id
        src, dst = pair.bk_inst_id, pair.bk_asst_inst_id
        writer = self.writer(model, obj, asst_obj)
        code = writer.check(src, dst)
        reasons = {
            ASSOCIATION_ALREADY_EXIST: f"pair ({src}, {dst}) is listed twice",
            ASST_INST_NOT_EXIST: f"source {obj} instance {src} is not in objects/instance_ranges",
            INST_TO_ASST_NOT_EXIST: (
                f"target {asst_obj} instance {dst} is not in objects/instance_ranges"
            ),
            ONE_TO_ONE_VIOLATED: f"breaks the 1:1 mapping of {model.bk_obj_asst_id}",
            ONE_TO_MANY_VIOLATED: f"breaks the 1:n mapping of {model.bk_obj_asst_id}",
        }
        if code is not None:
            raise FixtureError(source, key, reasons[code])
        writer.insert(src, dst)


def _owner(supplier_account: str | None) -> Row:
    return {} if supplier_account is None else {"bk_supplier_account": supplier_account}


def _drop_id(ids: list[int], row_id: int) -> None:
    i = bisect.bisect_left(ids, row_id)
    if i < len(ids) and ids[i] == row_id:
        del ids[i]


def _add_id(ids: list[int], row_id: int) -> None:
    if ids and ids[-1] > row_id:
        bisect.insort(ids, row_id)
    else:
        ids.append(row_id)


def _decrement(counts: dict[tuple[str, int], int], key: tuple[str, int]) -> None:
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]


def _never(inst_id: int) -> bool:
    return False


class PairWriter:
    """Checks and inserts pairs of one relation with every index pre-bound: O(1) per detail."""

    __slots__ = (
        "asst_id",
        "asst_ids",
        "asst_obj_id",
        "asst_obj_ids",
        "asst_obj_rows",
        "asst_rows",
        "by_pair",
        "dst_count",
        "dst_exists",
        "kind",
        "mapping",
        "obj_id",
        "obj_ids",
        "obj_rows",
        "src_count",
        "src_exists",
        "store",
    )

    def __init__(
        self, store: Store, model: ModelAssociation, obj_id: str, asst_obj_id: str
    ) -> None:
        self.store = store
        self.asst_id = model.bk_obj_asst_id
        self.kind = model.bk_asst_id
        self.mapping = model.mapping
        self.obj_id = obj_id
        self.asst_obj_id = asst_obj_id
        src_table, dst_table = store.tables.get(obj_id), store.tables.get(asst_obj_id)
        self.src_exists = src_table.exists if src_table is not None else _never
        self.dst_exists = dst_table.exists if dst_table is not None else _never
        self.by_pair = store.by_pair
        self.src_count = store.src_count
        self.dst_count = store.dst_count
        self.asst_rows = store.by_asst.setdefault(self.asst_id, {})
        self.obj_rows = store.by_object.setdefault(obj_id, {})
        self.asst_obj_rows = store.by_object.setdefault(asst_obj_id, {})
        self.asst_ids = store.ids_by_asst.setdefault(self.asst_id, [])
        self.obj_ids = store.ids_by_object.setdefault(obj_id, [])
        self.asst_obj_ids = store.ids_by_object.setdefault(asst_obj_id, [])

    def check(self, src: int, dst: int) -> int | None:
        """The first failing per-index check (a CMDB error code), or None; bk-cmdb's order."""
        asst_id = self.asst_id
        if (asst_id, src, dst) in self.by_pair:
            return ASSOCIATION_ALREADY_EXIST
        if not self.src_exists(src):
            return ASST_INST_NOT_EXIST
        if not self.dst_exists(dst):
            return INST_TO_ASST_NOT_EXIST
        mapping = self.mapping
        if mapping == "n:n":
            return None
        if mapping == "1:1" and (asst_id, src) in self.src_count:
            return ONE_TO_ONE_VIOLATED
        if (asst_id, dst) in self.dst_count:
            return ONE_TO_ONE_VIOLATED if mapping == "1:1" else ONE_TO_MANY_VIOLATED
        return None

    def insert(self, src: int, dst: int, *, unique: bool = True) -> int:
        """Store one pair; the id is drawn first, so a refused insert still uses one up.

        ``unique``: the pair index exists (bk-cmdb >= 3.10.17); without it a pair that
        appeared meanwhile is stored a second time, silently."""
        store = self.store
        new_id = next(store._ids)
        asst_id = self.asst_id
        key = (asst_id, src, dst)
        doubled = key in self.by_pair
        if doubled and unique:
            raise DuplicateKeyError(f"cc_InstAsst_{SUPPLIER_ACCOUNT}_pub_{self.obj_id}")
        row: Row = {
            "id": new_id,
            "bk_inst_id": src,
            "bk_obj_id": self.obj_id,
            "bk_asst_inst_id": dst,
            "bk_asst_obj_id": self.asst_obj_id,
            "bk_obj_asst_id": asst_id,
            "bk_asst_id": self.kind,
        }
        if store.supplier_account is not None:
            row["bk_supplier_account"] = store.supplier_account
        store.rows[new_id] = row
        if doubled:
            store.doubled.setdefault(key, []).append(new_id)
        else:
            self.by_pair[key] = new_id
        self.asst_rows[new_id] = row
        self.obj_rows[new_id] = row
        self.asst_obj_rows[new_id] = row
        _add_id(self.asst_ids, new_id)
        _add_id(self.obj_ids, new_id)
        if self.asst_obj_ids is not self.obj_ids:
            _add_id(self.asst_obj_ids, new_id)
        src_key, dst_key = (asst_id, src), (asst_id, dst)
        self.src_count[src_key] = self.src_count.get(src_key, 0) + 1
        self.dst_count[dst_key] = self.dst_count.get(dst_key, 0) + 1
        store.version += 1
        store.created_total += 1
        if store.on_change is not None:
            store.on_change(("create", row))
        return new_id


class MongoError(Exception):
    """A condition MongoDB (or bk-cmdb's DAL in front of it) refuses; the text is theirs."""


_DANGEROUS_OPS = ("$where", "$expr", "$accumulator", "$function")


def check_dangerous_ops(cond: Any) -> None:
    """``checkDangerousOps`` (src/storage/dal/mongo/local/mongo.go:486-508, v3.14.8)."""
    if isinstance(cond, Mapping):
        for key, value in cond.items():
            if key in _DANGEROUS_OPS:
                raise MongoError(f"operator {json.dumps(key)} is forbidden")
            check_dangerous_ops(value)


Matcher = Any


def _compare(op: str, have: Any, arg: Any) -> bool:
    both_num = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (have, arg))
    if not (both_num or (isinstance(have, str) and isinstance(arg, str))):
        return False
    if op == "$gt":
        return bool(have > arg)
    if op == "$gte":
        return bool(have >= arg)
    if op == "$lt":
        return bool(have < arg)
    return bool(have <= arg)


def _field_test(op: str, arg: Any, options: str) -> Any:
    """One ``{field: {op: arg}}`` test over the field's value (missing is None)."""
    if op == "$eq":
        return lambda have: have == arg
    if op == "$ne":
        return lambda have: have != arg
    if op in ("$in", "$nin"):
        if not isinstance(arg, list):
            raise MongoError(f"{op} needs an array")
        inside = op == "$in"
        return lambda have: (have in arg) == inside
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return lambda have: _compare(op, have, arg)
    if op == "$exists":
        return lambda have: (have is not None) == bool(arg)
    if op == "$regex":
        try:
            pattern = re.compile(str(arg), re.IGNORECASE if "i" in options else 0)
        except re.error as exc:
            raise MongoError(f"Regular expression is invalid: {exc}") from None
        return lambda have: isinstance(have, str) and pattern.search(have) is not None
    if op == "$not":
        if not isinstance(arg, Mapping):
            raise MongoError("$not needs a regex or a document")
        inner = _field_tests(arg)
        return lambda have: not all(t(have) for t in inner)
    raise MongoError(f"unknown operator: {op}")


def _field_tests(spec: Mapping[str, Any]) -> list[Any]:
    options = str(spec.get("$options", ""))
    return [_field_test(op, arg, options) for op, arg in spec.items() if op != "$options"]


def mongo_matcher(cond: Mapping[str, Any]) -> Matcher:
    """A predicate for a plain Mongo condition on top-level fields: equality, comparison,
    ``$in``/``$nin``, ``$exists``, ``$regex``, ``$not``, ``$and``/``$or``/``$nor``.
    Anything else raises :class:`MongoError` with MongoDB's ``unknown operator`` text."""
    tests: list[Any] = []
    for fld, want in cond.items():
        if fld in ("$and", "$or", "$nor"):
            if not isinstance(want, list) or not want:
                raise MongoError(f"{fld} must be a nonempty array")
            subs = [mongo_matcher(c if isinstance(c, Mapping) else {}) for c in want]
            if fld == "$and":
                tests.append(lambda row, subs=subs: all(m(row) for m in subs))
            elif fld == "$or":
                tests.append(lambda row, subs=subs: any(m(row) for m in subs))
            else:
                tests.append(lambda row, subs=subs: not any(m(row) for m in subs))
            continue
        if fld.startswith("$"):
            raise MongoError(f"unknown top level operator: {fld}")
        if isinstance(want, Mapping) and want and all(str(k).startswith("$") for k in want):
            field_tests = _field_tests(want)
            tests.append(lambda row, f=fld, ts=field_tests: all(t(row.get(f)) for t in ts))
        else:
            tests.append(lambda row, f=fld, w=want: row.get(f) == w)
    return lambda row: all(t(row) for t in tests)
