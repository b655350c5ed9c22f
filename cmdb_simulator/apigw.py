"""The API gateway in front of the simulated CMDB: credentials in
``X-Bkapi-Authorization``, real HTTP statuses with 16xxxxx codes, request ids in headers;
then its plugins in priority order: on 3.15 the tenant check (bk-tenant-validate, 17674),
the concurrency limit per app (bk-concurrency-limit, 17660), the fixed-window rate
limit per app, stage and resource (bk-resource-rate-limit, 17653)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from cmdb_simulator.backend import ApiSpec, match_path
from cmdb_simulator.envelope import apigw_body, code_of
from cmdb_simulator.front import JSON_TYPE, Core, Outcome, drop, dumps, parse_body
from cmdb_simulator.limits import RateDecision
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
    GatewayError,
    apigw_language,
)
from cmdb_simulator.tenants import HEADER as TENANT_HEADER


class ApiGatewayFront:
    """``/api/bk-cmdb/{stage}/...``: the backend's own method and path."""

    def __init__(self, sim: Core) -> None:
        self.sim = sim

    def error(
        self, err: GatewayError, headers: dict[str, str], outcome: Outcome | None = None
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
        return web.Response(
            status=err.status, body=dumps(doc), content_type=JSON_TYPE, headers=hdrs
        )

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
        if self.sim._apps.get(str(code)) != secret:
            return APIGW_BAD_SECRET
        token = creds.get("bk_token") or creds.get("access_token")
        if token and (self.sim._tokens is None or token in self.sim._tokens):
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

    async def handle(self, request: web.Request) -> web.StreamResponse:
        tail = "/" + request.match_info["tail"]
        found = match_path(request.method, tail)
        outcome = Outcome(found[0].name if found else "unknown")
        self.sim._stats.arrive()
        try:
            return await self._apigw_serve(request, found, outcome)
        finally:
            self.sim._stats.depart(outcome.api, outcome.status, outcome.code)

    async def _apigw_serve(
        self,
        request: web.Request,
        found: tuple[ApiSpec, dict[str, str]] | None,
        outcome: Outcome,
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
            return self.error(err, headers, outcome)
        api, params = found
        creds = self._gw_creds(request.headers.get("X-Bkapi-Authorization"))
        refusal = self._gw_auth(creds)
        if refusal is not None:
            return self.error(APIGW_INVALID_ARGS.with_reason(reason=refusal), headers, outcome)
        opts = self.sim.options
        app_code = str(creds["bk_app_code"])
        tenant = request.headers.get(TENANT_HEADER)
        if self.sim.version.tenants:
            tenant, cross = self.sim.tenancy.gateway(self.sim._app_info[app_code], tenant)
            if cross is not None:
                return self.error(cross, headers, outcome)
        # bk-concurrency-limit (priority 17660) runs before bk-resource-rate-limit (17653),
        # one count per gateway, stage and app (bk-concurrency-limit.lua:44-58,83-89).
        stage = request.match_info["stage"]
        if not self.sim._gate.try_enter(opts.max_in_flight, app_code):
            key = f"bk-cmdb:{stage}:{app_code}"
            return self.error(APIGW_CONCURRENCY_LIMITED.with_reason(key=key), headers, outcome)
        try:
            decision = self.sim._gw_rate.check(opts.rate_limit, app_code, f"{stage}:{api.name}")
            headers.update(self._rate_headers(decision))
            if decision is not None and not decision.allowed:
                return self.error(APIGW_RATE_LIMITED, headers, outcome)
            try:
                body = parse_body(await request.read())
            except web.HTTPRequestEntityTooLarge:
                return self.error(APIGW_BODY_TOO_LARGE, headers, outcome)
            lang = apigw_language(request.headers.get("X-Bkcmdb-Language"))
            fault, data = await self.sim._act(api, params, body, lang, app_code, tenant)
            if fault == "502":
                return self.error(APIGW_BAD_GATEWAY, headers, outcome)
            if fault in ("504", "504-after"):
                timeout = APIGW_BACKEND_TIMEOUT.with_reason(
                    upstream_error="cannot read header from upstream"
                )
                return self.error(timeout, headers, outcome)
            doc = apigw_body(data, lang, self.sim.version, api.name)
            outcome.code = code_of(doc)
            if fault == "drop":
                return await drop(request, dumps(doc), headers, outcome)
            return web.Response(body=dumps(doc), content_type=JSON_TYPE, headers=headers)
        finally:
            self.sim._gate.leave(app_code)
