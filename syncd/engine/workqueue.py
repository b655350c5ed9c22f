"""One work queue per daemon: every trigger asks for a relation's run through it.

Like controller-runtime's work queue: the interval, SIGHUP, a webhook or watched-file push,
drift repair and a relist all *add* a key (the relation's name); the queue

- runs a key at most once at a time (a request for a running key waits for that run to end
  and then runs once more: the running one may have read the source before the change);
- deduplicates: requests for a key that is waiting merge into one run, the flags included
  (one asking for a resync, or to lift the guards, makes the merged run do so);
- gives every request the future of the run that covers it, so a cycle can wait for its
  relations and the watch can act after its repair.

The API other parts use is small:

``queue.add(Work(relation, resync=...))``
    returns an :class:`asyncio.Future` of the handler's result for the run covering this
    request. Nothing else is needed to enqueue; the future may be ignored.
``queue.busy(relation)``
    whether the key is running or waiting to (the relist timer asks before adding).
``queue.cancel(relations)`` / ``await queue.aclose()``
    abandon runs (a shutdown past its deadline).

A richer request (a pushed change set, say) is a subclass of :class:`Work` that overrides
:meth:`Work.merged`: it combines two waiting requests of one key without losing either, or
answers None when they must run one after the other (the later one then waits behind the
earlier, in order); the handler receives the merged item. Runs start as soon as their key is free;
concurrency across keys is bounded by the number of relations, and requests to the CMDB by
the client's own limits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class Work:
    """A request to run one relation; ``resync``: list it from the CMDB first;
    ``lift_guards``: the operator's word that the sources' sizes now are meant."""

    key: str
    resync: bool = False
    lift_guards: bool = False

    def merged(self, later: Work) -> Work | None:
        """This waiting request combined with a ``later`` one of the same key; None when
        the later one must run after it instead (it is of another kind)."""
        if type(later) is not Work:
            return None
        return Work(self.key, self.resync or later.resync, self.lift_guards or later.lift_guards)


@dataclass
class _Waiting(Generic[R]):
    work: Work
    future: asyncio.Future[R]


class WorkQueue(Generic[R]):
    """Deduplicating, one-run-per-key dispatch to ``handler`` (see the module docstring)."""

    def __init__(self, handler: Callable[[Work], Coroutine[Any, Any, R]]) -> None:
        self._handler = handler
        self._running: dict[str, asyncio.Task[R]] = {}
        self._waiting: dict[str, list[_Waiting[R]]] = {}
        """Per key, the requests waiting for it to be free, in order (merged when they can)."""
        self.runs = 0
        """Runs started so far (tests and metrics read it)."""

    def add(self, work: Work) -> asyncio.Future[R]:
        """Ask for ``work``; the future of the run that covers it."""
        queue = self._waiting.setdefault(work.key, [])
        if queue and (merged := queue[-1].work.merged(work)) is not None:
            queue[-1].work = merged
            return queue[-1].future
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        queue.append(_Waiting(work, future))
        if work.key not in self._running:
            self._start(work.key)
        return future

    def busy(self, key: str) -> bool:
        """Whether ``key`` is running or waiting to run."""
        return key in self._running or key in self._waiting

    def cancel(self, keys: Iterable[str]) -> None:
        """Abandon ``keys``: the running runs are cancelled, the waiting ones dropped."""
        for key in keys:
            for waiting in self._waiting.pop(key, []):
                waiting.future.cancel()
            task = self._running.get(key)
            if task is not None:
                task.cancel()

    async def aclose(self) -> None:
        """Cancel everything and wait for the runs to end."""
        tasks = list(self._running.values())
        self.cancel(list(self._waiting) + list(self._running))
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, key: str) -> None:
        queue = self._waiting[key]
        waiting = queue.pop(0)
        if not queue:
            del self._waiting[key]
        self.runs += 1
        task = asyncio.get_running_loop().create_task(self._handler(waiting.work))
        self._running[key] = task
        task.add_done_callback(lambda t: self._finished(key, t, waiting.future))

    def _finished(self, key: str, task: asyncio.Task[R], future: asyncio.Future[R]) -> None:
        del self._running[key]
        if not future.done():
            if task.cancelled():
                future.cancel()
            elif (exc := task.exception()) is not None:
                future.set_exception(exc)
            else:
                future.set_result(task.result())
        # Nobody may await a request's future: its exception must not warn at exit.
        with contextlib.suppress(asyncio.CancelledError):
            future.exception()
        if key in self._waiting:
            self._start(key)
