"""Logging: structlog, one JSON object per line on stdout, or a console view on a terminal.

Every index of every request becomes one line, so the JSON path is short: one fused
processor (level, ISO-8601 UTC timestamp, key order, encoding) instead of four, a
shared logger instead of one built per call, and :func:`emit` for the per-index lines
of one answer: rendered together, written with one write and one flush. The bytes are
those structlog's stock chain (add_log_level, TimeStamper, JSONRenderer) would write.
Nothing here knows secrets; callers never pass them.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any, Literal, TextIO

import structlog
from structlog.contextvars import bound_contextvars, get_contextvars, merge_contextvars

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# structlog's add_log_level names, by logger method name.
_LEVEL_NAMES = {"warn": "warning", "exception": "error"}
_UTC = datetime.UTC
_now = datetime.datetime.now


def configure(
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
) -> None:
    """Configure structlog for the whole process; safe to call again (tests, reload)."""
    out = stream or sys.stdout
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    global _fast
    _fast = None
    processors: list[Any]
    if fmt == "json":
        processors = [merge_contextvars, _json_line]
    else:
        processors = [
            merge_contextvars,
            _escape_controls,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            _reorder,
            structlog.dev.ConsoleRenderer(colors=out.isatty()),
        ]
    factory = _LineLoggerFactory(out)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    if fmt == "json":
        _fast = _Fast(processors, factory, _LEVELS[level])


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class _Quoted:
    """A string the console shows as its repr: control characters escaped, once."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return repr(self.text)


