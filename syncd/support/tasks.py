"""Structured concurrency helpers: run coroutines together, report one plain error.

``asyncio.TaskGroup`` cancels the siblings of a failed task and waits for them, so no
task outlives its caller; but it wraps errors in an ExceptionGroup, which the stages'
callers (catching SourceError, CmdbError, ...) should not have to unwrap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def first_error(exc: BaseException) -> BaseException:
    """The first leaf of a (nested) exception group, or the exception itself."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def together(*coros: Coroutine[Any, Any, Any]) -> list[Any]:
    """Run the coroutines concurrently; their results in order, or the first error."""
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(c) for c in coros]
    except BaseExceptionGroup as group:
        raise first_error(group) from None
    return [t.result() for t in tasks]


async def nothing() -> None:
    """A placeholder for a step that has nothing to do this time."""
