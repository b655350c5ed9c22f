"""How a call is framed for each gateway. No I/O: builds method, URL, headers, body.

ESB: credentials and path variables ride in the JSON body, language in
``Blueking-Language``. API gateway: credentials in ``X-Bkapi-Authorization``,
backend method and path, language in ``X-Bkcmdb-Language``, our own
``X-Request-ID`` so the CMDB's logs can be matched to ours. On a multi-tenant CMDB
(bk-cmdb 3.15, ``cmdb.tenant_id``) the tenant rides in ``X-Bk-Tenant-Id`` and the
supplier account, which that release no longer has, is not sent.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from syncd.cmdb.apis import Api
from syncd.config.settings import CmdbSettings
from syncd.core import jsondump
from syncd.support.httpbody import safe_url


@dataclass(frozen=True, slots=True)
class Framed:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    request_id: str


def frame(settings: CmdbSettings, api: Api, body: dict[str, Any], params: dict[str, Any]) -> Framed:
    """Frame one call for the configured gateway."""
    request_id = uuid.uuid4().hex
    headers = {"Content-Type": "application/json", "X-Request-ID": request_id}
    if settings.gateway == "esb":
        payload: dict[str, Any] = {
            "bk_app_code": settings.app_code,
            "bk_app_secret": settings.secret(),
            "bk_username": settings.username,
            "bk_supplier_account": settings.supplier_account,
        }
        if settings.bk_token is not None:
            payload["bk_token"] = settings.bk_token.get_secret_value()
        payload.update(params)
        payload.update(body)
        headers["Blueking-Language"] = settings.language
        url = f"{settings.url}/api/c/compapi/v2/cc/{api.name}/"
        return Framed("POST", url, headers, jsondump.dumps(payload), request_id)
    auth: dict[str, str] = {
        "bk_app_code": settings.app_code,
        "bk_app_secret": settings.secret(),
        "bk_username": settings.username,
    }
    if settings.bk_token is not None:
        auth["bk_token"] = settings.bk_token.get_secret_value()
    headers["X-Bkapi-Authorization"] = json.dumps(auth)
    headers["X-Bkcmdb-Language"] = "en" if settings.language == "en" else "zh-cn"
    if settings.tenant_id is not None:
        headers["X-Bk-Tenant-Id"] = settings.tenant_id
    else:
        headers["X-Bkcmdb-Supplier-Account"] = settings.supplier_account
    path = api.path.format(**{k: path_segment(v) for k, v in params.items()})
    url = f"{settings.url}/api/bk-cmdb/{settings.stage}{path}"
    return Framed(api.method, url, headers, jsondump.dumps(body), request_id)


def path_segment(value: object) -> str:
    """A path variable as one URL path segment: every reserved character quoted, so a
    value can neither leave the path (``/../``), cut it (``#``) nor start a query
    (``?``). Dot segments cannot be quoted away (URLs normalise ``%2E%2E`` too): refused."""
    text = str(value)
    if text in ("", ".", ".."):
        raise ValueError(f"{text!r} cannot be a URL path segment")
    return quote(text, safe="")


def describe(settings: CmdbSettings) -> str:
    """One line for ``syncd check-config``: which gateway, and how the CMDB learns whose
    data a call is about (supplier account or tenant), so the operator can match it to
    the BlueKing release before the first call."""
    url = safe_url(settings.url)
    if settings.gateway == "esb":
        return (
            f"CMDB through the ESB at {url}: bk_supplier_account = "
            f"{settings.supplier_account!r} in every body, no tenant "
            "(bk-cmdb 3.10-3.14, or a 3.15 that is not multi-tenant)"
        )
    where = f"CMDB through the API gateway at {url}, stage {settings.stage!r}"
    if settings.tenant_id is not None:
        return (
            f"{where}: X-Bk-Tenant-Id: {settings.tenant_id} on every call, no supplier "
            "account (bk-cmdb 3.15, multi-tenant)"
        )
    return (
        f"{where}: X-Bkcmdb-Supplier-Account: {settings.supplier_account}, no tenant "
        "(bk-cmdb 3.10-3.14; a multi-tenant 3.15 needs cmdb.tenant_id)"
    )
