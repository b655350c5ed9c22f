"""What one answer to one batch came to: rows to record and ``pair`` lines to log. Pure, no I/O.

Reading the answer itself (envelopes, codes, per-index texts) is :mod:`syncd.core.answer`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, overload

from syncd.core.answer import Answer, Verdict
from syncd.core.details import BadAnswer, IndexKind, all_created, split_batch_data

Operation = str
"""``create`` or ``delete``: which request a ``pair`` line is about."""

LogLine = tuple[str, dict[str, Any]]
"""(level, fields) of one ``pair`` line; the caller adds the bound context."""


def pair_fields(
    outcome: str,
    operation: Operation,
    index: int | None = None,
    src: int | None = None,
    dst: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The fields of every ``pair`` line, in one order: what, which detail, which pair, more."""
    fields: dict[str, Any] = {"outcome": outcome, "operation": operation}
    if index is not None:
        fields["index"] = index
    if src is not None and dst is not None:
        fields["bk_inst_id"] = src
        fields["bk_asst_inst_id"] = dst
    fields.update(extra)
    return fields


class CreatedLines(Sequence[LogLine]):
    """The ``pair`` lines of a batch that created every detail, kept as two columns.

    A line's fields are built only when read (tests, the console renderer);
    :func:`syncd.support.log.emit` writes JSON lines straight from the columns
    (:meth:`rendered`), byte for byte what the fields would render to.
    """

    __slots__ = ("details", "ids")
    level = "info"
    keys = frozenset(
        ("outcome", "operation", "index", "bk_inst_id", "bk_asst_inst_id", "association_id")
    )
    """The fields of every line."""

    def __init__(self, details: Sequence[tuple[int, int]], ids: list[int]) -> None:
        self.details = details
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, index: int) -> LogLine: ...
    @overload
    def __getitem__(self, index: slice) -> list[LogLine]: ...
    def __getitem__(self, index: int | slice) -> LogLine | list[LogLine]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        src, dst = self.details[index]
        fields = pair_fields("created", "create", index, src, dst)
        fields["association_id"] = self.ids[index]
        return ("info", fields)

    def __iter__(self) -> Iterator[LogLine]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def rendered(self, head: str, tail: str) -> str:
        """Every line: ``head``, the line's fields as JSON members, ``tail``, a newline.
        The fields are ints only, so f-strings render them exactly as ``json.dumps``."""
        return "".join(
            [
                f'{head}"outcome": "created", "operation": "create", "index": {i},'
                f' "bk_inst_id": {s}, "bk_asst_inst_id": {d}, "association_id": {a}{tail}\n'
                for i, ((s, d), a) in enumerate(zip(self.details, self.ids, strict=True))
            ]
        )


@dataclass(frozen=True, slots=True)
class FailedPair:
    """One detail the CMDB did not accept; ``kind`` None: the request failed as a whole."""

    src: int
    dst: int
    kind: IndexKind | None
    message: str
    isolated: bool = False
    """Refused by a whole-request refusal about it alone (syncd.core.isolate), not per index."""

    @property
    def reason(self) -> str:
        return "request" if self.kind is None else self.kind.value


@dataclass(slots=True)
class DetailRows:
    """A batch's created / exists / failed rows as its details are decided, each with its
    ``pair`` line: one place for what a decided detail becomes, whether the batch took one
    request (``classify_batch``) or several (``syncd.core.isolate``)."""

    created: list[tuple[int, int, int]] = field(default_factory=list)
    exists: list[tuple[int, int, int | None]] = field(default_factory=list)
    failed: list[FailedPair] = field(default_factory=list)

    def add(
        self,
        lines: list[LogLine],
        index: int | None,
        src: int,
        dst: int,
        kind: IndexKind | None,
        association_id: int | None,
        message: str,
        verbose: bool = True,
        *,
        isolated: bool = False,
    ) -> None:
        """Record one detail; ``verbose`` False leaves out the info lines of successes."""
        if kind is IndexKind.CREATED:
            assert association_id is not None  # split_batch_data guarantees it
            self.created.append((src, dst, association_id))
            if verbose:
                fields = pair_fields("created", "create", index, src, dst)
                fields["association_id"] = association_id
                lines.append(("info", fields))
        elif kind is IndexKind.EXISTS:
            self.exists.append((src, dst, None))
            if verbose:
                lines.append(("info", pair_fields("exists", "create", index, src, dst)))
        else:
            failure = FailedPair(src, dst, kind, message, isolated)
            self.failed.append(failure)
            fields = pair_fields(
                "failed", "create", index, src, dst, error=message, reason=failure.reason
            )
            lines.append(("warning", fields))


