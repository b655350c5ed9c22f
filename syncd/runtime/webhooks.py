"""NetBox webhooks: ``POST /hooks/netbox`` turns a NetBox change into a change applied now.

NetBox (4.x, ``extras/webhooks.py``) sends one POST per changed object, from its RQ
worker, with the body ``json.dumps(context)`` of ``{event, timestamp, object_type, data,
request, snapshots}`` and, when the webhook has a secret, ``X-Hook-Signature``: the hex
HMAC-SHA512 of the raw body keyed with that secret.

Order of checks: a signature header (else nothing is read), size, the body read chunk by
chunk into the HMAC under a budget shared by every webhook request
(:mod:`syncd.runtime.hookguard`), the signature, JSON, replay. Nothing from an
unauthenticated body is parsed. What the delivery names becomes a
:class:`syncd.engine.change.Change` (a cable, the cables an interface had or has, a
device); any other object type asks for a full read (:func:`event_change`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from syncd.engine.change import Change
from syncd.runtime.hookguard import BodyBudget, RefusalLog, ReplayGuard

log = structlog.get_logger("syncd.webhooks")

SIGNATURE_HEADER = "X-Hook-Signature"
RELEVANT_MODELS = frozenset({"dcim.cable", "dcim.interface", "dcim.device"})
"""What a NetBox relation reads: cables, their interface ends, the devices' keys."""
OBJECT_EVENTS = frozenset({"created", "updated", "deleted"})
"""NetBox's WEBHOOK_EVENT_TYPES for object changes (the others are job events)."""
RESULTS = (
    "applied",
    "full_read",
    "ignored",
    "duplicate",
    "unsigned",
    "bad_signature",
    "too_large",
    "timeout",
    "busy",
    "bad_payload",
)
"""Every outcome of a delivery (``syncd_webhooks_total{result}``)."""


def sign(body: bytes, secret: str) -> str:
    """What NetBox puts in X-Hook-Signature (``extras.webhooks.generate_signature``)."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha512).hexdigest()


def signature_ok(body: bytes, given: str | None, secret: str) -> bool:
    """Constant-time check of a request's signature header against the body."""
    if not given:
        return False
    return _digest_ok(sign(body, secret), given)


def _digest_ok(expected: str, given: str) -> bool:
    return hmac.compare_digest(
        expected.encode("ascii"), given.strip().lower().encode("utf-8", "replace")
    )


class PayloadError(ValueError):
    """A signed body that is not a NetBox webhook payload."""


@dataclass(frozen=True, slots=True)
class NetBoxEvent:
    """The part of a webhook payload syncd looks at."""

    event: str
    object_type: str
    """``app_label.model`` (``dcim.cable``); NetBox before 4.5 sent only ``model``."""
    object_id: int | None
    cables: frozenset[int] = frozenset()
    """The cables it names: a cable's own id; an interface's cable before and after."""

    @property
    def relevant(self) -> bool:
        """An object change (not a job event) of a model a NetBox relation reads."""
        return self.event in OBJECT_EVENTS and self.object_type in RELEVANT_MODELS

    @property
    def object_event(self) -> bool:
        return self.event in OBJECT_EVENTS


def event_change(event: NetBoxEvent) -> Change | None:
    """What applying ``event`` means: a Change (possibly empty: nothing to do), or None when
    only a full read can tell (another model, such as a site; a payload without an id)."""
    if not event.relevant or event.object_id is None:
        return None
    if event.object_type == "dcim.device":
        return Change(devices=frozenset({event.object_id}))
    return Change(cables=event.cables)


