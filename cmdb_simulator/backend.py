"""The CMDB behind the gateways: the API table, body decoding and request-level rules.

Each handler decodes its body the way bk-cmdb's Go structs would (a wrong type
is 1199000, or 1199006 with that text where the handler wraps it; a missing
field is its zero value), applies the request-level checks in bk-cmdb's order,
then asks the :class:`Store`. Handlers are async only so that a per-detail cost
can be paid between a detail's checks and its insert, which is where concurrent
requests can race, as on a real CMDB.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from cmdb_simulator import query, watch
from cmdb_simulator.chain import EventChain
from cmdb_simulator.messages import (
    ASSOCIATION_ALREADY_EXIST,
    ASST_INST_NOT_EXIST,
    AUDIT_SAVE_FAILED,
    CORE_SERVICE_CONCURRENT,
    DUPLICATE_ITEM,
    EVENT_CHAIN_NODE_NOT_EXIST,
    HTTP_INPUT_INVALID,
    INNER_MODEL_FORBIDDEN,
    INST_DATA_NIL,
    INST_TO_ASST_NOT_EXIST,
    INTERNAL_SERVER_ERROR,
    JSON_UNMARSHAL,
    OBJECT_ASSOCIATION_NOT_EXIST,
    ONE_TO_MANY_VIOLATED,
    ONE_TO_ONE_VIOLATED,
    PAGE_LIMIT_EXCEEDED,
    PARAMS_INVALID,
    PARAMS_IS_INVALID,
    PARAMS_NEED_INT,
    PARAMS_NEED_SET,
    UNKNOWN_ERROR,
    XX_EXCEED_LIMIT,
    CmdbError,
    Lang,
    cmdb_text,
    duplicate_key_text,
)
from cmdb_simulator.stats import Stats
from cmdb_simulator.store import DuplicateKeyError, MongoError, Store
from cmdb_simulator.version import CmdbVersion

MAX_DETAILS = 200
MAX_PAGE = 500
MAX_HOST_PAGE = 1000
"""common.BKMaxPageSize, what ``BasePage.Validate`` allows (src/common/metadata/page.go:52-75)."""
MAX_DELETE_IDS = 500
INNER_MODELS = frozenset(
    {"bk_biz_set_obj", "biz", "bk_project", "set", "module", "process", "host", "plat"}
)

Pace = Callable[[], Awaitable[None]]
"""Awaited once per detail, between its checks and its insert."""


async def no_pace() -> None:
    """The pace when details cost nothing: never awaited, so a batch runs atomically."""


_PER_INDEX_CODES = (
    ASST_INST_NOT_EXIST,
    INST_TO_ASST_NOT_EXIST,
    ONE_TO_ONE_VIOLATED,
    ONE_TO_MANY_VIOLATED,
)


class Malformed:
    """Stands in for a body that is not JSON at all."""


MALFORMED = Malformed()


@dataclass(frozen=True, slots=True)
class ApiSpec:
    """One CMDB API: its ESB name and the backend method and path the API gateway uses."""

    name: str
    method: str
    path: str

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "/?$")

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(re.findall(r"\{(\w+)\}", self.path))


APIS: tuple[ApiSpec, ...] = (
    ApiSpec("batch_create_instance_association", "POST", "/api/v3/createmany/instassociation"),
    ApiSpec("add_instance_association", "POST", "/api/v3/create/instassociation"),
    ApiSpec(
        "search_instance_associations",
        "POST",
        "/api/v3/search/instance_associations/object/{bk_obj_id}",
    ),
    ApiSpec(
        "count_instance_associations",
        "POST",
        "/api/v3/count/instance_associations/object/{bk_obj_id}",
    ),
    ApiSpec("find_instance_association", "POST", "/api/v3/find/instassociation"),
    ApiSpec("find_object_association", "POST", "/api/v3/find/objectassociation"),
    ApiSpec("delete_related_inst_asso", "DELETE", "/api/v3/delete/instassociation/batch"),
    ApiSpec(
        "delete_instance_association", "DELETE", "/api/v3/delete/instassociation/{bk_obj_id}/{id}"
    ),
    ApiSpec("search_object_instances", "POST", "/api/v3/search/instances/object/{bk_obj_id}"),
    ApiSpec("list_hosts_without_biz", "POST", "/api/v3/hosts/list_hosts_without_app"),
    ApiSpec("resource_watch", "POST", "/api/v3/event/watch/resource/{bk_resource}"),
)
BY_NAME: dict[str, ApiSpec] = {api.name: api for api in APIS}
_PATTERNS = [(api, api.pattern) for api in APIS]


def match_path(method: str, path: str) -> tuple[ApiSpec, dict[str, str]] | None:
    """The API a backend method and path name, with its path variables."""
    for api, pattern in _PATTERNS:
        m = pattern.match(path)
        if m and api.method == method.upper():
            return api, m.groupdict()
    return None


# --- Go-like decoding ---------------------------------------------------------------------------


def _object(body: Any) -> Mapping[str, Any]:
    if body is None:
        return {}
    if isinstance(body, Malformed) or not isinstance(body, Mapping):
        raise CmdbError(JSON_UNMARSHAL)
    return body


def _str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CmdbError(JSON_UNMARSHAL)
    return value


def _int(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise CmdbError(JSON_UNMARSHAL)
    return value


def _list(body: Mapping[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise CmdbError(JSON_UNMARSHAL)
    return value


def _detail_pairs(details: list[Any]) -> list[tuple[int, int]]:
    """``details`` as (src, dst) ints; the common all-int case takes the fast path."""
    pairs: list[tuple[int, int]] = []
    append = pairs.append
    for d in details:
        if type(d) is not dict:
            d = _object(d)
        src, dst = d.get("bk_inst_id"), d.get("bk_asst_inst_id")
        if type(src) is not int:
            src = _int(src)
        if type(dst) is not int:
            dst = _int(dst)
        append((src, dst))
    return pairs


def _fields(body: Mapping[str, Any]) -> list[str]:
    fields = _list(body, "fields")
    if not all(isinstance(f, str) for f in fields):
        raise CmdbError(JSON_UNMARSHAL)
    return fields


@dataclass(frozen=True, slots=True)
class Page:
    start: int
    limit: int
    sort: str


def _page(body: Mapping[str, Any]) -> Page:
    raw = body.get("page")
    page = _object(raw)
    start, limit = _int(page.get("start")), _int(page.get("limit"))
    return Page(start, limit, _str(page, "sort"))


def _check_limit(page: Page) -> None:
    """``BasePage.ValidateLimit(500)`` (page.go:91-105): the limit only, no start check."""
    if page.limit <= 0 or page.limit > MAX_PAGE:
        raise CmdbError(PARAMS_INVALID, "page.limit")


def _check_start(page: Page) -> None:
    """A negative start reaches MongoDB as a negative skip, which the server refuses."""
    if page.start < 0:
        raise CmdbError(
            UNKNOWN_ERROR,
            raw=f"(BadValue) BSON field 'skip' value must be >= 0, actual value '{page.start}'",
        )


def _decoded_filter(body: Mapping[str, Any], key: str) -> Any:
    """Decode stage: a malformed filter fails the whole body (1199000, parser.go:37-117)."""
    rule = body.get(key)
    if rule is None:
        return None
    try:
        query.check_shape(rule)
    except query.QueryShapeError:
        raise CmdbError(JSON_UNMARSHAL) from None
    return rule


def _check_filter(
    rule: Any,
    key: str,
    *,
    max_in: int | None = query.MAX_IN_VALUES,
    max_or: int | None = query.MAX_OR_RULES,
) -> None:
    """Validate stage: 1199006 ``'<key>.<path>'`` (metadata/common.go:496-498)."""
    if rule is None:
        return
    try:
        query.validate(rule, max_in=max_in, max_or=max_or)
    except query.QueryError as exc:
        raise CmdbError(PARAMS_INVALID, f"{key}.{exc.key}") from None


def _params_invalid_on_decode(lang: Lang) -> CmdbError:
    """``CCError.New(1199006, err.Error())`` around DecodeInto's 1199000 error
    (svc/association.go:841,1143,1218): code 1199006, the 1199000 text."""
    return CmdbError(PARAMS_INVALID, raw=cmdb_text(JSON_UNMARSHAL, lang))


def _go_len(text: str) -> int:
    return len(text.encode())


def _sorted_keys(doc: dict[str, Any]) -> dict[str, Any]:
    """jsoniter's SortMapKeys (src/common/json/json.go:25-30): keys as text, "10" < "2"."""
    return dict(sorted(doc.items()))


