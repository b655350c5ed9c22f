"""Sources that push: NetBox webhooks apply what they name; watched commands ask for a cycle.

The daemon owns the loop; this module turns the push configuration into what runs beside
it. A NetBox webhook's delivery becomes a :class:`~syncd.engine.change.Change` handed to a
:class:`~syncd.runtime.changefeed.ChangeFeed`, which applies it through ``apply_change``
(the engine's incremental entry point) and falls back to ``request_cycle`` (a full read of
the relations that NetBox feeds) whenever that cannot be sure. The endpoint is served on
the ops server, or on a listener of its own (``hooks.listen``). A watched command's
notification still asks for a cycle of its relation, behind a debouncer.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

import structlog

from syncd.config.settings import Settings
from syncd.engine.report import CycleReport
from syncd.runtime.errors import OpsUnavailable
from syncd.sources.lldpd import LldpdFormatError, watch_event
from syncd.sources.settings import CommandSourceSettings, NetBoxSourceSettings

if TYPE_CHECKING:
    # What only a configured push needs (aiohttp's server side, the webhook, the stream
    # supervisor) is imported when one is: a daemon without pushes starts without it.
    from syncd.runtime.changefeed import ApplyChange, ChangeFeed
    from syncd.runtime.listener import Listener
    from syncd.runtime.ops import Route
    from syncd.runtime.webhooks import Debouncer, NetBoxEvent, NetBoxWebhook
    from syncd.sources.stream import StreamSupervisor

log = structlog.get_logger("syncd.push")

WEBHOOK_PATH = "/hooks/netbox"
READ_BUFSIZE = 16 * 1024
"""Bytes aiohttp buffers per connection before it stops reading a socket (its default is
64 KiB, twice that before pausing): what an idle sender can make the listener hold."""


async def _no_apply(_name: str, _change: object) -> bool:
    return False


class PushSources:
    """The webhook receiver, its change feed and the stream supervisors of one daemon."""

    def __init__(
        self,
        settings: Settings,
        request_cycle: Callable[[str, Collection[str]], None],
        apply_change: ApplyChange = _no_apply,
        *,
        count_webhook: Callable[[str], None] | None = None,
        count_http: Callable[[str, str], None] | None = None,
    ) -> None:
        self.request_cycle = request_cycle
        self.webhook: NetBoxWebhook | None = None
        self.feed: ChangeFeed | None = None
        self.listen = settings.hooks.address()
        self.streams: list[StreamSupervisor] = []
        self._debouncers: list[Debouncer] = []
        self._listener: Listener | None = None
        self._count_http = count_http
        self.url: str | None = None
        hook = settings.hooks.netbox
        if hook is not None:
            from syncd.runtime.changefeed import ChangeFeed
            from syncd.runtime.webhooks import NetBoxWebhook

            assert hook.secret is not None  # loaded by the validator
            names = [
                r.name
                for r in settings.relations
                if any(
                    isinstance(src, NetBoxSourceSettings) and hook.owns(src.url)
                    for src in r.source_settings()
                )
            ]
            # check-config refuses a hook that matches nothing or has no listener.
            self.feed = ChangeFeed(
                names,
                apply_change,
                request_cycle,
                gather=hook.gather,
                group_max=hook.group_max,
                retry_base=hook.retry_base,
                retry_cap=hook.retry_cap,
            )
            self.webhook = NetBoxWebhook(
                hook.secret.get_secret_value(),
                self._on_event,
                relations=names,
                max_body=hook.max_body,
                replay_window=hook.replay_window,
                count=count_webhook,
            )
        for rel in settings.relations:
            for src in rel.source_settings():
                if isinstance(src, CommandSourceSettings) and src.watch:
                    self.streams.append(self._stream(rel.name, src))

    def _on_event(self, event: NetBoxEvent) -> str:
        from syncd.runtime.webhooks import event_change

        assert self.feed is not None
        reason = f"{event.object_type} {event.event}"
        return self.feed.push(event_change(event), reason)

    def cycle_finished(self, report: CycleReport, started: float) -> None:
        """Tell the feed which relations a cycle (begun at ``started``, monotonic) read."""
        if self.feed is not None:
            self.feed.cycle_finished(
                {r.relation: r.error is None for r in report.relations}, started
            )

    def not_ready(self) -> str | None:
        return self.feed.not_ready() if self.feed is not None else None

    def _stream(self, name: str, src: CommandSourceSettings) -> StreamSupervisor:
        from syncd.runtime.webhooks import Debouncer
        from syncd.sources.stream import StreamSpec, StreamSupervisor

        argv = src.watch_command()
        assert argv is not None  # checked by WatchSettings
        program = os.path.basename(argv[0])
        secrets = [v.get_secret_value() for v in src.env.values()]
        env = dict(os.environ) if src.inherit_env else {}
        env.update(dict(zip(src.env, secrets, strict=True)))
        debouncer = Debouncer(
            lambda n: self.request_cycle(f"{name}: {n} change(s) from {program}", [name]),
        )
        self._debouncers.append(debouncer)
        lldpd = src.format == "lldpd"

        def on_notification(text: str) -> None:
            if lldpd:
                _log_lldpd_event(name, text)
            debouncer.poke()

        spec = StreamSpec(
            argv=argv,
            env=env,
            cwd=src.cwd,
            framing=src.watch_framing(),
            secrets=secrets,
            backoff_base=src.watch_backoff,
            backoff_cap=src.watch_backoff_cap,
        )
        return StreamSupervisor(spec, name=name, on_notification=on_notification)

    def routes(self) -> list[Route]:
        """The ops server's extra routes: the webhook, unless it has a listener of its own."""
        if self.webhook is None or self.listen is not None:
            return []
        return [("POST", WEBHOOK_PATH, self.webhook.handle)]

    async def start_listener(self) -> str | None:
        """``hooks.listen``: the webhook alone on its own address; its URL (None: not set)."""
        if self.webhook is None or self.listen is None:
            return None
        from aiohttp import web

        from syncd.runtime.listener import Listener, ListenerLimits
        from syncd.runtime.ops import LINGER

        app = web.Application()
        app.router.add_post(WEBHOOK_PATH, self.webhook.handle)
        # The ops server's bounds (syncd.runtime.listener): capped connections, read
        # deadlines, small read buffers; a refused body is dropped for LINGER s at most.
        host, port = self.listen
        limits = ListenerLimits(read_bufsize=READ_BUFSIZE, linger=LINGER)
        listener = Listener(
            app, name="hooks", host=host, port=port, limits=limits, count=self._count_http
        )
        try:
            bound_host, bound_port = await listener.start()
        except OSError as exc:
            raise OpsUnavailable(
                f"hooks.listen cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
        self._listener = listener
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}"
        log.info("hooks_listening", url=self.url + WEBHOOK_PATH)
        return self.url

    async def stop_listener(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.stop()

    def start(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        tasks = [asyncio.create_task(s.run(stop)) for s in self.streams]
        if self.feed is not None:
            tasks.append(asyncio.create_task(self.feed.run(stop)))
        return tasks

    def close(self) -> None:
        if self.webhook is not None:
            self.webhook.close()
        if self.feed is not None:
            self.feed.close()
        for debouncer in self._debouncers:
            debouncer.close()


def _log_lldpd_event(relation: str, text: str) -> None:
    """One line per lldpd change: its kind and local ports (never the neighbour's data)."""
    try:
        kind, ports = watch_event(json.loads(text))
    except (ValueError, LldpdFormatError, RecursionError):
        log.info("stream_notification", relation=relation, kind="unparsed")
        return
    log.info("stream_notification", relation=relation, kind=kind, ports=ports)