def _int(value: Any) -> int | None:
    """A NetBox object id: a positive int64 (anything else names nothing)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63
    return value if ok else None


def _cable_ids(
    object_type: str, object_id: int | None, data: Any, snapshots: Any
) -> frozenset[int]:
    if object_type == "dcim.cable":
        return frozenset({object_id}) if object_id is not None else frozenset()
    if object_type != "dcim.interface":
        return frozenset()
    found: set[int] = set()
    cable = data.get("cable") if isinstance(data, dict) else None
    if (ident := _int(cable.get("id") if isinstance(cable, dict) else None)) is not None:
        found.add(ident)
    for when in ("prechange", "postchange"):
        snap = snapshots.get(when) if isinstance(snapshots, dict) else None
        if (ident := _int(snap.get("cable") if isinstance(snap, dict) else None)) is not None:
            found.add(ident)
    return frozenset(found)


def parse_event(body: bytes) -> NetBoxEvent:
    """The event of a webhook body, or PayloadError saying what is wrong with it."""
    try:
        doc: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"body is not JSON: {exc}") from None
    except RecursionError:
        raise PayloadError("body is nested too deeply") from None
    if not isinstance(doc, dict):
        raise PayloadError(f"body is a JSON {type(doc).__name__}, not an object")
    event = doc.get("event")
    if not isinstance(event, str):
        raise PayloadError("no 'event' string: is the webhook's body template empty?")
    object_type = doc.get("object_type")
    if not isinstance(object_type, str):
        model = doc.get("model")  # NetBox < 4.5: "cable", always a dcim model here
        if not isinstance(model, str):
            raise PayloadError("no 'object_type' (or 'model') string")
        object_type = model if "." in model else f"dcim.{model}"
    object_type = object_type.lower()
    data = doc.get("data")
    object_id = _int(data.get("id") if isinstance(data, dict) else None)
    cables = _cable_ids(object_type, object_id, data, doc.get("snapshots"))
    return NetBoxEvent(event, object_type, object_id, cables)


class Debouncer:
    """Coalesce a burst of pokes into one call of ``fire(count)`` (a watched command's
    notifications: each asks for a cycle).

    It fires ``quiet`` seconds after the last poke, so a single change is acted on within
    ``quiet`` and a burst of notifications is one call; but never later than ``max_delay``
    after the first poke of a burst, so a never-ending stream still gets cycles.
    Must be poked from the event loop's thread.
    """

    def __init__(
        self, fire: Callable[[int], None], *, quiet: float = 0.5, max_delay: float = 30.0
    ) -> None:
        self.fire = fire
        self.quiet = quiet
        self.max_delay = max(max_delay, quiet)
        self.fired = 0
        self._count = 0
        self._first = 0.0
        self._handle: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> bool:
        """A call is scheduled (a burst is under way)."""
        return self._handle is not None

    def poke(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._handle is None:
            self._first = now
        else:
            self._handle.cancel()
        self._count += 1
        due = min(now + self.quiet, self._first + self.max_delay)
        self._handle = loop.call_at(due, self._fire)

    def _fire(self) -> None:
        count, self._count, self._handle = self._count, 0, None
        self.fired += 1
        try:
            self.fire(count)
        except Exception as exc:  # the receiver must outlive its callback's bugs
            log.error("debounce_callback_failed", error=repr(exc))

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class _Refused(Exception):
    def __init__(self, status: int, result: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.result = result
        self.reason = reason


class NetBoxWebhook:
    """The ``POST /hooks/netbox`` handler: verify while reading, parse, then hand the event on."""

    def __init__(
        self,
        secret: str,
        on_event: Callable[[NetBoxEvent], str],
        *,
        relations: list[str],
        max_body: int = 1024 * 1024,
        read_timeout: float = 10.0,
        budget: BodyBudget | None = None,
        replay_window: float = 600.0,
        count: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secret = secret.encode("utf-8")
        self.on_event = on_event
        """Takes an accepted event, says what becomes of it (``applied``, ``full_read``,
        ``ignored``)."""
        self.relations = relations
        self.max_body = max_body
        self.read_timeout = read_timeout
        self.budget = budget if budget is not None else BodyBudget(max(2 * max_body, 4 << 20))
        self.replays = ReplayGuard(replay_window, clock=clock)
        self.refusals = RefusalLog()
        self.counts: Counter[str] = Counter()
        self._count = count

    def close(self) -> None:
        self.refusals.close()

    def _counted(self, result: str) -> None:
        self.counts[result] += 1
        if self._count is not None:
            self._count(result)

    def _refuse(self, request: web.Request, refused: _Refused) -> web.Response:
        self._counted(refused.result)
        self.refusals.refused(
            request.remote or "unknown", reason=refused.reason, status=refused.status
        )
        return web.json_response({"ok": False, "reason": refused.reason}, status=refused.status)

    async def _verified_body(self, request: web.Request) -> bytes:
        """The body, read chunk by chunk into the HMAC within the shared budget; _Refused
        when unsigned, too large, too slow, over the budget or wrongly signed."""
        given = request.headers.get(SIGNATURE_HEADER)
        if not given:
            raise _Refused(403, "unsigned", f"no {SIGNATURE_HEADER} header")
        too_large = _Refused(413, "too_large", f"body larger than {self.max_body} bytes")
        if request.content_length is not None and request.content_length > self.max_body:
            raise too_large
        mac = hmac.new(self._secret, digestmod=hashlib.sha512)
        body = bytearray()
        try:
            async with asyncio.timeout(self.read_timeout):
                async for chunk in request.content.iter_any():
                    if len(body) + len(chunk) > self.max_body:
                        raise too_large
                    if not self.budget.take(len(chunk)):
                        raise _Refused(503, "busy", "too many webhook bodies in flight; resend")
                    body += chunk
                    mac.update(chunk)
        except TimeoutError:  # a client that stalls mid-body holds nothing for long
            raise _Refused(
                408, "timeout", f"body not received within {self.read_timeout:g}s"
            ) from None
        finally:
            self.budget.give(len(body))
        if not _digest_ok(mac.hexdigest(), given):
            raise _Refused(403, "bad_signature", f"wrong {SIGNATURE_HEADER}")
        return bytes(body)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            body = await self._verified_body(request)
        except _Refused as refused:
            return self._refuse(request, refused)
        try:
            event = parse_event(body)
        except PayloadError as exc:
            self._counted("bad_payload")
            log.warning("webhook_bad_payload", peer=request.remote, reason=str(exc))
            return web.json_response({"ok": False, "reason": str(exc)}, status=400)
        if self.replays.seen_before(body):
            self._counted("duplicate")
            log.info("webhook_duplicate", object_type=event.object_type, object_id=event.object_id)
            return web.json_response({"ok": True, "action": "duplicate"}, status=200)
        if not event.object_event:
            self._counted("ignored")
            log.debug("webhook_ignored", object_type=event.object_type, event_kind=event.event)
            return web.json_response({"ok": True, "action": "ignored"}, status=202)
        log.info(
            "webhook_received",
            object_type=event.object_type,
            object_id=event.object_id,
            event_kind=event.event,
        )
        action = self.on_event(event)
        self._counted(action)
        return web.json_response({"ok": True, "action": action}, status=202)