@dataclass(frozen=True, slots=True)
class RequestLines:
    """One request of a batch and the ``pair`` lines of the details it decided."""

    request_id: str | None
    lines: Sequence[LogLine]


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What a batch came to: every detail exactly once, in one of the lists.

    Usually one request (``lines`` under ``answer``'s request id). A batch the CMDB
    refused as a whole and that was settled by more requests (``syncd.core.isolate``)
    lists them in ``requests``, each with the lines of the details it decided, and
    ``deferred`` holds what the cycle's isolation budget could not pay for.
    """

    created: list[tuple[int, int, int]]
    """(src, dst, association_id): in the CMDB now, created by syncd."""
    exists: list[tuple[int, int, int | None]]
    """(src, dst, None): in the CMDB now, created by someone (or an earlier try)."""
    failed: list[FailedPair]
    lines: Sequence[LogLine]
    """One ``pair`` line per detail, in index order (known ones only with ``verbose``)."""
    refusal: str | None = None
    """Set when the CMDB refused the relation as a whole: why, and the fix."""
    answer: Answer | None = None
    requests: list[RequestLines] = field(default_factory=list)
    """Every request sent for the batch, in order, when there was more than one way to
    log it; empty: ``lines`` under ``answer``'s request id."""
    deferred: list[tuple[int, int]] = field(default_factory=list)
    """Details not decided this cycle (isolation budget spent, or stopped): not failed."""
    isolation_requests: int = 0
    """Requests beyond the batch's first (``syncd.core.isolate``)."""
    reclaim: frozenset[tuple[int, int]] = frozenset()
    """Details sent in a request whose answer came after (or was) an ambiguous end: the
    CMDB may have created them unseen, so their "already exists" is syncd's own create."""

    def unanswered(self) -> list[tuple[int, int]]:
        """Details the CMDB may have created without saying so: their request failed as a
        whole (or was not sent again) after an ambiguous end."""
        if not self.reclaim:
            return []
        left = [(f.src, f.dst) for f in self.failed if f.kind is None] + self.deferred
        return [pair for pair in left if pair in self.reclaim]

    def request_groups(self) -> list[RequestLines]:
        """The ``pair`` lines grouped by the request that decided them, in order sent."""
        if self.requests:
            return self.requests
        request_id = self.answer.request_id if self.answer is not None else None
        return [RequestLines(request_id, self.lines)]


def classify_batch(
    details: list[tuple[int, int]], answer: Answer, *, verbose: bool = True
) -> BatchOutcome:
    """Turn the answer to ``details`` into rows and lines. Pure; total over any answer.

    A malformed ``data`` fails the whole request (the pairs are retried, never assumed);
    ``verbose`` False leaves out the info lines of created and existing pairs.
    """
    reclaim = frozenset(details) if answer.after_ambiguous else frozenset()
    if answer.verdict is Verdict.OK:
        try:
            ids = all_created(answer.data, len(details))
            if ids is not None:  # the common answer: columns, no object per detail
                created = [(s, d, i) for (s, d), i in zip(details, ids, strict=True)]
                said = CreatedLines(details, ids) if verbose else []
                return BatchOutcome(created, [], [], said, None, answer, reclaim=reclaim)
            results = split_batch_data(answer.data, len(details))
        except BadAnswer as exc:
            answer = replace(answer, verdict=Verdict.FAILED, message=f"syncd: {exc}", data=None)
    if answer.verdict is not Verdict.OK:
        return whole_failure(details, answer.error, answer)
    rows = DetailRows()
    lines: list[LogLine] = []
    for res in results:
        src, dst = details[res.index]
        rows.add(lines, res.index, src, dst, res.kind, res.association_id, res.message, verbose)
    return BatchOutcome(
        rows.created, rows.exists, rows.failed, lines, None, answer, reclaim=reclaim
    )


def whole_failure(
    details: list[tuple[int, int]], error: str, answer: Answer | None = None
) -> BatchOutcome:
    """A request that failed as a whole: every detail failed, still one line each."""
    refusal = None
    if answer is not None and answer.verdict is Verdict.RELATION:
        refusal = f"{answer.error}; {answer.hint}"
    failed = [FailedPair(src, dst, None, error) for src, dst in details]
    lines: list[LogLine] = [
        ("warning", pair_fields("failed", "create", i, s, d, error=error, reason="request"))
        for i, (s, d) in enumerate(details)
    ]
    reclaim = frozenset(details) if answer is not None and answer.may_have_acted else frozenset()
    return BatchOutcome([], [], failed, lines, refusal, answer, reclaim=reclaim)
