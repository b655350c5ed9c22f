"""Read a whole-request refusal of a batch create: which details it is about, if any. Pure.

On an auth-enabled bk-cmdb (the default) the API server parses every detail before
IAM and topo see the batch (``src/ac/parser/topolatest.go``), and the first detail it
cannot parse sinks the whole request with 1199045 and the parser's raw Go error text,
the same in every language:

- ``host 999 has no relations`` (``src/ac/parser/util.go``): a host, set, module or
  process id that does not exist. Custom objects are not looked up, so a missing
  switch still gets its per-index 1101073.
- ``invalid bk_inst_id value`` / ``invalid bk_asst_inst_id value``: an id <= 0 (or one
  too large for int64, which the parser reads as negative).
- ``model association [map[bk_obj_asst_id:X]] not found``: about the relation.

A refusal that names a detail fails the details naming it; one about the relation is
never bisected; a parameter refusal that names nothing (1199006 without a key,
1199045 with another text, 1199000, 1199999 from a panic) is bisected by
``syncd.core.isolate``. Anything else failed the request as a whole: try next cycle.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from syncd.core.answer import (
    CCERR_PARSE_AUTH_ATTRIBUTE,
    RELATION_CODES,
    Answer,
    Verdict,
    parse_failure_is_relation,
)
from syncd.core.details import IndexKind

INT64_MAX = 2**63 - 1

LOOKED_UP_OBJECTS = frozenset({"host", "set", "module", "process"})
"""Objects whose ids the auth parser looks up (``generateUpdateInstanceResource``)."""

DECODE_FAILED = 1199000
PARAMS_INVALID = 1199006
INTERNAL_ERROR = 1199999

_NAMED_INSTANCE = re.compile(
    r"\b(?:host|inst) (-?\d+) (has no relations|is in many dirs|has invalid biz id)\b"
)
_QUOTED_KEY = re.compile(r"^\s*'([^']+)'")


class Scope(StrEnum):
    """What a whole-request refusal is about."""

    DETAILS = "details"
    """It names details: fail those, send the rest again at once."""
    RELATION = "relation"
    """The relation (credentials, permission, model, parameters): never bisected."""
    UNNAMED = "unnamed"
    """A parameter refusal that names nothing syncd can match: bisect to find it."""
    REQUEST = "request"
    """The request failed as a whole (busy, timeout, unknown): every detail is retried."""


@dataclass(frozen=True, slots=True)
class Refusal:
    scope: Scope
    named: Mapping[int, IndexKind] = field(default_factory=dict)
    """For DETAILS: position in the refused request's details -> reason."""
    fix: str = ""
    """For RELATION: what the operator should change."""


def looked_up_sides(bk_obj_id: str, bk_asst_obj_id: str) -> tuple[bool, bool]:
    """Which sides' ids the auth parser looks up, so which a ``host N`` text can name.

    A custom mainline level is looked up too but cannot be told from its name; when
    neither side is a known looked-up object both are candidates and the id decides.
    """
    source, target = bk_obj_id in LOOKED_UP_OBJECTS, bk_asst_obj_id in LOOKED_UP_OBJECTS
    if not (source or target):
        return (True, True)
    return (source, target)


def _invalid(instance_id: int) -> bool:
    return instance_id <= 0 or instance_id > INT64_MAX


def read_refusal(
    answer: Answer,
    details: Sequence[tuple[int, int]],
    looked_up: tuple[bool, bool] = (True, True),
) -> Refusal:
    """Decide what a refused batch-create answer is about; ``details`` are what it was sent."""
    if answer.verdict is Verdict.OK:
        raise ValueError("read_refusal needs a refused answer")
    code, message = answer.code, answer.message
    if code == CCERR_PARSE_AUTH_ATTRIBUTE:
        return _read_parse_failure(answer, details, looked_up)
    if answer.verdict in (Verdict.RETRY, Verdict.AMBIGUOUS):
        return Refusal(Scope.REQUEST)
    if code == INTERNAL_ERROR:
        return Refusal(Scope.UNNAMED)
    if code in (PARAMS_INVALID, DECODE_FAILED):
        # "'bk_obj_id' data parameter verification does not pass" / "'bk_obj_id' 数据参数校验
        # 不通过" names a request key; "Deserializing JSON data failed" names nothing.
        if _QUOTED_KEY.match(message):
            return Refusal(Scope.RELATION, fix=answer.hint or RELATION_CODES[PARAMS_INVALID])
        return Refusal(Scope.UNNAMED)
    if answer.verdict is Verdict.RELATION:
        return Refusal(Scope.RELATION, fix=answer.hint)
    return Refusal(Scope.REQUEST)


def _read_parse_failure(
    answer: Answer, details: Sequence[tuple[int, int]], looked_up: tuple[bool, bool]
) -> Refusal:
    message = answer.message
    named: dict[int, IndexKind] = {}
    match = _NAMED_INSTANCE.search(message)
    if match is not None:
        instance_id = int(match[1])
        missing = match[2] == "has no relations"
        source_side, target_side = looked_up
        for index, (src, dst) in enumerate(details):
            if source_side and src == instance_id:
                named[index] = IndexKind.MISSING_SOURCE if missing else IndexKind.OTHER
            elif target_side and dst == instance_id:
                named[index] = IndexKind.MISSING_TARGET if missing else IndexKind.OTHER
    elif "invalid bk_inst_id value" in message:
        named = {i: IndexKind.INVALID_ID for i, (src, _) in enumerate(details) if _invalid(src)}
    elif "invalid bk_asst_inst_id value" in message:
        named = {i: IndexKind.INVALID_ID for i, (_, dst) in enumerate(details) if _invalid(dst)}
    elif parse_failure_is_relation(message):
        return Refusal(Scope.RELATION, fix=answer.hint)
    if named:
        return Refusal(Scope.DETAILS, named)
    return Refusal(Scope.UNNAMED)