_FAULT: ContextVar[str | None] = ContextVar("sim_fault", default=None)
_VERSION: ContextVar[CmdbVersion | None] = ContextVar("sim_version", default=None)
_COSTS: ContextVar[Costs | None] = ContextVar("sim_costs", default=None)
"""Per request (each request is its own asyncio task, so its own context)."""


@dataclass(frozen=True, slots=True)
class Costs:
    """Server-side costs a real CMDB has and the simulator pays on request."""

    skip_cost_us: float = 0.0
    """Per row a ``page.start`` skips in search_instance_associations (MongoDB walks them)."""
    watching: watch.WatchSettings = field(default_factory=watch.WatchSettings)
    """The watch's hold, error delay and retention."""


class Backend:
    """Serves each API's body against the store; returns ``data`` or raises CmdbError."""

    def __init__(self, store: Store, stats: Stats, chain: EventChain | None = None) -> None:
        self.store = store
        self.stats = stats
        self.chain = chain if chain is not None else EventChain()

    @property
    def fault(self) -> str | None:
        """The fault drawn for the request being served."""
        return _FAULT.get()

    @property
    def version(self) -> CmdbVersion:
        """The bk-cmdb release the request is answered as."""
        return _VERSION.get() or CmdbVersion.parse("3.14")

    @property
    def costs(self) -> Costs:
        return _COSTS.get() or Costs()

    async def call(
        self,
        api: ApiSpec,
        params: Mapping[str, Any],
        body: Any,
        lang: Lang,
        pace: Pace,
        *,
        fault: str | None = None,
        version: CmdbVersion | None = None,
        costs: Costs | None = None,
    ) -> Any:
        """Serve one request. ``fault`` ``core-busy`` fails the single create where the core
        service takes its lock; ``audit-fail`` fails the audit-log save after the writes
        (1109001): the batch create keeps them, the transactional single create and deletes
        roll back. ``version`` selects what changed between bk-cmdb releases."""
        _FAULT.set(fault)
        _VERSION.set(version)
        _COSTS.set(costs)
        handler: Callable[[Mapping[str, Any], Any, Lang, Pace], Awaitable[Any]] = getattr(
            self, api.name
        )
        return await handler(params, body, lang, pace)

    async def batch_create_instance_association(
        self, params: Mapping[str, Any], raw: Any, lang: Lang, pace: Pace
    ) -> Any:
        body = _object(raw)
        asst_id = _str(body, "bk_obj_asst_id")
        obj = _str(body, "bk_obj_id")
        asst_obj = _str(body, "bk_asst_obj_id")
        pairs = _detail_pairs(_list(body, "details"))
        self.stats.batch(len(pairs))
        # CreateManyInstAsstRequest.Validate, in its order.
        if not asst_id:
            raise CmdbError(PARAMS_IS_INVALID, "bk_obj_asst_id")
        if not obj:
            raise CmdbError(PARAMS_IS_INVALID, "bk_obj_id")
        if not asst_obj:
            raise CmdbError(PARAMS_IS_INVALID, "bk_asst_obj_id")
        if not pairs:
            raise CmdbError(INST_DATA_NIL, "details")
        if len(pairs) > MAX_DETAILS:
            raise CmdbError(XX_EXCEED_LIMIT, "details", MAX_DETAILS)
        # Go slices ObjectAsstID[:len(ObjectID)] and [len-len(AsstObjectID):]
        # (metadata/association.go:298,305) panic when the id is the shorter one;
        # AllGlobalFilter recovers with 1199999 (src/common/rdapi/rdfunc.go:53-61).
        if _go_len(obj) > _go_len(asst_id):
            raise CmdbError(INTERNAL_SERVER_ERROR, "topo")
        if not asst_id.encode().startswith(obj.encode()):
            raise CmdbError(PARAMS_INVALID, "bk_obj_id")
        if _go_len(asst_obj) > _go_len(asst_id):
            raise CmdbError(INTERNAL_SERVER_ERROR, "topo")
        if not asst_id.encode().endswith(asst_obj.encode()):
            raise CmdbError(PARAMS_INVALID, "bk_asst_obj_id")
        model = self.store.models.get(asst_id)
        if model is None:
            raise CmdbError(OBJECT_ASSOCIATION_NOT_EXIST)
        unique = self.version.unique_pair_index
        created: dict[str, int] = {}
        errors: dict[str, str] = {}
        writer = self.store.writer(model, obj, asst_obj)
        texts = {code: cmdb_text(code, lang) for code in _PER_INDEX_CODES}
        texts[ASSOCIATION_ALREADY_EXIST] = cmdb_text(ASSOCIATION_ALREADY_EXIST, lang, obj, asst_obj)
        # save() inserts the row into the source's and then the target's table, outside
        # any transaction (core/instance.go:149-172, svc/association.go:1166-1182): two
        # change-stream events with their own cluster times, which the flow keeps both of
        # (event/flow/flow.go:252-267): two create events; one for a self-association.
        second = self.store.on_change if obj != asst_obj else None
        for idx, (src, dst) in enumerate(pairs):
            code = writer.check(src, dst)
            if pace is not no_pace:
                await pace()
            if code is not None:
                errors[str(idx)] = texts[code]
                continue
            try:
                new_id = created[str(idx)] = writer.insert(src, dst, unique=unique)
            except DuplicateKeyError as exc:
                errors[str(idx)] = duplicate_key_text(str(exc), asst_id, src, dst)
                continue
            if second is not None:
                second(("create", self.store.rows[new_id]))
        self.stats.pairs_created += len(created)
        if self.fault == "audit-fail":
            # No transaction on the batch path (svc/association.go:1166-1182): the
            # pairs stay, the answer is the audit save failure (logic/association.go:396-411).
            raise CmdbError(AUDIT_SAVE_FAILED)
        return {"success_created": _sorted_keys(created), "error_msg": _sorted_keys(errors)}

    async def add_instance_association(
        self, params: Mapping[str, Any], raw: Any, lang: Lang, pace: Pace
    ) -> Any:
        try:
            body = _object(raw)
            asst_id = _str(body, "bk_obj_asst_id")
            src, dst = _int(body.get("bk_inst_id")), _int(body.get("bk_asst_inst_id"))
        except CmdbError:
            raise _params_invalid_on_decode(lang) from None
        model = self.store.models.get(asst_id)
        if model is None:
            raise CmdbError(OBJECT_ASSOCIATION_NOT_EXIST)
        if self.fault == "core-busy":
            raise CmdbError(CORE_SERVICE_CONCURRENT)
        store = self.store
        obj, asst_obj = model.bk_obj_id, model.bk_asst_obj_id
        writer = store.writer(model, obj, asst_obj)
        # Single create: mapping first (topo server), then duplicate and instances (core).
        code = store.check_mapping(model, src, dst)
        if code is None and (asst_id, src, dst) in store.by_pair:
            raise CmdbError(DUPLICATE_ITEM, "association")
        if code is None and not store.instance_exists(obj, src):
            code = ASST_INST_NOT_EXIST
        if code is None and not store.instance_exists(asst_obj, dst):
            code = INST_TO_ASST_NOT_EXIST
        if code is not None:
            raise CmdbError(code)
        await pace()
        if self.fault == "audit-fail":
            # AutoRunTxn (svc/association.go:1148) aborts: nothing stays, the id is spent.
            store.next_id()
            raise CmdbError(AUDIT_SAVE_FAILED)
        try:
            new_id = writer.insert(src, dst, unique=self.version.unique_pair_index)
        except DuplicateKeyError as exc:
            raise CmdbError(
                DUPLICATE_ITEM, raw=duplicate_key_text(str(exc), asst_id, src, dst)
            ) from None
        self.stats.pairs_created += 1
        return {"id": new_id}

    async def search_instance_associations(
        self, params: Mapping[str, Any], raw: Any, lang: Lang, pace: Pace
    ) -> Any:
        # CommonSearchFilter: decode, then Validate (metadata/common.go:473-505).
        body = _object(raw)
        obj = str(params.get("bk_obj_id") or "")
        fields, page = _fields(body), _page(body)
        rule = _decoded_filter(body, "conditions")
        if not obj:
            raise CmdbError(PARAMS_INVALID, "bk_obj_id")
        _check_limit(page)
        _check_filter(rule, "conditions")
        _check_start(page)
        info, skipped = self.store.search_associations_page(
            obj, rule, fields, page.start, page.limit, page.sort
        )
        cost = skipped * self.costs.skip_cost_us / 1e6
        if skipped:
            self.stats.skip(skipped, cost)
        if cost > 0:
            await asyncio.sleep(cost)
        return {"info": info}

    async def resource_watch(
        self, params: Mapping[str, Any], raw: Any, lang: Lang, pace: Pace
    ) -> Any:
        """bk-cmdb's watch (event server, then cache service); see :mod:`watch`."""
        if isinstance(raw, Malformed):
            raw = watch.NOT_JSON
        resource = params.get("bk_resource")
        if self.fault == "watch-expired" and isinstance(raw, dict) and raw.get("bk_cursor"):
            raise CmdbError(EVENT_CHAIN_NODE_NOT_EXIST)
        return await watch.serve(
            self.chain,
            resource if isinstance(resource, str) else "",
            raw,
            self.costs.watching,
            release=watch.Release.of(self.version),
        )

    async def count_instance_associations(
        self, params: Mapping[str, Any], raw: Any, lang: Lang, pace: Pace
    ) -> Any:
        body = _object(raw)
        obj = str(params.get("bk_obj_id") or "")
        rule = _decoded_filter(body, "conditions")
        if not obj:
            raise CmdbError(PARAMS_INVALID, "bk_obj_id")
        _check_filter(rule, "conditions")
        return {"count": self.store.count_associations(obj, rule)}

    async def find_instance_association(
        self, params: Mapping[str, Any], raw: Any, lang: Lang, pace: Pace
    ) -> Any:
        try:
            body = _object(raw)
            obj = _str(body, "bk_obj_id")
            cond = _object(body.get("condition"))
        except CmdbError:
            raise _params_invalid_on_decode(lang) from None
        if not obj:
            raise CmdbError(PARAMS_NEED_SET, "bk_obj_id")
        return self._mongo(lambda: self.store.find_associations(obj, cond))

    def _mongo(self, read: Callable[[], Any]) -> Any:
        """A read the DB evaluates: its own errors pass on as 1199998 with the raw text."""
        try:
            return read()
        except MongoError as exc:
            raise CmdbError(UNKNOWN_ERROR, raw=str(exc)) from None

    async def find_object_association(
        self, params: Mapping[str, Any], raw: Any, lang: Lang, pace: Pace
    ) -> Any:
        # svc/object_association.go:57-137.
        body = _object(raw)
        if "condition" in body:
            cond = body.get("condition")
            if cond is not None and not isinstance(cond, Mapping):
                # mapstr.MapStr's own text (src/common/mapstr/mapstr.go:268-277).
                raise CmdbError(
                    PARAMS_IS_INVALID,
                    raw="the value of the key(condition) is not a map[string]interface{} type",
                )
            if not cond:
                raise CmdbError(PARAMS_IS_INVALID)
        else:
            obj = body.get("bk_obj_id")
            if isinstance(obj, int | float) and not isinstance(obj, bool):
                obj = str(int(obj)) if float(obj).is_integer() else str(obj)  # mapstr.String
            if not isinstance(obj, str) or not obj:
                raise CmdbError(PARAMS_IS_INVALID)
            cond = {"bk_obj_id": obj}
        check_ops = self.version.dangerous_ops_check
        return self._mongo(lambda: self.store.find_models(cond, check_dangerous=check_ops))

    async def delete_instance_association(
        self, params: Mapping[str, Any], raw: Any, lang: Lang, pace: Pace
    ) -> Any:
        obj = params.get("bk_obj_id")
        if not isinstance(obj, str) or not obj:
            raise CmdbError(PARAMS_NEED_SET, "bk_obj_id")
        raw_id = params.get("id")
        try:
            if isinstance(raw_id, bool) or not isinstance(raw_id, int | str):
                raise ValueError
            asso_id = int(raw_id)
        except ValueError:
            raise CmdbError(PARAMS_NEED_INT, "association_id") from None
        self._delete(obj, [asso_id])
        return None

    def _delete(self, obj: str, ids: list[int]) -> int:
        """Deletes run in AutoRunTxn (svc/association.go:1198,1235): an audit save failure
        (logic/association.go:461-465) aborts it and nothing is deleted."""
        if self.fault == "audit-fail":
            raise CmdbError(AUDIT_SAVE_FAILED)
        deleted = self.store.delete_ids(obj, ids)
        self.stats.pairs_deleted += deleted
        return deleted

    async def delete_related_inst_asso(
        self, params: Mapping[str, Any], raw: Any, lang: Lang, pace: Pace
    ) -> Any:
        try:
            body = _object(raw)
            ids = [_int(i) for i in _list(body, "id")]
            obj = _str(body, "bk_obj_id")
        except CmdbError:
            raise _params_invalid_on_decode(lang) from None
        if not ids:
            raise CmdbError(HTTP_INPUT_INVALID)
        if len(ids) > MAX_DELETE_IDS:
            raise CmdbError(PAGE_LIMIT_EXCEEDED)
        if not obj:
            raise CmdbError(PARAMS_NEED_SET, "bk_obj_id")
        return self._delete(obj, ids)

    async def search_object_instances(
        self, params: Mapping[str, Any], raw: Any, lang: Lang, pace: Pace
    ) -> Any:
        obj = str(params.get("bk_obj_id") or "")
        if obj in INNER_MODELS:
            raise CmdbError(INNER_MODEL_FORBIDDEN)
        body = _object(raw)
        fields, page = _fields(body), _page(body)
        rule = _decoded_filter(body, "conditions")
        if not obj:
            raise CmdbError(PARAMS_INVALID, "bk_obj_id")
        _check_limit(page)
        if rule is not None:
            # pkg/filter, not querybuilder (metadata/inst.go:362-400): 50 rules per
            # combined rule, in <= 500, depth 3; the key carries the expression's JSON.
            try:
                query.validate(rule, max_or=None, max_rules=50, combined_top=False)
            except query.QueryError:
                raise CmdbError(PARAMS_INVALID, f"conditions: {query.to_json(rule)}") from None
        _check_start(page)
        _, info = self.store.search_instances(obj, rule, fields, page.start, page.limit, page.sort)
        return {"info": info}

    async def list_hosts_without_biz(
        self, params: Mapping[str, Any], raw: Any, lang: Lang, pace: Pace
    ) -> Any:
        body = _object(raw)
        fields, page = _fields(body), _page(body)
        rule = _decoded_filter(body, "host_property_filter")
        # BasePage.Validate(false) (metadata/hostserver.go:457-476): start, then limit;
        # 0 is allowed (MongoDB: no limit), at most 1000.
        if page.start < 0:
            raise CmdbError(PARAMS_INVALID, "page.start")
        if page.limit < 0 or page.limit > MAX_HOST_PAGE:
            raise CmdbError(PARAMS_INVALID, "page.limit")
        _check_filter(rule, "host_property_filter", max_in=None, max_or=None)
        limit = page.limit or 1 << 62
        count, info = self.store.search_instances(
            "host", rule, fields, page.start, limit, page.sort or "bk_host_id"
        )
        return {"count": count, "info": info}
