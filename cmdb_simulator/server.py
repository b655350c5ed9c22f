"""The simulator's HTTP face: both BlueKing gateways in front of one simulated CMDB.

Every CMDB request runs the same pipeline: route, authenticate, rate limit
(per app and resource), fault draw, latency, then the CMDB itself: the API
server's limiter, its auth filter (attribute parse, IAM; when auth is on), the
topo/host server, the envelope. Only the framing differs: the legacy ESB answers
HTTP 200 with 1306xxx codes and a body ``request_id``; the API gateway answers
real statuses with 16xxxxx codes, request ids in headers, and a concurrency cap.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from cmdb_simulator.backend import (
    APIS,
    BY_NAME,
    MALFORMED,
    ApiSpec,
    Backend,
    Costs,
    Pace,
    match_path,
    no_pace,
)
from cmdb_simulator.envelope import apigw_body, code_of, esb_body
from cmdb_simulator.faults import FAULT_KINDS, FaultPlan, check_kinds
from cmdb_simulator.fixture import Fixture, FixtureError, id_field
from cmdb_simulator.iam import TOPO_AUTHORISED, iam_can_map
from cmdb_simulator.limits import ConcurrencyGate, RateDecision, RateLimiter
from cmdb_simulator.messages import (
    APIGW_API_NOT_FOUND,
    APIGW_BACKEND_TIMEOUT,
    APIGW_BAD_GATEWAY,
    APIGW_BAD_SECRET,
    APIGW_BODY_TOO_LARGE,
    APIGW_CONCURRENCY_LIMITED,
    APIGW_INVALID_ARGS,
    APIGW_NO_APP_CODE,
    APIGW_NO_APP_SECRET,
    APIGW_NO_USER,
    APIGW_RATE_LIMITED,
    AUDIT_SAVE_FAILED,
    AUTHORIZE_FAILED,
    CORE_SERVICE_CONCURRENT,
    ESB_ARGUMENT_ERROR,
    ESB_BAD_AUTH_HEADER,
    ESB_BAD_TOKEN,
    ESB_COMMON_ERROR,
    ESB_COMPONENT_NOT_FOUND,
    ESB_NO_APP_CODE,
    ESB_NO_APP_SECRET,
    ESB_NO_USER,
    ESB_NOT_FOUND_TEXT,
    ESB_RATE_LIMITED,
    ESB_THIRD_PARTY_ERROR,
    ESB_TIMEOUT_REASON,
    NGINX_502_PAGE,
    PARSE_AUTH_ATTRIBUTE_FAILED,
    TOO_MANY_REQUESTS,
    TOO_MANY_REQUESTS_TEXT,
    CmdbError,
    GatewayError,
    Lang,
    apigw_language,
    esb_bad_secret,
    esb_language,
    esb_not_json,
    esb_rate_limited,
    esb_third_party,
    esb_unknown_app,
)
from cmdb_simulator.stats import Stats
from cmdb_simulator.store import Row
from cmdb_simulator.tenants import HEADER as TENANT_HEADER
from cmdb_simulator.tenants import Tenancy, TenantData
from cmdb_simulator.version import DEFAULT as DEFAULT_VERSION
from cmdb_simulator.version import CmdbVersion
from cmdb_simulator.watch import (
    ERROR_DELAY_SECONDS,
    HOLD_SECONDS,
    TTL_SECONDS,
    EventChain,
    WatchSettings,
)

MAX_BODY = 40 * 1024 * 1024
"""The API gateway's body limit (40 MB)."""
_JSON = "application/json"


