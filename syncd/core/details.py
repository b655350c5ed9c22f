"""What each detail of a batch create came to: the per-index ``data`` of an answer. Pure.

Its own module because a batch's per-index results (created with an id, exists, a
missing instance, a mapping conflict) are read by the outcome and the isolation
search, while the client needs only the envelope (:mod:`syncd.core.answer`).

bk-cmdb returns only the message text per index, not the code, and the text's
language depends on the gateway and headers. So per-index answers are told
apart by text, in both languages, plus the database's raw duplicate-key text
that a lost race produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class IndexKind(StrEnum):
    """What one detail of a batch came to."""

    CREATED = "created"
    EXISTS = "exists"
    MISSING_SOURCE = "missing_source"
    MISSING_TARGET = "missing_target"
    CONFLICT_1_1 = "conflict_1_1"
    CONFLICT_1_N = "conflict_1_n"
    INVALID_ID = "invalid_id"
    """An instance id the CMDB can never accept (<= 0); named by a whole-request refusal."""
    OTHER = "other"

    @property
    def is_known(self) -> bool:
        """The pair is in the CMDB afterwards."""
        return self in (IndexKind.CREATED, IndexKind.EXISTS)

    @property
    def is_conflict(self) -> bool:
        """A mapping conflict: the source data contradicts the model, resending won't help."""
        return self in (IndexKind.CONFLICT_1_1, IndexKind.CONFLICT_1_N)

    @property
    def held_until_resync(self) -> bool:
        """The source data is wrong (a conflict, an impossible id): resending won't help
        until the source changes, so don't spend rate budget on it every cycle."""
        return self.is_conflict or self is IndexKind.INVALID_ID

    @property
    def is_missing(self) -> bool:
        """An instance is not (yet) in the CMDB; it may appear later."""
        return self in (IndexKind.MISSING_SOURCE, IndexKind.MISSING_TARGET)


# Order matters: "被关联实例不存在" contains "关联实例不存在".
_MESSAGE_RULES: tuple[tuple[tuple[str, ...], IndexKind], ...] = (
    (("E11000", "duplicate key"), IndexKind.EXISTS),
    (("already exist",), IndexKind.EXISTS),
    (("被关联实例不存在", "inst to asst"), IndexKind.MISSING_TARGET),
    (("关联实例不存在", "association inst is not exist"), IndexKind.MISSING_SOURCE),
    (("1:1",), IndexKind.CONFLICT_1_1),
    (("1:n",), IndexKind.CONFLICT_1_N),
)


def classify_index_message(message: str) -> IndexKind:
    """Map one ``error_msg`` text to its kind, in Chinese or English."""
    if "重复" in message and "关联" in message:
        return IndexKind.EXISTS
    lowered = message.lower()
    for needles, kind in _MESSAGE_RULES:
        for needle in needles:
            if needle in message or needle.lower() in lowered:
                return kind
    return IndexKind.OTHER


@dataclass(frozen=True, slots=True)
class IndexResult:
    index: int
    kind: IndexKind
    association_id: int | None = None
    message: str = ""


class BadAnswer(ValueError):
    """The CMDB's ``data`` does not account for the batch it was sent."""


def split_batch_data(data: Any, size: int) -> list[IndexResult]:
    """Turn ``data.success_created``/``data.error_msg`` into one result per index.

    Every index 0..size-1 gets exactly one result. An index the CMDB did not
    mention, or mentioned in both maps, or a malformed map, is reported as
    ``OTHER`` with a message saying so: the pair is retried, never assumed.
    """
    if not isinstance(data, dict):
        raise BadAnswer(f"data is {type(data).__name__}, expected an object")
    created = data.get("success_created") or {}
    errors = data.get("error_msg") or {}
    if not isinstance(created, dict) or not isinstance(errors, dict):
        raise BadAnswer("success_created/error_msg are not objects")
    ids = _all_created(created, errors, size)
    if ids is not None:
        created_kind = IndexKind.CREATED
        return [IndexResult(i, created_kind, v) for i, v in enumerate(ids)]
    results: list[IndexResult] = []
    for index in range(size):
        key = str(index)
        in_created = key in created
        in_errors = key in errors
        if in_created and not in_errors:
            raw_id = created[key]
            if isinstance(raw_id, bool) or not isinstance(raw_id, int | str):
                results.append(_unaccounted(index, f"association id {raw_id!r} is not an int"))
                continue
            try:
                assoc_id = int(raw_id)
            except ValueError:
                results.append(_unaccounted(index, f"association id {raw_id!r} is not an int"))
                continue
            results.append(IndexResult(index, IndexKind.CREATED, assoc_id))
        elif in_errors and not in_created:
            message = str(errors[key])
            results.append(IndexResult(index, classify_index_message(message), None, message))
        elif in_created and in_errors:
            results.append(_unaccounted(index, "index is both in success_created and error_msg"))
        else:
            results.append(_unaccounted(index, "index missing from the CMDB's answer"))
    _check_ids([r.association_id for r in results if r.association_id is not None])
    return results


_INDEX_KEYS: list[list[str]] = [[]]
"""``[str(i) for i in range(n)]`` for every n asked for so far: a batch's keys in order."""


def all_created(data: Any, size: int) -> list[int] | None:
    """The association ids of an answer that created every detail, in index order (the
    common answer: checked at C speed, no per-detail object); None for any other answer
    (:func:`split_batch_data` reads those). Raises BadAnswer for ids no answer may hold."""
    if type(data) is not dict:
        return None
    created = data.get("success_created") or {}
    errors = data.get("error_msg") or {}
    if type(created) is not dict or type(errors) is not dict:
        return None
    return _all_created(created, errors, size)


def _all_created(created: dict[str, Any], errors: Any, size: int) -> list[int] | None:
    if errors or len(created) != size:
        return None
    while len(_INDEX_KEYS) <= size:
        _INDEX_KEYS.append([*_INDEX_KEYS[-1], str(len(_INDEX_KEYS) - 1)])
    keys = _INDEX_KEYS[size]
    if list(created) == keys:  # bk-cmdb writes them in order
        ids = list(created.values())
    else:
        try:
            ids = [created[key] for key in keys]
        except KeyError:
            return None
    if set(map(type, ids)) != {int}:
        return None
    _check_ids(ids)
    return ids


def _check_ids(ids: list[int]) -> None:
    """bk-cmdb draws association ids from a sequence starting at 1, one per insert: an
    answer with an id <= 0, or one id for two details, cannot be trusted for any of them."""
    if not ids:
        return
    if min(ids) <= 0:
        raise BadAnswer(f"association id {min(ids)} is not positive")
    if len(set(ids)) != len(ids):
        seen: set[int] = set()
        for assoc_id in ids:
            if assoc_id in seen:
                raise BadAnswer(f"association id {assoc_id} is given for two details")
            seen.add(assoc_id)


def _unaccounted(index: int, why: str) -> IndexResult:
    return IndexResult(index, IndexKind.OTHER, None, f"syncd: {why}")
