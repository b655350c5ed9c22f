"""NetBox webhooks: ``POST /hooks/netbox`` turns a NetBox change into a cycle now.

NetBox (4.x, ``extras/webhooks.py``) sends one POST per changed object, from its RQ
worker, with the body ``json.dumps(context)`` of ``{event, timestamp, object_type,
username, request_id, data, request, snapshots}`` and, when the webhook has a secret,
``X-Hook-Signature``: the hex HMAC-SHA512 of the raw body keyed with that secret.

The body says what changed, but a cycle reads the whole source again anyway, so a
payload is only a signal: it is authenticated, checked to be about a model a NetBox
relation reads (cable, interface, device), and then pokes a debouncer, so the 500
POSTs of a bulk edit start one cycle. Order of checks: size, signature, JSON; nothing
from an unauthenticated body is parsed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

log = structlog.get_logger("syncd.webhooks")

SIGNATURE_HEADER = "X-Hook-Signature"
RELEVANT_MODELS = frozenset({"dcim.cable", "dcim.interface", "dcim.device"})
"""What a NetBox relation reads: cables, their interface ends, the devices' keys."""
OBJECT_EVENTS = frozenset({"created", "updated", "deleted"})
"""NetBox's WEBHOOK_EVENT_TYPES for object changes (the others are job events)."""


def sign(body: bytes, secret: str) -> str:
    """What NetBox puts in X-Hook-Signature (``extras.webhooks.generate_signature``)."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha512).hexdigest()


def signature_ok(body: bytes, given: str | None, secret: str) -> bool:
    """Constant-time check of a request's signature header against the body."""
    if not given:
        return False
    expected = sign(body, secret).encode("ascii")
    return hmac.compare_digest(expected, given.strip().lower().encode("utf-8", "replace"))


class PayloadError(ValueError):
    """A signed body that is not a NetBox webhook payload."""


@dataclass(frozen=True, slots=True)
class NetBoxEvent:
    """The part of a webhook payload syncd looks at."""

    event: str
    object_type: str
    """``app_label.model`` (``dcim.cable``); NetBox before 4.5 sent only ``model``."""
    object_id: int | None

    @property
    def relevant(self) -> bool:
        return self.event in OBJECT_EVENTS and self.object_type in RELEVANT_MODELS


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
    data = doc.get("data")
    raw_id = data.get("id") if isinstance(data, dict) else None
    object_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
    return NetBoxEvent(event, object_type.lower(), object_id)


class PeerLogLimiter:
    """Allow one log line per peer per ``window`` seconds; remembers a bounded set of peers."""

    def __init__(self, window: float = 60.0, max_peers: int = 4096) -> None:
        self.window = window
        self.max_peers = max_peers
        self._last: dict[str, float] = {}
        self.suppressed: dict[str, int] = {}

    def allow(self, peer: str, now: float) -> bool:
        last = self._last.get(peer)
        if last is not None and now - last < self.window:
            self.suppressed[peer] = self.suppressed.get(peer, 0) + 1
            return False
        if last is None and len(self._last) >= self.max_peers:
            self._forget(now)
        self._last[peer] = now
        return True

    def take_suppressed(self, peer: str) -> int:
        return self.suppressed.pop(peer, 0)

    def _forget(self, now: float) -> None:
        for peer, last in list(self._last.items()):
            if now - last >= self.window:
                del self._last[peer]
                self.suppressed.pop(peer, None)
        while len(self._last) >= self.max_peers:  # all recent: drop the oldest
            oldest = min(self._last, key=self._last.__getitem__)
            del self._last[oldest]
            self.suppressed.pop(oldest, None)


class Debouncer:
    """Coalesce a burst of pokes into one call of ``fire(count)``.

    It fires ``quiet`` seconds after the last poke, so a single change is acted on within
    ``quiet`` and the 500 POSTs of a bulk edit (NetBox's worker sends them one after the
    other, well under ``quiet`` apart) are one call; but never later than ``max_delay``
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


@dataclass
class WebhookCounts:
    accepted: int = 0
    ignored: int = 0
    refused: int = 0
    bad: int = 0


class NetBoxWebhook:
    """The ``POST /hooks/netbox`` handler: verify, parse, then poke the debouncer."""

    def __init__(
        self,
        secret: str,
        on_change: Callable[[str], None],
        *,
        relations: list[str],
        max_body: int = 1024 * 1024,
        quiet: float = 0.5,
        max_delay: float = 30.0,
        read_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secret = secret
        self.on_change = on_change
        self.relations = relations
        self.max_body = max_body
        self.read_timeout = read_timeout
        self.clock = clock
        self.counts = WebhookCounts()
        self.refusals = PeerLogLimiter()
        self.debouncer = Debouncer(self._fire, quiet=quiet, max_delay=max_delay)

    def _fire(self, count: int) -> None:
        self.on_change(f"netbox webhook: {count} change(s) for {', '.join(self.relations)}")

    def close(self) -> None:
        self.debouncer.close()

    def _refuse(self, request: web.Request, status: int, reason: str) -> web.Response:
        self.counts.refused += 1
        peer = request.remote or "unknown"
        if self.refusals.allow(peer, self.clock()):
            log.warning(
                "webhook_refused",
                peer=peer,
                reason=reason,
                status=status,
                suppressed_before=self.refusals.take_suppressed(peer),
                note="logged once per peer per minute",
            )
        return web.json_response({"ok": False, "reason": reason}, status=status)

    async def _body(self, request: web.Request) -> bytes | None:
        """The raw body, or None once it passes ``max_body`` bytes."""
        if request.content_length is not None and request.content_length > self.max_body:
            return None
        body = bytearray()
        async for chunk in request.content.iter_any():
            body += chunk
            if len(body) > self.max_body:
                return None
        return bytes(body)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(self.read_timeout):
                body = await self._body(request)
        except TimeoutError:  # a client that stalls mid-body holds nothing for long
            return self._refuse(request, 408, f"body not received within {self.read_timeout:g}s")
        if body is None:
            return self._refuse(request, 413, f"body larger than {self.max_body} bytes")
        given = request.headers.get(SIGNATURE_HEADER)
        if not given:
            return self._refuse(request, 403, f"no {SIGNATURE_HEADER} header")
        if not signature_ok(body, given, self._secret):
            return self._refuse(request, 403, f"wrong {SIGNATURE_HEADER}")
        try:
            event = parse_event(body)
        except PayloadError as exc:
            self.counts.bad += 1
            log.warning("webhook_bad_payload", peer=request.remote, reason=str(exc))
            return web.json_response({"ok": False, "reason": str(exc)}, status=400)
        if not event.relevant:
            self.counts.ignored += 1
            log.debug("webhook_ignored", object_type=event.object_type, event_kind=event.event)
            return web.json_response({"ok": True, "action": "ignored"}, status=202)
        self.counts.accepted += 1
        log.info(
            "webhook_received",
            object_type=event.object_type,
            object_id=event.object_id,
            event_kind=event.event,
        )
        self.debouncer.poke()
        return web.json_response({"ok": True, "action": "cycle"}, status=202)
