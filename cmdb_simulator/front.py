"""What both gateway fronts share: the per-request outcome, JSON in and out, a dropped
answer, and the parts of the simulator they call (:class:`Core`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from cmdb_simulator.backend import MALFORMED, ApiSpec
from cmdb_simulator.fixture import App
from cmdb_simulator.limits import ConcurrencyGate, RateLimiter
from cmdb_simulator.messages import Lang
from cmdb_simulator.stats import Stats
from cmdb_simulator.tenants import Tenancy
from cmdb_simulator.version import CmdbVersion

if TYPE_CHECKING:
    from cmdb_simulator.server import SimulatorOptions

JSON_TYPE = "application/json"


@dataclass(slots=True)
class Outcome:
    """What one request ended as, for the counters."""

    api: str
    status: str = "200"
    code: int | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def parse_body(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return MALFORMED


async def drop(
    request: web.Request, payload: bytes, headers: dict[str, str], outcome: Outcome
) -> web.StreamResponse:
    """Send the headers and half the body, then cut the connection."""
    outcome.status = "drop"
    resp = web.StreamResponse(status=200, headers=headers)
    resp.content_type = JSON_TYPE
    resp.content_length = len(payload)
    await resp.prepare(request)
    await resp.write(payload[: len(payload) // 2])
    transport = request.transport
    if transport is not None:
        transport.abort()
    return resp


class Core(Protocol):
    """The simulator as a gateway front sees it (:class:`cmdb_simulator.server.Simulator`):
    each front holds one and calls it; neither is a base class of the simulator."""

    options: SimulatorOptions
    tenancy: Tenancy
    _stats: Stats
    _apps: dict[str, str]
    _tokens: set[str] | None
    _rate: RateLimiter
    _app_info: dict[str, App]
    _gw_rate: RateLimiter
    _gate: ConcurrencyGate

    @property
    def version(self) -> CmdbVersion: ...

    async def _act(
        self,
        api: ApiSpec,
        params: Mapping[str, Any],
        body: Any,
        lang: Lang,
        app_code: str,
        tenant: str | None = None,
    ) -> tuple[str | None, Any]: ...
