"""How a relation's failure is told: one line naming the cause, a traceback only for the
unexpected, and a refusal of the whole relation with the fix the CMDB's code points to."""

from __future__ import annotations

import traceback

import structlog

from syncd.cmdb.client import CmdbError
from syncd.config.settings import RelationSettings
from syncd.core.answer import Verdict
from syncd.engine.known import RelationRefused
from syncd.sources.base import SourceError
from syncd.state import StateError

log = structlog.get_logger("syncd")

EXPECTED = (SourceError, CmdbError, RelationRefused, StateError)
"""Failures a relation's cycle reports in one line; anything else also gets a traceback."""


def report_failure(rel: RelationSettings, exc: BaseException) -> str:
    """Log a relation's failure in one line; the report's error text."""
    if isinstance(exc, CmdbError) and exc.answer.verdict is Verdict.RELATION:
        answer = exc.answer
        what = str(exc).removesuffix(f" ({answer.hint})")
        exc = RelationRefused(
            what, answer.hint, permission=answer.permission, request_id=answer.request_id
        )
    if isinstance(exc, RelationRefused):
        log.error(
            "relation_refused",
            error=exc.error,
            fix=exc.fix,
            permission=exc.permission,
            request_id=exc.request_id,
        )
        return str(exc)
    if isinstance(exc, EXPECTED):
        log.error("relation_failed", error=str(exc))
        return str(exc)
    trace = "".join(traceback.format_exception(exc)).strip()
    log.error("relation_failed", error=repr(exc), traceback=trace)
    return repr(exc)