@dataclass
class SimulatorOptions:
    """Behaviour knobs; fields may be changed while the simulator runs."""

    rate_limit: float | None = None
    """Requests per second per app and resource (token bucket, burst = rate); None: unlimited."""
    max_in_flight: int | None = None
    """API gateway: requests served at once before CONCURRENCY_LIMIT_RESTRICTION (ESB has no
    concurrency limiter)."""
    latency_ms: float = 0.0
    """Base delay of every CMDB request, before it acts."""
    per_detail_ms: float = 0.0
    """Extra delay per batch detail, paid between each detail's checks and its insert."""
    fault_rate: float = 0.0
    """Fraction of CMDB requests that get a fault."""
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    """Kinds drawn from; by default the original four (``502``, ``504``, ``504-after``,
    ``drop``). ``cmdb-busy``, ``core-busy`` and ``audit-fail`` are drawn only when named."""
    seed: int = 0
    auth: bool | None = None
    """bk-cmdb's ``enableAuth``: the attribute parse (1199045) and IAM (9900403) run. None:
    the fixture's ``auth`` (on unless it says ``auth: false``)."""
    cmdb_version: str = DEFAULT_VERSION
    """The bk-cmdb release answered as: ``3.10``, ``3.12``, ``3.14`` (optionally ``.PATCH``)."""
    watch_timeout_s: float = HOLD_SECONDS
    """How long ``resource_watch`` holds a cursor request when no event matches (bk-cmdb: 20)."""
    watch_retention_s: float = TTL_SECONDS
    """How long watch events stay; older cursors answer 1103007 (bk-cmdb: 6 h for inst_asst)."""
    watch_error_delay_s: float = ERROR_DELAY_SECONDS
    """The pause before a refused watch request is answered (bk-cmdb: 0.5 s)."""
    skip_cost_us: float = 0.0
    """Server time per row a ``page.start`` skips in search_instance_associations."""

    def __post_init__(self) -> None:
        self.fault_kinds = check_kinds(self.fault_kinds)
        CmdbVersion.parse(self.cmdb_version)
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be between 0 and 1")
        if self.latency_ms < 0 or self.per_detail_ms < 0:
            raise ValueError("latency_ms and per_detail_ms must not be negative")
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ValueError("rate_limit must be positive (or None for no limit)")
        if self.max_in_flight is not None and self.max_in_flight <= 0:
            raise ValueError("max_in_flight must be positive (or None for no cap)")
        if self.watch_timeout_s < 0 or self.watch_error_delay_s < 0 or self.skip_cost_us < 0:
            raise ValueError("watch_timeout_s, watch_error_delay_s, skip_cost_us must be >= 0")
        if self.watch_retention_s <= 0:
            raise ValueError("watch_retention_s must be positive")


