"""What keeps a webhook endpoint from being a way in: bounded memory, replays, quiet refusals.

- :class:`BodyBudget`: bytes of request bodies held at once by every webhook request
  together. A body is read only once its request carries a signature header, chunk by
  chunk into the HMAC and the buffer, each chunk taken from the budget first; when the
  budget is spent the request is refused (503), so 300 connections each sending most
  of a 1 MiB body hold at most the budget, not 300 MiB.
- :class:`ReplayGuard`: a signed body seen within the window is a replay (NetBox puts a
  timestamp with microseconds in every delivery, so two real deliveries never match).
- :class:`RefusalLog`: refused requests are logged at least once a minute per sender,
  with the count since that sender's last line, however few or many there are.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger("syncd.webhooks")


class BodyBudget:
    """A shared count of body bytes held; ``take`` fails instead of going over."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0

    def take(self, n: int) -> bool:
        if self.held + n > self.limit:
            return False
        self.held += n
        self.peak = max(self.peak, self.held)
        return True

    def give(self, n: int) -> None:
        self.held = max(0, self.held - n)


class ReplayGuard:
    """Digests of accepted bodies for ``window`` seconds, at most ``max_entries``."""

    def __init__(
        self,
        window: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.max_entries = max_entries
        self.clock = clock
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def seen_before(self, body: bytes) -> bool:
        """Whether ``body`` was accepted within the window; remembers it if not."""
        if self.window <= 0:
            return False
        now = self.clock()
        while self._seen:
            oldest, when = next(iter(self._seen.items()))
            if now - when < self.window and len(self._seen) < self.max_entries:
                break
            del self._seen[oldest]
        digest = hashlib.sha256(body).digest()
        if digest in self._seen:
            return True
        self._seen[digest] = now
        return False


class RefusalLog:
    """``webhook_refused`` lines: a sender's first refusal at once, then one line a minute
    with the count since the last line, for as long as refusals keep coming.

    Remembers a bounded number of senders; past that, the quietest are folded into one
    ``others`` entry so a flood of addresses cannot grow it.
    """

    def __init__(self, window: float = 60.0, max_peers: int = 1024) -> None:
        self.window = window
        self.max_peers = max_peers
        self._last: dict[str, float] = {}
        self._pending: dict[str, tuple[int, dict[str, Any]]] = {}
        self._flush: asyncio.TimerHandle | None = None

    def refused(self, peer: str, **fields: Any) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if peer not in self._last and len(self._last) >= self.max_peers:
            peer = "others"
        last = self._last.get(peer)
        if last is None or now - last >= self.window:
            count = self._pending.pop(peer, (0, {}))[0] + 1
            self._line(peer, count, fields)
            self._last[peer] = now
            return
        count, _ = self._pending.get(peer, (0, {}))
        self._pending[peer] = (count + 1, fields)
        if self._flush is None:
            self._flush = loop.call_later(self.window - (now - last), self.flush)

    def flush(self) -> None:
        """Write one line per sender with refusals not logged yet; forget quiet senders."""
        self._flush = None
        now = asyncio.get_running_loop().time()
        for peer, (count, fields) in list(self._pending.items()):
            if now - self._last.get(peer, 0.0) >= self.window - 0.001:
                del self._pending[peer]
                self._line(peer, count, fields)
                self._last[peer] = now
        for peer in [p for p, t in self._last.items() if now - t >= 2 * self.window]:
            del self._last[peer]
        if self._pending:
            soonest = min(self._last.get(p, now) for p in self._pending) + self.window
            loop = asyncio.get_running_loop()
            self._flush = loop.call_later(max(0.01, soonest - now), self.flush)

    def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None

    @staticmethod
    def _line(peer: str, count: int, fields: dict[str, Any]) -> None:
        log.warning(
            "webhook_refused",
            peer=peer,
            refused=count,
            note="refused requests from this sender since its last line (one a minute)",
            **fields,
        )
