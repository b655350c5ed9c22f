"""The log line format itself: the fast JSON path writes what structlog's stock chain writes."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from syncd.core.outcome import pair_fields
from syncd.support import log

STAMP = re.compile(r'"timestamp": "(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)"')


class Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


def write_events(logger: Any) -> None:
    """The same events, written through whatever configuration is in force."""
    with log.relation_context("switch-host", "bk_switch_connect_host", 7):
        logger.info("relation", desired=3, error=None, ratio=0.5, keys=["a", "b"])
        logger.warning("bad_record", source="file:t.csv", origin="t.csv:2", reason="é 中 \x00")
        logger.error("relation_failed", error="x", obj=Opaque(), nested={"k": [1, None]})
        logger.debug("below the level", x=1)
        rows = [
            ("info", pair_fields("created", "create", 0, 1, 1001, association_id=9)),
            ("warning", pair_fields("failed", "create", 1, 2, 1002, error="e", reason="other")),
            ("debug", pair_fields("exists", "create", 2, 3, 1003)),
            ("info", {"relation": "override", "outcome": "exists"}),
        ]
        log.log_pairs(rows, batch=3, request_id="r-1")
        log.BadRecords("file:t.csv", cap=1).add("t.csv:3", "bad")
    logger.info("cycle", cycle=7, stopped=False)


def stock(stream: io.StringIO) -> None:
    """structlog's own chain, the reference for the bytes."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            log._reorder,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(20),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


@pytest.fixture(autouse=True)
def restore() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    log._fast = None


def test_fast_renderer_writes_the_stock_chains_bytes() -> None:
    fast, reference = io.StringIO(), io.StringIO()
    log.configure("info", "json", stream=fast)
    write_events(structlog.get_logger("syncd"))
    stock(reference)
    write_events(structlog.get_logger("syncd"))
    got, want = fast.getvalue(), reference.getvalue()
    assert len(STAMP.findall(got)) == len(got.splitlines()) == 8
    assert STAMP.sub("T", got) == STAMP.sub("T", want)
    lines = [json.loads(line) for line in got.splitlines()]
    assert [line["event"] for line in lines][:3] == ["relation", "bad_record", "relation_failed"]
    bound = [line for line in lines if line["event"] != "cycle"]
    assert all(line["cycle"] == 7 for line in bound)
    assert all(list(line)[:3] == ["timestamp", "level", "event"] for line in bound)
    bound_keys = {"relation", "bk_obj_asst_id", "cycle"}
    assert all(set(list(line)[-3:]) == bound_keys for line in bound[:3])
    assert lines[5]["relation"] == "override"
    assert lines[-1]["event"] == "cycle" and "relation" not in lines[-1]


def test_every_pair_line_says_its_operation() -> None:
    out = io.StringIO()
    log.configure("info", "json", stream=out)
    with log.relation_context("r", "a", 1):
        log.log_pairs([("info", pair_fields("deleted", "delete", 0, 1, 2))], batch=1)
    line = json.loads(out.getvalue())
    assert line["operation"] == "delete" and line["relation"] == "r" and line["batch"] == 1


def test_console_escapes_control_characters_from_source_data() -> None:
    out = io.StringIO()
    log.configure("info", "console", stream=out)
    structlog.get_logger("syncd").warning(
        "bad_record\x1b[2J",
        origin="t.csv:1",
        reason="forged\nline \x1b[31mred\x1b[0m",
        key="\x1b]0;title\x07",
    )
    text = out.getvalue()
    assert text.count("\n") == 1 and "\x1b" not in text
    assert "forged\\nline" in text and "\\x1b[31m" in text and "\\x1b[2J" in text
    assert "\\\\" not in text  # escaped once, not twice
