"""Test helpers: the fixture used by the simulator tests and a client for both gateways."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from cmdb_simulator import Simulator
from cmdb_simulator.backend import BY_NAME

CONNECT = "bk_switch_connect_host"  # n:n
MANAGE = "bk_switch_manage_host"  # 1:n
OWN = "bk_switch_own_host"  # 1:1
APP = {"bk_app_code": "syncd", "bk_app_secret": "change-me"}
GATEWAYS = ("esb", "apigw")
LANGS = ("en", "zh")


def model(asst_id: str, kind: str, mapping: str) -> dict[str, str]:
    return {
        "bk_obj_asst_id": asst_id,
        "bk_obj_id": "bk_switch",
        "bk_asst_id": kind,
        "bk_asst_obj_id": "host",
        "mapping": mapping,
    }


def fixture_doc() -> dict[str, Any]:
    """Switches 1..50, hosts 101..300 (101 and 102 spelled out), pair 1->101 exists."""
    return {
        "apps": [APP, {"bk_app_code": "other", "bk_app_secret": "other-secret"}],
        "objects": {
            "bk_switch": [{"bk_inst_id": 1, "bk_inst_name": "sw-core-01"}],
            "host": [
                {"bk_host_id": 101, "bk_host_innerip": "10.0.0.1", "bk_host_name": "srv-01"},
                {"bk_host_id": 102, "bk_host_innerip": "10.0.0.2", "bk_host_name": "srv-02"},
            ],
        },
        "instance_ranges": {"bk_switch": [2, 50], "host": [103, 300]},
        "model_associations": [
            model(CONNECT, "connect", "n:n"),
            model(MANAGE, "manage", "1:n"),
            model(OWN, "own", "1:1"),
        ],
        "instance_associations": [
            {"bk_obj_asst_id": CONNECT, "bk_inst_id": 1, "bk_asst_inst_id": 101}
        ],
    }


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    doc: Any


class Cmdb:
    """Calls the simulator the way a client would, through either gateway."""

    def __init__(self, sim: Simulator, url: str, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.url = url
        self.session = session

    async def raw(self, method: str, path: str, **kw: Any) -> Answer:
        async with self.session.request(method, self.url + path, **kw) as resp:
            text = await resp.text()
            doc = json.loads(text) if text else None
            return Answer(resp.status, resp.headers, doc)

    async def esb(
        self,
        api: str,
        body: Mapping[str, Any] | None = None,
        *,
        lang: str | None = "en",
        creds: Mapping[str, Any] | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        hdrs = dict(headers or {})
        if lang is not None:
            hdrs["Blueking-Language"] = "en" if lang == "en" else "zh-cn"
        if data is None:
            full = {**(APP | {"bk_username": "admin"} if creds is None else creds), **(body or {})}
            data = json.dumps(full).encode()
        return await self.raw(
            "POST",
            f"/api/c/compapi/v2/cc/{api}/",
            data=data,
            headers=hdrs | {"Content-Type": "application/json"},
        )

    async def gw(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        lang: str | None = "en",
        auth: Mapping[str, Any] | str | None = "default",
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        stage: str = "prod",
    ) -> Answer:
        hdrs = dict(headers or {})
        if lang is not None:
            hdrs["X-Bkcmdb-Language"] = "en" if lang == "en" else "zh-cn"
        if auth == "default":
            hdrs["X-Bkapi-Authorization"] = json.dumps(APP | {"bk_username": "admin"})
        elif isinstance(auth, Mapping):
            hdrs["X-Bkapi-Authorization"] = json.dumps(auth)
        if data is None and body is not None:
            data = json.dumps(body).encode()
        return await self.raw(
            method,
            f"/api/bk-cmdb/{stage}{path}",
            data=data,
            headers=hdrs | {"Content-Type": "application/json"},
        )

    async def call(
        self,
        gateway: str,
        api: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        lang: str | None = "en",
    ) -> Answer:
        """One API by its ESB name; path variables go in the body (ESB) or the path (apigw)."""
        params = dict(params or {})
        if gateway == "esb":
            return await self.esb(api, {**(body or {}), **params}, lang=lang)
        spec = BY_NAME[api]
        return await self.gw(spec.method, spec.path.format(**params), body or {}, lang=lang)

    async def batch(
        self, gateway: str, details: list[tuple[int, int]], asst: str = CONNECT, lang: str = "en"
    ) -> Answer:
        body = {
            "bk_obj_id": "bk_switch",
            "bk_asst_obj_id": "host",
            "bk_obj_asst_id": asst,
            "details": [{"bk_inst_id": s, "bk_asst_inst_id": d} for s, d in details],
        }
        return await self.call(gateway, "batch_create_instance_association", body, lang=lang)
