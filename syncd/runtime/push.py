"""Sources that push: NetBox webhooks and watched commands ask for a cycle now.

The daemon owns the loop and its wake-up; this module turns the push configuration
into what runs beside it (an ops route, supervised stream tasks), each ending in
``request_cycle(reason, relations)`` behind a debouncer, so a burst of changes is one
cycle, of the relations that source feeds only. That cycle still reads their sources
in full: a push is a signal, never the data.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Collection

import structlog

from syncd.config.settings import Settings
from syncd.runtime.ops import Route
from syncd.runtime.webhooks import Debouncer, NetBoxWebhook
from syncd.sources.lldpd import LldpdFormatError, watch_event
from syncd.sources.settings import CommandSourceSettings, NetBoxSourceSettings
from syncd.sources.stream import StreamSpec, StreamSupervisor

log = structlog.get_logger("syncd.push")

WEBHOOK_PATH = "/hooks/netbox"


class PushSources:
    """The webhook receiver and stream supervisors of one daemon."""

    def __init__(
        self, settings: Settings, request_cycle: Callable[[str, Collection[str]], None]
    ) -> None:
        self.request_cycle = request_cycle
        self.webhook: NetBoxWebhook | None = None
        self.streams: list[StreamSupervisor] = []
        self._debouncers: list[Debouncer] = []
        hook = settings.hooks.netbox
        if hook is not None:
            assert hook.secret is not None  # loaded by the validator
            names = [
                r.name
                for r in settings.relations
                if any(
                    isinstance(src, NetBoxSourceSettings) and hook.owns(src.url)
                    for src in r.source_settings()
                )
            ]
            if not names:
                log.warning("webhook_unused", reason="no netbox relation matches hooks.netbox")
            elif not settings.ops.enabled:
                log.warning("webhook_unused", reason="hooks.netbox needs ops.enabled = true")
            else:
                self.webhook = NetBoxWebhook(
                    hook.secret.get_secret_value(),
                    lambda reason: request_cycle(reason, names),
                    relations=names,
                    max_body=hook.max_body,
                    quiet=hook.debounce,
                    max_delay=hook.max_delay,
                )
        for rel in settings.relations:
            for src in rel.source_settings():
                if isinstance(src, CommandSourceSettings) and src.watch:
                    self.streams.append(self._stream(rel.name, src))

    def _stream(self, name: str, src: CommandSourceSettings) -> StreamSupervisor:
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
        if self.webhook is None:
            return []
        return [("POST", WEBHOOK_PATH, self.webhook.handle)]

    def start(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(s.run(stop)) for s in self.streams]

    def close(self) -> None:
        if self.webhook is not None:
            self.webhook.close()
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
