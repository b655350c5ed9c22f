"""A daemon's background tasks: heartbeat, systemd watchdog, watched files and push sources.

Its own module because these only wake the daemon (a heartbeat for /healthz, a cycle
request for a changed file or a push): they run beside the loop for the daemon's life
and are cancelled and reaped together when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Collection

from syncd.config.settings import Settings
from syncd.runtime.health import Health
from syncd.runtime.notify import SystemdNotifier
from syncd.runtime.push import PushSources
from syncd.sources.watch import watch_file
from syncd.support.sections import FileSourceSettings


@contextlib.asynccontextmanager
async def background_tasks(
    settings: Settings,
    health: Health,
    notifier: SystemdNotifier,
    push: PushSources,
    request_cycle: Callable[[str, Collection[str] | None], None],
    *,
    once: bool,
) -> AsyncIterator[None]:
    """Heartbeat, watchdog, file watchers and push sources (NetBox webhooks, watched
    commands: see syncd/runtime/push.py): running inside, cancelled and reaped after."""
    helpers_stop = asyncio.Event()
    tasks = [asyncio.create_task(health.heartbeat_loop(helpers_stop))]
    if notifier.watchdog_interval() is not None:
        tasks.append(asyncio.create_task(notifier.watchdog_loop(helpers_stop)))
    if not once:
        for rel in settings.relations:
            for src in rel.source_settings():
                if not (isinstance(src, FileSourceSettings) and src.watch):
                    continue
                why = f"{rel.name}: {src.path} changed"
                wake = functools.partial(request_cycle, why, [rel.name])
                watcher = watch_file(src.path, wake, src.watch_interval, helpers_stop)
                tasks.append(asyncio.create_task(watcher))
        tasks.extend(push.start(helpers_stop))
    try:
        yield
    finally:
        helpers_stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        push.close()