def _escape_controls(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Console lines show source data: a newline or an escape sequence in it must not
    forge a line or repaint the terminal. (JSON escapes these by itself.)"""
    for key, value in event_dict.items():
        if isinstance(value, str) and _CONTROL.search(value):
            if key == "event":
                event_dict[key] = repr(value)[1:-1]
            else:
                event_dict[key] = _Quoted(value)
    return event_dict


def _reorder(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """timestamp, level and event first: the lines read left to right."""
    head = {
        "timestamp": event_dict.pop("timestamp", None),
        "level": event_dict.pop("level", None),
        "event": event_dict.pop("event", None),
    }
    head.update(event_dict)
    return head


def _fallback(obj: Any) -> Any:
    """What structlog's JSONRenderer does with a value json cannot encode."""
    structlog_repr = getattr(obj, "__structlog__", None)
    return structlog_repr() if structlog_repr is not None else repr(obj)


def _make_encode() -> Callable[[Any], str]:
    """``json.dumps(obj, default=_fallback)`` without building an encoder per call."""
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:  # pragma: no cover - CPython always has _json
        return json.JSONEncoder(default=_fallback).encode
    # The arguments JSONEncoder.iterencode passes for dumps' defaults (ensure_ascii,
    # ", "/": " separators, no sorting), minus the circular-reference check.
    encoder = c_make_encoder(
        None,
        _fallback,
        json.encoder.encode_basestring_ascii,
        None,
        ": ",
        ", ",
        False,
        False,
        True,
    )
    join = "".join

    def encode(obj: Any) -> str:
        return join(encoder(obj, 0))

    return encode


_encode = _make_encode()


def _json_line(_: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> str:
    """add_log_level + TimeStamper(iso, utc) + _reorder + JSONRenderer, in one step."""
    event_dict.pop("timestamp", None)
    event_dict.pop("level", None)
    line = {
        "timestamp": _now(_UTC).isoformat().replace("+00:00", "Z"),
        "level": _LEVEL_NAMES.get(method_name, method_name),
        "event": event_dict.pop("event", None),
    }
    line.update(event_dict)
    return _encode(line)


class _LineLogger:
    """Writes each rendered line and flushes it (a daemon's log must not lag)."""

    def __init__(self, stream: TextIO, lock: threading.Lock) -> None:
        self._write = stream.write
        self._flush = stream.flush
        self._lock = lock

    def msg(self, message: str) -> None:
        self.write(message + "\n")

    def write(self, text: str) -> None:
        """Write whole lines and flush them."""
        with self._lock:
            self._write(text)
            self._flush()

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class _LineLoggerFactory:
    """One shared logger per stream: no object built per log call."""

    def __init__(self, stream: TextIO) -> None:
        self.logger = _LineLogger(stream, threading.Lock())

    def __call__(self, *args: Any) -> _LineLogger:
        return self.logger


class _Fast:
    """The JSON configuration :func:`configure` installed, for :func:`emit` to recognise."""

    def __init__(self, processors: list[Any], factory: _LineLoggerFactory, level: int) -> None:
        self.processors = processors
        self.factory = factory
        self.level = level
        self.heads = {
            name: f'"level": "{_LEVEL_NAMES.get(name, name)}", "event": '
            for name in ("debug", "info", "warning", "error")
        }

    def active(self) -> bool:
        """Still in force: not replaced since (e.g. by structlog.testing.capture_logs)."""
        config = structlog.get_config()
        processors = config["processors"]  # capture_logs swaps the list's contents in place
        return (
            processors is self.processors
            and processors == [merge_contextvars, _json_line]
            and config["logger_factory"] is self.factory
        )


_fast: _Fast | None = None


def wants(level: str) -> bool:
    """Would a line at ``level`` be written? True unless the JSON config filters it out.

    Lets a caller skip building lines nobody reads; under any other configuration
    (tests capturing logs) it says True and structlog decides.
    """
    fast = _fast
    return fast is None or _LEVELS[level] >= fast.level or not fast.active()


def emit(event: str, rows: Iterable[tuple[str, dict[str, Any]]], common: Mapping[str, Any]) -> None:
    """Log ``event`` once per ``(level, fields)`` row, with ``common`` fields after each's own.

    The same lines as ``getattr(log, level)(event, **fields, **common)`` row by row, in
    order, the bound context (:func:`relation_context`) last. Under :func:`configure`'s JSON
    output they are rendered together with one timestamp (they describe one moment, e.g.
    one CMDB answer) and written at once. Fields must not repeat a common key, nor be
    ``timestamp``, ``level`` or ``event``.
    """
    fast = _fast
    if fast is None or not fast.active():
        logger = structlog.get_logger("syncd").bind()
        for level, fields in rows:
            getattr(logger, level)(event, **fields, **common)
        return
    context = get_contextvars()
    stamp = _now(_UTC).isoformat().replace("+00:00", "Z")
    prefix = f'{{"timestamp": "{stamp}", '
    # merge_contextvars adds bound keys after the call's own (setdefault: the call wins).
    after = {**common, **{k: v for k, v in context.items() if k not in common}}
    tail = _encode(after)
    tail = ", " + tail[1:] if len(tail) > 2 else "}"
    encoded_event = _encode(event)
    heads = fast.heads
    minimum = fast.level
    rendered = getattr(rows, "rendered", None)
    if rendered is not None and (not context or context.keys().isdisjoint(rows.keys)):  # type: ignore[attr-defined]
        # Rows kept as columns (syncd.core.outcome.CreatedLines) render themselves
        # between a head and a tail, one level for all.
        level = rows.level  # type: ignore[attr-defined]
        if _LEVELS[level] >= minimum:
            fast.factory.logger.write(rendered(f"{prefix}{heads[level]}{encoded_event}, ", tail))
        return
    out: list[str] = []
    for level, fields in rows:
        if _LEVELS[level] < minimum:
            continue
        if context and not context.keys().isdisjoint(fields):
            line = {"timestamp": stamp, "level": level, "event": event, **fields, **common}
            for key, value in context.items():
                line.setdefault(key, value)
            out.append(_encode(line) + "\n")
            continue
        own = _encode(fields)
        own = ", " + own[1:-1] if len(own) > 2 else ""
        out.append(f"{prefix}{heads[level]}{encoded_event}{own}{tail}\n")
    if out:
        fast.factory.logger.write("".join(out))


def log_pairs(rows: Iterable[tuple[str, dict[str, Any]]], **common: Any) -> None:
    """Every ``pair`` line goes through here (rows from :func:`syncd.core.outcome.pair_fields`)."""
    emit("pair", rows, common)


def relation_context(name: str, bk_obj_asst_id: str, cycle: int) -> Any:
    """Bind the relation's name, model association and cycle number to every line logged
    inside (a context manager; each relation runs in its own task, so bindings never mix)."""
    return bound_contextvars(relation=name, bk_obj_asst_id=bk_obj_asst_id, cycle=cycle)


def source_context(name: str) -> Any:
    """Bind a source's name (``source_name``) to every line logged while it is read: a
    relation with several sources tells their bad records and unresolved keys apart."""
    return bound_contextvars(source_name=name)


MAX_LOGGED_BAD = 1000
"""Bad records logged per read; the rest are counted in one line."""


class BadRecords:
    """The one reporter of bad records, for every source: one read's bad records, each of
    the first :data:`MAX_LOGGED_BAD` as one ``bad_record`` line (source, origin, reason;
    the relation and source name come from the bound context), then one line with the
    count of the others, so a garbage answer cannot flood the log."""

    def __init__(self, source: str, cap: int | None = None) -> None:
        self.source = source
        self.cap = MAX_LOGGED_BAD if cap is None else cap
        self.count = 0

    def add(self, origin: str, reason: str) -> None:
        self.count += 1
        if self.count <= self.cap:
            _log.warning("bad_record", source=self.source, origin=origin, reason=reason)

    def finish(self) -> None:
        """Say how many were not logged (call once the read is over)."""
        if self.count > self.cap:
            _log.warning(
                "bad_records_not_logged",
                source=self.source,
                count=self.count - self.cap,
                reason=f"only the first {self.cap} bad records of a read are logged",
            )


_log = structlog.get_logger("syncd")
