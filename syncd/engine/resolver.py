"""Natural keys to CMDB instance ids: bulk lookups, a TTL cache, never a guess.

Operators name switches by ``bk_inst_name`` and hosts by ``bk_host_innerip`` or
``bk_host_name``; associations need ids. Keys are looked up in bulk, 500 values per
``in`` condition and 500 rows per page (bk-cmdb's limits), through
``search_object_instances`` for general objects and ``list_hosts_without_biz`` for
hosts (the CMDB refuses built-in models on the former). Results are cached per
(object, attribute, key): found keys for ``ttl`` seconds, unknown keys for a shorter
time so a host added to the CMDB is picked up soon. A key that matches two instances
is reported as ambiguous with both ids; it is never resolved to one of them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from syncd.cmdb import apis
from syncd.cmdb.apis import PAGE_LIMIT
from syncd.cmdb.client import CmdbClient, CmdbError
from syncd.core.answer import Answer, Verdict

HOST = "host"


@dataclass(frozen=True, slots=True)
class KeySpec:
    """How one side of a relation is named: an object and one of its attributes.

    ``attribute == "id"`` means the values already are instance ids.
    """

    bk_obj_id: str
    attribute: str = "id"

    @property
    def is_id(self) -> bool:
        return self.attribute == "id"

    @property
    def id_field(self) -> str:
        return "bk_host_id" if self.bk_obj_id == HOST else "bk_inst_id"


@dataclass(slots=True)
class Resolution:
    """The outcome for a set of keys; every asked key lands in exactly one of the three."""

    ids: dict[str, int] = field(default_factory=dict)
    unresolved: set[str] = field(default_factory=set)
    ambiguous: dict[str, list[int]] = field(default_factory=dict)


@dataclass(slots=True)
class _Entry:
    ids: tuple[int, ...]
    expires: float


class KeyResolver:
    """Resolves natural keys through the CMDB with a per-key TTL cache."""

    def __init__(
        self,
        client: CmdbClient,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        negative_ttl: float | None = None,
    ) -> None:
        self.client = client
        self.ttl = ttl
        self.negative_ttl = min(ttl, 60.0) if negative_ttl is None else negative_ttl
        self.clock = clock
        self._cache: dict[tuple[str, str], dict[str, _Entry]] = {}
        self.lookups = 0
        """CMDB requests made, for tests and metrics."""

    def invalidate(self) -> None:
        """Forget everything (SIGHUP): the next resolve asks the CMDB again."""
        self._cache.clear()

    async def resolve(self, spec: KeySpec, values: Collection[str]) -> Resolution:
        """Map each key to its instance id; unknown and ambiguous keys are reported, not guessed.

        Raises CmdbError when the CMDB does not answer a lookup.
        """
        result = Resolution()
        if spec.is_id:
            for value in values:
                text = str(value).strip()
                if text.isdigit():
                    result.ids[value] = int(text)
                else:
                    result.unresolved.add(value)
            return result
        cache = self._cache.setdefault((spec.bk_obj_id, spec.attribute), {})
        now = self.clock()
        missing: list[str] = []
        for value in dict.fromkeys(values):
            entry = cache.get(value)
            if entry is None or entry.expires <= now:
                missing.append(value)
        if missing:
            found = await self._lookup(spec, missing)
            now = self.clock()
            for value in missing:
                ids = tuple(sorted(set(found.get(value, ()))))
                ttl = self.ttl if ids else self.negative_ttl
                cache[value] = _Entry(ids, now + ttl)
        for value in values:
            ids = cache[value].ids
            if not ids:
                result.unresolved.add(value)
            elif len(ids) == 1:
                result.ids[value] = ids[0]
            else:
                result.ambiguous[value] = list(ids)
        return result

    async def _lookup(self, spec: KeySpec, values: list[str]) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        wanted = set(values)
        for i in range(0, len(values), PAGE_LIMIT):
            chunk = values[i : i + PAGE_LIMIT]
            async for row in self._rows(spec, chunk):
                ident = row.get(spec.id_field)
                if isinstance(ident, bool) or not isinstance(ident, int):
                    continue
                for key in _keys_of(row.get(spec.attribute)):
                    if key in wanted:
                        found.setdefault(key, []).append(ident)
        return found

    async def _rows(self, spec: KeySpec, chunk: list[str]) -> AsyncIterator[dict[str, Any]]:
        rule = {
            "condition": "AND",
            "rules": [{"field": spec.attribute, "operator": "in", "value": chunk}],
        }
        fields = [spec.id_field, spec.attribute]
        start = 0
        while True:
            page = {"start": start, "limit": PAGE_LIMIT, "sort": spec.id_field}
            if spec.bk_obj_id == HOST:
                api = apis.LIST_HOSTS
                body: dict[str, Any] = {
                    "host_property_filter": rule,
                    "fields": fields,
                    "page": page,
                }
                params: dict[str, Any] = {}
            else:
                api = apis.SEARCH_OBJECT_INSTANCES
                body = {"conditions": rule, "fields": fields, "page": page}
                params = {"bk_obj_id": spec.bk_obj_id}
            self.lookups += 1
            answer = await self.client.call(api, body, params)
            what = f"{api.name}({spec.bk_obj_id}.{spec.attribute})"
            if answer.verdict is not Verdict.OK:
                raise CmdbError(what, answer)
            info = answer.data.get("info") if isinstance(answer.data, dict) else None
            if not isinstance(info, list):
                raise CmdbError(
                    what, Answer(Verdict.FAILED, answer.status, None, "data.info is not a list")
                )
            for row in info:
                if isinstance(row, dict):
                    yield row
            if len(info) < PAGE_LIMIT:
                return
            start += PAGE_LIMIT


def _keys_of(value: Any) -> Iterable[str]:
    """The key texts one attribute value stands for.

    bk-cmdb stores ``bk_host_innerip`` as an array and returns it as a comma-joined
    string on older versions (``"10.0.0.1,10.0.0.2"``), as a list on newer ones.
    """
    if value is None:
        return ()
    if isinstance(value, list):
        return [str(v) for v in value if v is not None]
    text = str(value)
    if "," in text:
        return [text, *(part.strip() for part in text.split(",") if part.strip())]
    return (text,)
