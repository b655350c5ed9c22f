"""Read what the CMDB said: the envelope of one answer. Pure, no I/O.

Its own module because reading an answer (every gateway's envelope, the codes, the
request id and retry hint) is a different concern from deciding what a batch came to
(:mod:`syncd.core.outcome`), and the client needs only this part. The per-index
``data`` of a batch is read by :mod:`syncd.core.details`.

Request-level answers are classified by HTTP status and by code, read under both
spellings (``code``/``message`` and the CMDB's internal ``bk_error_code``/``bk_error_msg``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from syncd.core.jsonload import loads


class Verdict(StrEnum):
    """What to do about a whole answer."""

    OK = "ok"
    RETRY = "retry"
    """Nothing happened; safe to send again after a pause."""
    AMBIGUOUS = "ambiguous"
    """The CMDB may have acted; resend (create is idempotent per pair) and trust the resend."""
    RELATION = "relation"
    """Permanent for this relation (credentials, permission, model, parameters): stop it."""
    FAILED = "failed"
    """This request failed for a reason not known to be permanent; try again next cycle."""


# Codes that say "too fast": gateway/ESB rate and concurrency limits, the CMDB's own
# limiter. All callers share one budget, so these slow the whole client down.
RATE_LIMIT_CODES = frozenset({1306429, 1642902, 1642903, 1642904, 1199997})
# Codes that say "busy, try again": the above, core-service concurrency, and a
# gateway that could not reach the backend.
RETRY_CODES = RATE_LIMIT_CODES | {1113053, 1650200, 1650201}
AMBIGUOUS_CODES = frozenset({1306201, 1650401, 1109005, 1109001})
"""504-like: the CMDB may have acted. 1109005/1109001 (audit log failed) come after the inserts."""
CCERR_PARSE_AUTH_ATTRIBUTE = 1199045
"""bk-cmdb's auth-parse failure (auth on): the message is the parser's raw error text.
Mostly about one detail (``host 999 has no relations``, ``invalid bk_inst_id value``),
so it is not in :data:`RELATION_CODES`; only :func:`parse_failure_is_relation` texts are."""


def parse_failure_is_relation(message: str) -> bool:
    """A 1199045 text about the relation, not a detail: a model or model association the
    parser could not find (``model association [map[bk_obj_asst_id:X]] not found``)."""
    return "not found" in message and "model" in message


ESB_NOT_JSON = "Request interface error, the response content is not a json string"
"""ESB's 1306000 for a backend answer that is not JSON (e.g. a proxy's 502 page): the
CMDB may have acted, unlike ESB's other 1306000 answers (refused credentials)."""
RELATION_CODES: Mapping[int, str] = {
    1306000: "the ESB refused the app credentials or user: check cmdb.app_code/app_secret/username",
    1640001: "the API gateway refused the credentials: check cmdb.app_code/app_secret/username",
    1640301: "the app has no permission to this CMDB resource on the API gateway: grant it",
    1640401: "the API gateway does not know this API: check cmdb.url, cmdb.gateway and cmdb.stage",
    1641301: "the request body is too large for the gateway: lower cmdb.batch_size",
    9900403: "no IAM permission: apply for the permission named in this line",
    1199046: "the CMDB could not ask IAM whether the user may do this: check the CMDB's IAM; "
    "for the watch, bk-cmdb before 3.10.10 has no inst_asst events (set sync.watch = false)",
    1199047: "no IAM permission: apply for the permission named in this line",
    1199048: "no IAM permission: apply for the permission named in this line",
    1101046: "the model association does not exist in the CMDB: check bk_obj_asst_id",
    1199011: "a required parameter is missing: check the relation's bk_obj_id/bk_asst_obj_id",
    1199006: "the CMDB rejected a parameter: check the relation's model ids",
    1199035: "too many details in one request: lower cmdb.batch_size",
    1199000: "the CMDB could not decode the request",
    1100005: "the CMDB does not know the tenant: on a multi-tenant BlueKing (bk-cmdb 3.15) "
    'set cmdb.tenant_id to your tenant and cmdb.gateway = "apigw"; otherwise remove '
    'cmdb.tenant_id (or set it to "default")',
    1640302: "the API gateway refused the tenant: set cmdb.tenant_id to the app's own tenant "
    "(a single-tenant app) or to the tenant to sync (an all-tenant app, which must send one)",
}


@dataclass(frozen=True, slots=True)
class Answer:
    """One classified HTTP exchange with the CMDB."""

    verdict: Verdict
    status: int | None
    code: int | None = None
    message: str = ""
    data: Any = None
    request_id: str | None = None
    retry_after: float | None = None
    permission: Any = None
    hint: str = ""
    after_ambiguous: bool = False
    """An earlier attempt of the same request ended ambiguously (the CMDB may have acted):
    an "already exists" in this answer may be syncd's own create."""

    @property
    def may_have_acted(self) -> bool:
        """The CMDB may have carried out (part of) this request without saying so."""
        return self.verdict is Verdict.AMBIGUOUS or self.after_ambiguous

    @property
    def rate_limited(self) -> bool:
        """Refused for going too fast (HTTP 429 or a limiter's code)."""
        return self.status == 429 or self.code in RATE_LIMIT_CODES

    @property
    def error(self) -> str:
        """One line for logs: what went wrong, with the CMDB's own words."""
        parts = []
        if self.status is not None and self.status != 200:
            parts.append(f"HTTP {self.status}")
        if self.code:
            parts.append(f"code {self.code}")
        if self.message:
            parts.append(self.message)
        return ": ".join(parts) if parts else "no answer"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lname = name.lower()
        for key, val in headers.items():
            if key.lower() == lname:
                return val
    return value


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name in ("Retry-After", "X-Bkapi-RateLimit-Reset"):
        raw = _header(headers, name)
        if raw:
            try:
                value = float(raw)
            except ValueError:
                continue
            if value >= 0:
                return min(value, 300.0)
    return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _first(doc: Mapping[str, Any], *keys: str) -> Any:
    """The first of ``keys`` with a meaningful value: ESB and the gateway say ``code``,
    the CMDB's own filters ``bk_error_code``; a relay may carry both, one of them empty."""
    for key in keys:
        value = doc.get(key)
        if value not in (None, "", 0):
            return value
    for key in keys:
        if key in doc:
            return doc[key]
    return None


