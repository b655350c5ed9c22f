"""The legacy ESB in front of the simulated CMDB: credentials in the body (or the
``X-Bkapi-Authorization`` header), HTTP 200 with 1306xxx codes, a body ``request_id``, its
per-app-per-component rate limit, no concurrency limit and no tenant header."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from cmdb_simulator.backend import BY_NAME, ApiSpec
from cmdb_simulator.envelope import code_of, esb_body
from cmdb_simulator.front import JSON_TYPE, Core, Outcome, drop, dumps, parse_body
from cmdb_simulator.messages import (
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
    esb_bad_secret,
    esb_language,
    esb_not_json,
    esb_param_required,
    esb_rate_limited,
    esb_third_party,
    esb_unknown_app,
)


class EsbFront:
    """``POST /api/c/compapi/v2/cc/{api_name}/``."""

    def __init__(self, sim: Core) -> None:
        self.sim = sim

    def _esb_response(self, doc: dict[str, Any], outcome: Outcome) -> web.Response:
        return web.Response(body=dumps(doc), content_type=JSON_TYPE, headers=outcome.extra_headers)

    def _esb_error(self, code: int, message: str, rid: str, outcome: Outcome) -> web.Response:
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
        if str(code) not in self.sim._apps:
            return esb_unknown_app(str(code))
        if self.sim._apps[str(code)] != secret:
            return esb_bad_secret(str(code))
        token = creds.get("bk_token")
        if token:
            if self.sim._tokens is not None and token not in self.sim._tokens:
                return ESB_BAD_TOKEN
            return None
        if creds.get("bk_username") or creds.get("username"):
            return None
        return ESB_NO_USER

    @staticmethod
    def _path_vars(api: ApiSpec, body: Any) -> dict[str, Any] | str:
        """The component fills its ``dest_path`` from the call's fields with ``str.format``
        (esb/components/component.py:95-106): the name of the first one missing, or each
        one's Python text (None gives "None"). A body that is no JSON object is passed
        on as it is, its path variables empty."""
        if not isinstance(body, Mapping):
            return {k: None for k in api.path_params}
        missing = next((k for k in api.path_params if k not in body), None)
        if missing is not None:
            return missing
        return {k: format(body[k]) for k in api.path_params}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["api_name"]
        api = BY_NAME.get(name)
        outcome = Outcome(api.name if api else "unknown")
        self.sim._stats.arrive()
        try:
            return await self._esb_serve(request, api, name, outcome)
        finally:
            self.sim._stats.depart(outcome.api, outcome.status, outcome.code)

    async def _esb_serve(
        self, request: web.Request, api: ApiSpec | None, name: str, outcome: Outcome
    ) -> web.StreamResponse:
        rid = uuid.uuid4().hex
        if api is None:
            return self._esb_error(ESB_COMPONENT_NOT_FOUND, ESB_NOT_FOUND_TEXT, rid, outcome)
        try:
            body = parse_body(await request.read())
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
        decision = self.sim._rate.check(self.sim.options.rate_limit, app_code, name)
        if decision is not None and not decision.allowed:
            limit = f"{decision.limit}/1second"
            return self._esb_error(
                ESB_RATE_LIMITED, esb_rate_limited(app_code, name, limit), rid, outcome
            )
        lang = esb_language(request.headers.get("Blueking-Language"))
        params = self._path_vars(api, body)
        if isinstance(params, str):
            return self._esb_error(ESB_ARGUMENT_ERROR, esb_param_required(params), rid, outcome)
        fault, data = await self.sim._act(api, params, body, lang, app_code)
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
        doc = esb_body(data, lang, rid, api.name)
        outcome.code = code_of(doc)
        if fault == "drop":
            return await drop(request, dumps(doc), {}, outcome)
        return self._esb_response(doc, outcome)
