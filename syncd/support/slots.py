"""A concurrency slot that its task lends out while it only waits (a retry's backoff).

The engine counts its requests in flight with a semaphore of its own (so that a stop
leaves queued batches unsent, not queued inside the client). A batch whose request is
backing off sends nothing meanwhile: through :func:`away` the client gives the batch's
slot back for the pause and takes one again before the retry, so the next batch goes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar


class Slot:
    """One acquired place in a semaphore, held by one task (and the tasks it starts)."""

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        """``semaphore`` must already be acquired for this slot."""
        self._semaphore = semaphore
        self._held = True
        self._away = 0

    def release(self) -> None:
        """Give the place back for good (idempotent)."""
        if self._held:
            self._held = False
            self._semaphore.release()
        self._away = -1  # never taken again

    @contextmanager
    def bound(self) -> Iterator[Slot]:
        """The slot of the code inside (and of the tasks it starts)."""
        token = _current.set(self)
        try:
            yield self
        finally:
            _current.reset(token)


_current: ContextVar[Slot | None] = ContextVar("syncd_slot", default=None)


@asynccontextmanager
async def away() -> AsyncIterator[None]:
    """Around a wait that needs no slot: the current task's slot, if any, is lent out."""
    slot = _current.get()
    if slot is None or slot._away < 0:
        yield
        return
    slot._away += 1
    if slot._away == 1 and slot._held:
        slot._held = False
        slot._semaphore.release()
    try:
        yield
    finally:
        slot._away -= 1
        if slot._away == 0:
            await slot._semaphore.acquire()
            slot._held = True
