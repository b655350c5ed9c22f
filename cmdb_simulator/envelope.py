"""The body a CMDB answer arrives in, per gateway and bk-cmdb version.

bk-cmdb itself writes ``{result, bk_error_code, bk_error_msg, permission, data}``
(``metadata.Response``), or a bare ``metadata.BaseResp`` without ``data`` from the
API server's own filters (limiter, auth; src/common/metadata/result.go:28-33).

- ESB rewrites every answer to ``{result, code, data, message, permission}``
  (esb/components/bk/apisv2/cc/toolkit/tools.py:93-123) and adds ``request_id``.
- The API gateway passes the CMDB's body on; from bk-cmdb 3.12.4 the API server
  renames the top-level ``bk_error_code``/``bk_error_msg`` to ``code``/``message`` for
  gateway requests, except in the answers its filters write themselves
  (src/apiserver/service/http.go:145-183, filter.go:249-251,381-389).
"""

from __future__ import annotations

from typing import Any

from cmdb_simulator.messages import CmdbError, Lang
from cmdb_simulator.version import CmdbVersion

SUCCESS = "success"
WITHOUT_PERMISSION = frozenset({"resource_watch"})
"""APIs whose success the event server writes with ``RespString``: ``{"result",
"bk_error_code", "bk_error_msg", "data"}``, no ``permission``
(src/common/http/rest/contexts.go:92-108, src/scene_server/event_server/service/watch.go:47)."""


def cmdb_body(data: Any, lang: Lang, api: str = "") -> dict[str, Any]:
    """What bk-cmdb writes, before any gateway touches it (Go struct field order)."""
    if isinstance(data, CmdbError):
        doc: dict[str, Any] = {
            "result": False,
            "bk_error_code": data.code,
            "bk_error_msg": data.message(lang),
            "permission": data.permission,
        }
        if not data.bare:
            doc["data"] = None
        return doc
    if api in WITHOUT_PERMISSION:
        return {"result": True, "bk_error_code": 0, "bk_error_msg": SUCCESS, "data": data}
    return {
        "result": True,
        "bk_error_code": 0,
        "bk_error_msg": SUCCESS,
        "permission": None,
        "data": data,
    }


def esb_body(data: Any, lang: Lang, request_id: str, api: str = "") -> dict[str, Any]:
    """The CC component's ``format_response`` plus ESB's ``request_id``; it always has a
    ``permission`` (``response.get("permission")``, cc/toolkit/tools.py:93-123)."""
    raw = cmdb_body(data, lang, api)
    return {
        "result": raw["result"],
        "code": raw["bk_error_code"],
        "data": raw.get("data"),
        "message": raw["bk_error_msg"] or "",
        "permission": raw.get("permission"),
        "request_id": request_id,
    }


def apigw_body(data: Any, lang: Lang, version: CmdbVersion, api: str = "") -> dict[str, Any]:
    """The API server's answer to a gateway (JWT) request."""
    raw = cmdb_body(data, lang, api)
    if not version.apigw_renames_keys or (isinstance(data, CmdbError) and data.filter):
        return raw
    renames = {"bk_error_code": "code", "bk_error_msg": "message"}
    return {renames.get(k, k): v for k, v in raw.items()}


def code_of(doc: dict[str, Any]) -> int | None:
    """The envelope code, whichever spelling it uses."""
    code = doc.get("code", doc.get("bk_error_code"))
    return code if isinstance(code, int) else None
