"""Reading a child process's stderr without letting it block: shared by the command
source (one run per cycle) and the watch stream supervisor (one long run)."""

from __future__ import annotations

import asyncio

EXIT_POLL = 0.05


async def read_tail(stream: asyncio.StreamReader, keep: int) -> bytes:
    """Drain a stream (so the child never blocks on it), keeping its last ``keep`` bytes."""
    tail = b""
    while chunk := await stream.read(65536):
        tail = (tail + chunk)[-keep:]
    return tail


async def finish(task: asyncio.Future[bytes]) -> bytes:
    """The drained tail, waiting at most a second for the pipe to close (a grandchild may
    still hold it); an unfinished read is cancelled and reads as nothing."""
    try:
        async with asyncio.timeout(1.0):
            return await task
    except (TimeoutError, asyncio.CancelledError):
        task.cancel()
        return b""


async def exited(proc: asyncio.subprocess.Process) -> int:
    """The exit status as soon as the process itself exits.

    ``Process.wait()`` also waits for the pipes to close (Python 3.11), and a grandchild
    may hold them open for ever; ``returncode`` is set at the exit itself."""
    while proc.returncode is None:  # noqa: ASYNC110 (no event is set at the exit itself)
        await asyncio.sleep(EXIT_POLL)
    return proc.returncode