_REQUEST_ID_HEADERS = ("X-Bkapi-Request-ID", "X-Request-ID", "Cc_Request_Id")
"""Gateway's id first (what its operators search by), then the CMDB's own rid headers."""


def classify_response(status: int, headers: Mapping[str, str], body: bytes) -> Answer:
    """Classify one complete HTTP answer from either gateway or the CMDB itself.

    Reads every envelope the real paths send: ESB's ``{result, code, message, data,
    permission, request_id}``, the API gateway's ``{code_name, code, message, data,
    result}``, and the CMDB filters' ``{result, bk_error_code, bk_error_msg,
    permission}`` with no ``data`` key. The request id comes from the ESB body, else
    the gateway's or the CMDB's headers.
    """
    header_id = next((v for n in _REQUEST_ID_HEADERS if (v := _header(headers, n))), None)
    retry_after = _retry_after(headers)
    try:
        doc = loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict):
        snippet = body[:120].decode("utf-8", "replace").strip()
        message = f"answer is not a JSON object: {snippet!r}" if body else "empty answer"
        return Answer(_status_verdict(status), status, None, message, None, header_id, retry_after)

    body_id = doc.get("request_id")
    request_id = str(body_id) if isinstance(body_id, str | int) and body_id != "" else header_id
    code = _as_int(_first(doc, "code", "bk_error_code"))
    raw_message = _first(doc, "message", "bk_error_msg")
    message = raw_message if isinstance(raw_message, str) else str(raw_message or "")
    result = doc.get("result")
    permission = doc.get("permission")
    data = doc.get("data")
    if status == 200 and result is True and (code in (0, None)):
        return Answer(Verdict.OK, status, code, message, data, request_id, retry_after)

    if result is False and code in (0, None) and not message:
        # Said nothing usable: log what it did say rather than "no answer".
        message = f"result false with code {code} and no message: {_snippet(doc)}"
    if code in RETRY_CODES or status in (429, 502, 503):
        verdict = Verdict.RETRY
    elif code in AMBIGUOUS_CODES or status in (504, 500) or message.startswith(ESB_NOT_JSON):
        verdict = Verdict.AMBIGUOUS
    elif code == CCERR_PARSE_AUTH_ATTRIBUTE:
        # About a detail unless the parser could not find the model (syncd.core.refusal).
        verdict = Verdict.RELATION if parse_failure_is_relation(message) else Verdict.FAILED
    elif code in RELATION_CODES or status in (400, 401, 403, 404, 413):
        verdict = Verdict.RELATION
    else:
        verdict = Verdict.FAILED
    parse_failure = code == CCERR_PARSE_AUTH_ATTRIBUTE
    hint = _relation_hint(code, message) if verdict is Verdict.RELATION or parse_failure else ""
    if verdict is Verdict.RELATION and not hint:
        hint = "the gateway refused the request: check cmdb.url, credentials and permissions"
    return Answer(verdict, status, code, message, data, request_id, retry_after, permission, hint)


def _snippet(doc: Mapping[str, Any]) -> str:
    text = json.dumps(doc, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= 200 else text[:200] + "..."


# 1199045 carries the raw Go error of bk-cmdb's auth-parse stage (src/ac/parser), the same
# text in every language; what to fix depends on which lookup failed.
_PARSE_HINTS: tuple[tuple[str, str], ...] = (
    (
        "model association [",
        "the model association does not exist in the CMDB: check bk_obj_asst_id",
    ),
    ("model [", "the CMDB has no such model: check the relation's bk_obj_id/bk_asst_obj_id"),
    (
        "has no relations",
        "a host (or set/module) named in the request does not exist in the CMDB: "
        "check the source for decommissioned hosts",
    ),
    ("invalid bk_inst_id value", "a detail has an instance id <= 0"),
    ("invalid bk_asst_inst_id value", "a detail has an instance id <= 0"),
)


def _relation_hint(code: int | None, message: str) -> str:
    if code == CCERR_PARSE_AUTH_ATTRIBUTE:
        for needle, hint in _PARSE_HINTS:
            if needle in message:
                return hint
    return RELATION_CODES.get(code or 0, "")


def _status_verdict(status: int) -> Verdict:
    if status in (429, 502, 503):
        return Verdict.RETRY
    if status in (400, 401, 403, 404, 413):
        return Verdict.RELATION
    # A 200 with a garbled body, a 500 or a 504: the CMDB may have acted.
    return Verdict.AMBIGUOUS


def classify_transport_error(exc: BaseException, *, sent: bool) -> Answer:
    """A request that got no complete answer.

    Before the request was sent (connect refused/reset) nothing can have
    happened: retry. After it was sent (timeout, connection dropped) the
    CMDB may have acted: ambiguous.
    """
    name = type(exc).__name__
    text = str(exc) or name
    message = f"{name}: {text}" if text != name else name
    return Answer(Verdict.AMBIGUOUS if sent else Verdict.RETRY, None, None, message)
