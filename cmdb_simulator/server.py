"""The simulator's HTTP face: both BlueKing gateways in front of one simulated CMDB.

Every CMDB request runs the same pipeline: route, authenticate, the gateway's own
checks and limits (:mod:`cmdb_simulator.esb`, :mod:`cmdb_simulator.apigw`), fault draw,
latency, then the CMDB itself (here): the API server's limiter, on 3.15 its tenant
check, its auth filter (attribute parse, IAM; when auth is on), the topo/host server,
the envelope. Only the framing differs: the legacy ESB answers HTTP 200 with 1306xxx
codes and a body ``request_id``; the API gateway answers real statuses with 16xxxxx
codes, request ids in headers, and a concurrency cap.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

from cmdb_simulator.apigw import ApiGatewayFront
from cmdb_simulator.backend import (
    APIS,
    ApiSpec,
    Backend,
    Costs,
    Pace,
    no_pace,
)
from cmdb_simulator.chain import TTL_SECONDS, EventChain
from cmdb_simulator.esb import EsbFront
from cmdb_simulator.faults import FAULT_KINDS, FaultPlan, check_kinds
from cmdb_simulator.fixture import Fixture, FixtureError, id_field
from cmdb_simulator.front import JSON_TYPE, dumps
from cmdb_simulator.iam import TOPO_AUTHORISED, iam_can_map
from cmdb_simulator.limits import ConcurrencyGate, RateLimiter
from cmdb_simulator.messages import (
    APIGW_API_NOT_FOUND,
    AUDIT_SAVE_FAILED,
    AUTHORIZE_FAILED,
    CORE_SERVICE_CONCURRENT,
    EVENT_CHAIN_NODE_NOT_EXIST,
    PARSE_AUTH_ATTRIBUTE_FAILED,
    TOO_MANY_REQUESTS,
    TOO_MANY_REQUESTS_TEXT,
    CmdbError,
    Lang,
)
from cmdb_simulator.stats import Stats
from cmdb_simulator.store import Row
from cmdb_simulator.tenants import Tenancy, TenantData
from cmdb_simulator.version import DEFAULT as DEFAULT_VERSION
from cmdb_simulator.version import CmdbVersion
from cmdb_simulator.watch import (
    ERROR_DELAY_SECONDS,
    HOLD_SECONDS,
    WatchSettings,
)

SHUTDOWN_GRACE = 0.1
"""Seconds open requests get to finish when the simulator stops."""
MAX_BODY = 40 * 1024 * 1024
"""The API gateway's body limit (40 MB)."""


@dataclass
class SimulatorOptions:
    """Behaviour knobs; fields may be changed while the simulator runs."""

    rate_limit: float | None = None
    """Requests per second per app and resource (API gateway: a fixed 1 s window per stage
    too; ESB: a token bucket, burst = rate); None: unlimited."""
    max_in_flight: int | None = None
    """API gateway: requests of one app served at once before CONCURRENCY_LIMIT_RESTRICTION
    (ESB has no concurrency limiter)."""
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
    """bk-cmdb's ``timeoutWatchLoopSeconds`` (20): a cursor request that finds nothing is
    held more than this and up to a second longer (:func:`cmdb_simulator.watch.hold_seconds`)."""
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
        self.esb = EsbFront(self)
        self.apigw = ApiGatewayFront(self)
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
        app.router.add_post("/api/c/compapi/v2/cc/{api_name}/", self.esb.handle)
        app.router.add_post("/api/c/compapi/v2/cc/{api_name}", self.esb.handle)
        app.router.add_route("*", "/api/bk-cmdb/{stage}/{tail:.*}", self.apigw.handle)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen; returns the base URL (``port=0`` picks a free port)."""
        # A held watch (20 s) or a slow batch must not hold a stop: requests still open
        # after SHUTDOWN_GRACE are cut, as a real server's restart would cut them.
        runner = web.AppRunner(
            self.make_app(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_GRACE,
        )
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
        """Add (or replace) instances, in every tenant; hosts need ``bk_host_id``, others
        ``bk_inst_id``."""
        key = id_field(bk_obj_id)
        rows = [dict(i) for i in instances]
        for n, row in enumerate(rows):
            value = row.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise FixtureError(
                    "add_instances", f"{bk_obj_id}[{n}].{key}", "positive int required"
                )
        for data in self.tenancy.data.values():
            data.store.table(bk_obj_id).add(rows)

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
        return web.Response(body=dumps(self.stats()), content_type=JSON_TYPE)

    async def _sim_reset(self, request: web.Request) -> web.Response:
        self.reset_stats()
        return web.Response(body=dumps({"result": True}), content_type=JSON_TYPE)

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
                    body=dumps({"result": False, "message": str(exc)}),
                    content_type=JSON_TYPE,
                )
        return web.Response(body=dumps(asdict(self.options)), content_type=JSON_TYPE)

    async def _not_found(self, request: web.Request) -> web.Response:
        err = APIGW_API_NOT_FOUND.with_reason(
            method=request.method, path=request.raw_path.split("?")[0]
        )
        return self.apigw.error(err, {})

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
        needs = {
            "core-busy": CORE_SERVICE_CONCURRENT,
            "audit-fail": AUDIT_SAVE_FAILED,
            "watch-expired": EVENT_CHAIN_NODE_NOT_EXIST,
        }
        if fault in needs and not (isinstance(data, CmdbError) and data.code == needs[fault]):
            fault = None
        if fault is not None:
            self._stats.fault(api.name, fault)
        return fault, data


__all__ = ["APIS", "Simulator", "SimulatorOptions"]
