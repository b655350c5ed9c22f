"""The ops HTTP server: /healthz, /readyz, /metrics, POST /resync.

It runs inside the daemon's event loop on purpose: if the loop is stuck,
/healthz cannot answer, which is exactly what a liveness probe should see.
It listens on 127.0.0.1 by default; in a pod it listens on 0.0.0.0 so the
kubelet can probe it. It is a :class:`syncd.runtime.listener.Listener`: bounded
connections and read deadlines, so no client can starve it or the daemon's files.
Nothing here is secret: health reasons, counts and metric
labels only. POST /resync asks for one extra full
cycle (requests coalesce); it refuses browser requests (any ``Origin`` header) so a
web page cannot trigger it cross-site, and with ``ops.resync_token`` set it needs
``Authorization: Bearer <token>``; without one, a server listening beyond loopback takes
it from loopback callers only (``syncd resync``, ``kubectl exec``). Only a request with
the token lifts the prune guards (:mod:`syncd.runtime.resyncauth`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from aiohttp import web

from syncd.runtime.errors import OpsUnavailable as OpsUnavailable  # raised here
from syncd.runtime.health import Health
from syncd.runtime.listener import Listener, ListenerLimits
from syncd.runtime.metrics import Metrics
from syncd.runtime.resyncauth import ResyncGrant, grant

log = structlog.get_logger("syncd.ops")

Route = tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]
"""(method, path, handler) of an extra endpoint, e.g. ``POST /hooks/netbox``."""


LINGER = 0.25
"""Seconds a body left unread (a refused webhook) is still read and dropped, so an honest
client gets its answer, before the connection is closed (aiohttp's default is 10)."""


class OpsServer:
    """aiohttp app + runner; ``start`` returns the base URL (port 0 picks a free port)."""

    def __init__(
        self,
        health: Health,
        metrics: Metrics,
        on_resync: Callable[[], None],
        host: str = "127.0.0.1",
        port: int = 9108,
        routes: Sequence[Route] = (),
        resync_token: str | None = None,
        limits: ListenerLimits | None = None,
        on_lift: Callable[[], None] | None = None,
    ) -> None:
        self.health = health
        self.metrics = metrics
        self.on_resync = on_resync
        """A resync; without ``on_lift``, also the one the token asks for."""
        self.on_lift = on_lift
        """A resync that lifts the prune guards (the resync token was given)."""
        self.host = host
        self.port = port
        self.routes = list(routes)
        self._token = resync_token.encode("utf-8") if resync_token else None
        self.limits = limits or ListenerLimits()
        self.url: str | None = None
        self.listener: Listener | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/resync", self._resync)
        for method, path, handler in self.routes:
            app.router.add_route(method, path, handler)
        return app

    async def start(self) -> str:
        # No access log: probes every few seconds would drown the sync's own lines.
        listener = Listener(
            self.app(),
            name="ops",
            host=self.host,
            port=self.port,
            limits=self.limits,
            count=self.metrics.record_http_trouble,
        )
        try:
            host, self.port = await listener.start()
        except OSError as exc:
            raise OpsUnavailable(
                f"ops server cannot listen on {self.host}:{self.port}: "
                f"{exc.strerror or exc} (another syncd, or set ops.port)"
            ) from None
        self.listener = listener
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"
        log.info(
            "ops_listening",
            url=self.url,
            max_connections=listener.cap,
            open_files_limit=listener.nofile,
        )
        return self.url

    async def stop(self) -> None:
        if self.listener is not None:
            listener, self.listener = self.listener, None
            await listener.stop()

    # -- handlers -------------------------------------------------------------

    async def _index(self, _: web.Request) -> web.Response:
        extra = [path for _, path, _ in self.routes]
        return web.json_response(
            {"endpoints": ["/healthz", "/readyz", "/metrics", "/resync", *extra]}
        )

    async def _healthz(self, _: web.Request) -> web.Response:
        ok, reason = self.health.alive()
        return web.json_response({"ok": ok, "reason": reason}, status=200 if ok else 503)

    async def _readyz(self, _: web.Request) -> web.Response:
        now = self.health.clock()
        ok, reason = self.health.ready(now)
        body: dict[str, Any] = {"ok": ok, "reason": reason, **self.health.snapshot(now)}
        return web.json_response(body, status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.render(request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})

    def _resync_refusal(self, request: web.Request) -> str | None:
        """Why this POST /resync is refused, or None."""
        return self._resync_grant(request)[1]

    def _resync_grant(self, request: web.Request) -> tuple[ResyncGrant, str | None]:
        if "Origin" in request.headers:
            return ResyncGrant.REFUSED, "cross-origin requests are refused"
        trusted = is_loopback(self.host) or is_loopback(request.remote or "")
        return grant(request.headers.get("Authorization"), self._token, trusted=trusted)

    async def _resync(self, request: web.Request) -> web.Response:
        decided, refused = self._resync_grant(request)
        if refused is not None:
            log.warning("resync_refused", peer=request.remote, reason=refused)
            return web.json_response({"ok": False, "reason": refused}, status=403)
        lift = decided is ResyncGrant.LIFT
        try:
            (self.on_lift if lift and self.on_lift is not None else self.on_resync)()
        except Exception as exc:
            log.error("resync_request_failed", error=f"{type(exc).__name__}: {exc}")
            return web.json_response({"ok": False, "reason": "resync request failed"}, status=500)
        log.info("resync_requested_http", peer=request.remote, lifts_guards=lift)
        reason = "resync requested" + ("" if lift else "; prune guards stay")
        return web.json_response({"ok": True, "reason": reason, "lifts_guards": lift}, status=202)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