@dataclass(slots=True)
class _Outcome:
    """What one request ended as, for the counters."""

    api: str
    status: str = "200"
    code: int | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def _parse(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return MALFORMED


class Simulator:
    """A BlueKing CMDB stand-in; see docs/simulator.md."""

    def __init__(self, fixture: Fixture, options: SimulatorOptions | None = None) -> None:
        self.fixture = fixture
        self.options = options or SimulatorOptions()
        self._stats = Stats()
        self.tenancy = Tenancy(
            fixture,
            self._stats,
            lambda: self.options.watch_retention_s,
            tenant_line=self.version.tenants,
        )
        """Each tenant's data (one, ``default``, unless the fixture lists tenants); the
        release line is read once, here: 3.15's rows carry no ``bk_supplier_account``."""
        first = self.tenancy.default
        self.store = first.store
        self.events: EventChain = first.events
        self.backend: Backend = first.backend
        self.iam = first.iam
        self.auth_parser = first.auth_parser
        self._app_info = {a.bk_app_code: a for a in fixture.apps}
        self._apps = {a.bk_app_code: a.bk_app_secret for a in fixture.apps}
        self._tokens = None if fixture.bk_tokens is None else set(fixture.bk_tokens)
        self._rate = RateLimiter()
        self._gw_rate = RateLimiter(fixed_window=True)
        self._gate = ConcurrencyGate()
        self._faults = FaultPlan(self.options.seed)
        self._runner: web.AppRunner | None = None
        self.url: str | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_get("/_sim/stats", self._sim_stats)
        app.router.add_post("/_sim/reset", self._sim_reset)
        app.router.add_get("/_sim/options", self._sim_options)
        app.router.add_post("/_sim/options", self._sim_options)
        app.router.add_post("/api/c/compapi/v2/cc/{api_name}/", self._esb)
        app.router.add_post("/api/c/compapi/v2/cc/{api_name}", self._esb)
        app.router.add_route("*", "/api/bk-cmdb/{stage}/{tail:.*}", self._apigw)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen; returns the base URL (``port=0`` picks a free port)."""
        runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
        await site.start()
        self._runner = runner
        bound = runner.addresses[0]
        self.url = f"http://{host}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @asynccontextmanager
    async def running(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        url = await self.start(host, port)
        try:
            yield url
        finally:
            await self.stop()

    # --- direct access for tests and the demo -------------------------------------------------

    def pairs(self, bk_obj_asst_id: str) -> set[tuple[int, int]]:
        return self.store.pairs(bk_obj_asst_id)

    def associations(self, bk_obj_asst_id: str) -> list[Row]:
        return self.store.associations(bk_obj_asst_id)

    def delete_pairs(self, bk_obj_asst_id: str, pairs: Iterable[tuple[int, int]]) -> int:
        deleted = self.store.delete_pairs(bk_obj_asst_id, pairs)
        self.events.flush()
        return deleted

    def tenant(self, tenant_id: str) -> TenantData:
        """One tenant's data (KeyError for a tenant the fixture does not list)."""
        return self.tenancy.data[tenant_id]

    def add_instances(self, bk_obj_id: str, instances: Iterable[Mapping[str, Any]]) -> None:
        """Add (or replace) instances; hosts need ``bk_host_id``, others ``bk_inst_id``."""
        key = id_field(bk_obj_id)
        rows = [dict(i) for i in instances]
        for n, row in enumerate(rows):
            value = row.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise FixtureError(
                    "add_instances", f"{bk_obj_id}[{n}].{key}", "positive int required"
                )
        self.store.table(bk_obj_id).add(rows)

    def stats(self) -> dict[str, Any]:
        """Counters; the data figures add up every tenant's."""
        snap = self._stats.snapshot()
        worlds = self.tenancy.data.values()
        snap["associations"] = sum(len(w.store.rows) for w in worlds)
        snap["created_total"] = sum(w.store.created_total for w in worlds)
        snap["deleted_total"] = sum(w.store.deleted_total for w in worlds)
        snap["watch_events_total"] = sum(w.events.total for w in worlds)
        snap["watch_events_retained"] = sum(w.events.retained() for w in worlds)
        return snap

    def reset_stats(self) -> None:
        self._stats.reset()

    @property
    def auth(self) -> bool:
        """Whether authorization is on (the option, else the fixture)."""
        return self.fixture.auth if self.options.auth is None else self.options.auth

    @property
    def version(self) -> CmdbVersion:
        return CmdbVersion.parse(self.options.cmdb_version)

    # --- /_sim ----------------------------------------------------------------------------------

    async def _sim_stats(self, request: web.Request) -> web.Response:
        return web.Response(body=_dumps(self.stats()), content_type=_JSON)

    async def _sim_reset(self, request: web.Request) -> web.Response:
        self.reset_stats()
        return web.Response(body=_dumps({"result": True}), content_type=_JSON)

    async def _sim_options(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                changes = json.loads(await request.read() or b"{}")
                merged = {**asdict(self.options), **changes}
                merged["fault_kinds"] = tuple(merged["fault_kinds"])
                self.options = SimulatorOptions(**merged)
            except (ValueError, TypeError) as exc:
                return web.Response(
                    status=400,
                    body=_dumps({"result": False, "message": str(exc)}),
                    content_type=_JSON,
                )
        return web.Response(body=_dumps(asdict(self.options)), content_type=_JSON)

    async def _not_found(self, request: web.Request) -> web.Response:
        err = APIGW_API_NOT_FOUND.with_reason(
            method=request.method, path=request.raw_path.split("?")[0]
        )
        return self._gw_error(err, {})

    # --- shared pipeline ------------------------------------------------------------------------

    def _pacer(self) -> Pace:
        per = self.options.per_detail_ms / 1000.0
        if per <= 0:
            return no_pace
        loop = asyncio.get_running_loop()
        start = loop.time()
        done = 0

        async def pace() -> None:
            nonlocal done
            done += 1
            delay = start + done * per - loop.time()
            if delay > 0.001:
                await asyncio.sleep(delay)

        return pace

    async def _act(
        self,
        api: ApiSpec,
        params: Mapping[str, Any],
        body: Any,
        lang: Lang,
        app_code: str,
        tenant: str | None = None,
    ) -> tuple[str | None, Any]:
        """Fault draw, latency, the API server's filters and the backend: (fault, data or error).

        In the order a real request meets them: the gateway (``502``, ``504``), the API
        server's limiter (``cmdb-busy``), on 3.15 its tenant check (``tenant``: the header
        the gateway passed on, None from the ESB), its auth filter when auth is on
        (attribute parse, then IAM for writes; src/apiserver/service/service.go:88-92,
        167-170), the topo
        server's checks (reads are authorised there, after them; count never is), the core
        service (``core-busy``), the writes, then the audit log (``audit-fail``). A fault
        that never came into play is neither answered nor counted.
        """
        opts = self.options
        fault = self._faults.draw(opts.fault_rate, opts.fault_kinds, opts.seed, api.name)
        if opts.latency_ms > 0:
            await asyncio.sleep(opts.latency_ms / 1000.0)
        data: Any = None
        auth = self.auth
        version = self.version
        if fault in ("502", "504"):
            self._stats.fault(api.name, fault)
            return fault, None
        world = self.tenancy.default
        unknown_tenant: CmdbError | None = None
        if version.tenants:
            verified = self.tenancy.verify(tenant)
            if isinstance(verified, CmdbError):
                unknown_tenant = verified
            else:
                world = verified
        if fault == "cmdb-busy":
            data = CmdbError(TOO_MANY_REQUESTS, raw=TOO_MANY_REQUESTS_TEXT, filter=True)
        elif unknown_tenant is not None:
            data = unknown_tenant
        elif auth and (failure := world.auth_parser.parse(api, params, body, version)):
            data = CmdbError(PARSE_AUTH_ATTRIBUTE_FAILED, raw=failure, filter=True)
        elif auth and not iam_can_map(api, params, version):
            # AdaptAuthOptions fails (src/ac/iam/iam.go:1308-1312, adaptor.go:196-203):
            # the auth filter's BaseResp, no pause (filter.go:281-290).
            data = CmdbError(AUTHORIZE_FAILED, filter=True)
        elif (
            auth
            and api.name not in TOPO_AUTHORISED
            and (denial := world.iam.check(app_code, api, params, body)) is not None
        ):
            data = denial
        else:
            costs = Costs(
                skip_cost_us=opts.skip_cost_us,
                watching=WatchSettings(
                    opts.watch_timeout_s, opts.watch_error_delay_s, opts.watch_retention_s
                ),
            )
            try:
                data = await world.backend.call(
                    api,
                    params,
                    body,
                    lang,
                    self._pacer(),
                    fault=fault,
                    version=version,
                    costs=costs,
                )
            except CmdbError as exc:
                data = exc
            world.events.flush()  # wake held watches now, not at their next look
            if auth and api.name in TOPO_AUTHORISED and not isinstance(data, CmdbError):
                denial = world.iam.check(app_code, api, params, body)
                if denial is not None:
                    denial.filter = False  # the topo server's RespNoAuth: proxied, no data
                    data = denial
        needs = {"core-busy": CORE_SERVICE_CONCURRENT, "audit-fail": AUDIT_SAVE_FAILED}
        if fault in needs and not (isinstance(data, CmdbError) and data.code == needs[fault]):
            fault = None
        if fault is not None:
            self._stats.fault(api.name, fault)
        return fault, data

    async def _drop(
        self, request: web.Request, payload: bytes, headers: dict[str, str], outcome: _Outcome
    ) -> web.StreamResponse:
        """Send the headers and half the body, then cut the connection."""
        outcome.status = "drop"
        resp = web.StreamResponse(status=200, headers=headers)
        resp.content_type = _JSON
        resp.content_length = len(payload)
        await resp.prepare(request)
        await resp.write(payload[: len(payload) // 2])
        transport = request.transport
        if transport is not None:
            transport.abort()
        return resp

    # --- legacy ESB -----------------------------------------------------------------------------

    def _esb_response(self, doc: dict[str, Any], outcome: _Outcome) -> web.Response:
        return web.Response(body=_dumps(doc), content_type=_JSON, headers=outcome.extra_headers)

    def _esb_error(self, code: int, message: str, rid: str, outcome: _Outcome) -> web.Response:
        outcome.code = code
        doc = {"result": False, "code": code, "message": message, "data": None, "request_id": rid}
        return self._esb_response(doc, outcome)

    @staticmethod
    def _esb_creds(body: Mapping[str, Any], header: str | None) -> Mapping[str, Any] | None:
        """``X-Bkapi-Authorization`` when present, else the body's credentials
        (esb/channel/base.py:331-354); None for a header that is not JSON."""
        if header is None:
            return body
        try:
            parsed = json.loads(header)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else {}

    def _esb_auth(self, creds: Mapping[str, Any]) -> str | None:
        code = creds.get("bk_app_code") or creds.get("app_code")
        secret = creds.get("bk_app_secret") or creds.get("app_secret")
        if not code:
            return ESB_NO_APP_CODE
        if not secret:
            return ESB_NO_APP_SECRET
        if str(code) not in self._apps:
            return esb_unknown_app(str(code))
        if self._apps[str(code)] != secret:
            return esb_bad_secret(str(code))
        token = creds.get("bk_token")
        if token:
            if self._tokens is not None and token not in self._tokens:
                return ESB_BAD_TOKEN
            return None
        if creds.get("bk_username") or creds.get("username"):
            return None
        return ESB_NO_USER

    async def _esb(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["api_name"]
        api = BY_NAME.get(name)
        outcome = _Outcome(api.name if api else "unknown")
        self._stats.arrive()
        try:
            return await self._esb_serve(request, api, name, outcome)
        finally:
            self._stats.depart(outcome.api, outcome.status, outcome.code)

    async def _esb_serve(
        self, request: web.Request, api: ApiSpec | None, name: str, outcome: _Outcome
    ) -> web.StreamResponse:
        rid = uuid.uuid4().hex
        if api is None:
            return self._esb_error(ESB_COMPONENT_NOT_FOUND, ESB_NOT_FOUND_TEXT, rid, outcome)
        try:
            body = _parse(await request.read())
        except web.HTTPRequestEntityTooLarge:
            return self._esb_error(ESB_COMMON_ERROR, "Request body size too large.", rid, outcome)
        fields = body if isinstance(body, Mapping) else {}
        creds = self._esb_creds(fields, request.headers.get("X-Bkapi-Authorization"))
        if creds is None:
            return self._esb_error(ESB_ARGUMENT_ERROR, ESB_BAD_AUTH_HEADER, rid, outcome)
        refusal = self._esb_auth(creds)
        if refusal is not None:
            return self._esb_error(ESB_COMMON_ERROR, refusal, rid, outcome)
        app_code = str(creds.get("bk_app_code") or creds.get("app_code") or "")
        decision = self._rate.check(self.options.rate_limit, app_code, name)
        if decision is not None and not decision.allowed:
            limit = f"{decision.limit}/1second"
            return self._esb_error(
                ESB_RATE_LIMITED, esb_rate_limited(app_code, name, limit), rid, outcome
            )
        lang = esb_language(request.headers.get("Blueking-Language"))
        params = {k: fields.get(k) for k in api.path_params}
        fault, data = await self._act(api, params, body, lang, app_code)
        if fault == "502":
            # The CC client allows non-200 answers; the proxy's HTML page is not JSON.
            outcome.code = ESB_COMMON_ERROR
            doc: dict[str, Any] = {
                "result": False,
                "code": ESB_COMMON_ERROR,
                "message": esb_not_json(NGINX_502_PAGE),
                "request_id": rid,
            }
            return self._esb_response(doc, outcome)
        if fault in ("504", "504-after"):
            text = esb_third_party(name, ESB_TIMEOUT_REASON)
            return self._esb_error(ESB_THIRD_PARTY_ERROR, text, rid, outcome)
        doc = esb_body(data, lang, rid)
        outcome.code = code_of(doc)
        if fault == "drop":
            return await self._drop(request, _dumps(doc), {}, outcome)
        return self._esb_response(doc, outcome)

    # --- API gateway ----------------------------------------------------------------------------

    def _gw_error(
        self, err: GatewayError, headers: dict[str, str], outcome: _Outcome | None = None
    ) -> web.Response:
        if outcome is not None:
            outcome.status, outcome.code = str(err.status), err.code
        doc = {
            "result": False,
            "code": err.code,
            "code_name": err.code_name,
            "message": err.message,
            "data": None,
        }
        hdrs = {
            **headers,
            "X-Bkapi-Error-Code": str(err.code),
            "X-Bkapi-Error-Message": err.message,
        }
        return web.Response(status=err.status, body=_dumps(doc), content_type=_JSON, headers=hdrs)

    @staticmethod
    def _gw_creds(header: str | None) -> dict[str, Any]:
        try:
            creds = json.loads(header) if header else {}
        except ValueError:
            creds = {}
        return creds if isinstance(creds, dict) else {}

    def _gw_auth(self, creds: Mapping[str, Any]) -> str | None:
        code, secret = creds.get("bk_app_code"), creds.get("bk_app_secret")
        if not code:
            return APIGW_NO_APP_CODE
        if not secret:
            return APIGW_NO_APP_SECRET
        if self._apps.get(str(code)) != secret:
            return APIGW_BAD_SECRET
        token = creds.get("bk_token") or creds.get("access_token")
        if token and (self._tokens is None or token in self._tokens):
            return None
        if creds.get("bk_username") and not token:
            return None
        return APIGW_NO_USER

    @staticmethod
    def _rate_headers(decision: RateDecision | None) -> dict[str, str]:
        if decision is None:
            return {}
        return {
            "X-Bkapi-RateLimit-Limit": str(decision.limit),
            "X-Bkapi-RateLimit-Remaining": str(decision.remaining),
            "X-Bkapi-RateLimit-Reset": str(decision.reset),
            "X-Bkapi-RateLimit-Plugin": "bk-resource-rate-limit",
        }

    async def _apigw(self, request: web.Request) -> web.StreamResponse:
        tail = "/" + request.match_info["tail"]
        found = match_path(request.method, tail)
        outcome = _Outcome(found[0].name if found else "unknown")
        self._stats.arrive()
        try:
            return await self._apigw_serve(request, found, outcome)
        finally:
            self._stats.depart(outcome.api, outcome.status, outcome.code)

    async def _apigw_serve(
        self,
        request: web.Request,
        found: tuple[ApiSpec, dict[str, str]] | None,
        outcome: _Outcome,
    ) -> web.StreamResponse:
        gw_rid = uuid.uuid4().hex
        headers = {
            "X-Bkapi-Request-ID": gw_rid,
            "X-Request-ID": request.headers.get("X-Request-ID") or gw_rid,
        }
        if found is None:
            err = APIGW_API_NOT_FOUND.with_reason(
                method=request.method, path=request.raw_path.split("?")[0]
            )
            return self._gw_error(err, headers, outcome)
        api, params = found
        creds = self._gw_creds(request.headers.get("X-Bkapi-Authorization"))
        refusal = self._gw_auth(creds)
        if refusal is not None:
            return self._gw_error(APIGW_INVALID_ARGS.with_reason(reason=refusal), headers, outcome)
        opts = self.options
        app_code = str(creds["bk_app_code"])
        tenant = request.headers.get(TENANT_HEADER)
        if self.version.tenants:
            tenant, cross = self.tenancy.gateway(self._app_info[app_code], tenant)
            if cross is not None:
                return self._gw_error(cross, headers, outcome)
        # bk-concurrency-limit (priority 17660) runs before bk-resource-rate-limit (17653),
        # one count per gateway, stage and app (bk-concurrency-limit.lua:44-58,83-89).
        stage = request.match_info["stage"]
        if not self._gate.try_enter(opts.max_in_flight, app_code):
            key = f"bk-cmdb:{stage}:{app_code}"
            return self._gw_error(APIGW_CONCURRENCY_LIMITED.with_reason(key=key), headers, outcome)
        try:
            decision = self._gw_rate.check(opts.rate_limit, app_code, f"{stage}:{api.name}")
            headers.update(self._rate_headers(decision))
            if decision is not None and not decision.allowed:
                return self._gw_error(APIGW_RATE_LIMITED, headers, outcome)
            try:
                body = _parse(await request.read())
            except web.HTTPRequestEntityTooLarge:
                return self._gw_error(APIGW_BODY_TOO_LARGE, headers, outcome)
            lang = apigw_language(request.headers.get("X-Bkcmdb-Language"))
            fault, data = await self._act(api, params, body, lang, app_code, tenant)
            if fault == "502":
                return self._gw_error(APIGW_BAD_GATEWAY, headers, outcome)
            if fault in ("504", "504-after"):
                timeout = APIGW_BACKEND_TIMEOUT.with_reason(
                    upstream_error="cannot read header from upstream"
                )
                return self._gw_error(timeout, headers, outcome)
            doc = apigw_body(data, lang, self.version)
            outcome.code = code_of(doc)
            if fault == "drop":
                return await self._drop(request, _dumps(doc), headers, outcome)
            return web.Response(body=_dumps(doc), content_type=_JSON, headers=headers)
        finally:
            self._gate.leave(app_code)


__all__ = ["APIS", "Simulator", "SimulatorOptions"]
