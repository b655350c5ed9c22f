"""Concurrent offset paging of a DRF/NetBox list endpoint, checked for changes during the read.

NetBox pages with ``limit``/``offset`` (``NetBoxPagination``, DRF's ``LimitOffsetPagination``)
and puts the number of matching rows (``count``) in every page, so once the first page is
in, every other page is known and can be fetched at once. ``limit`` is capped by NetBox's
``MAX_PAGE_SIZE`` (1000 by default): the first page's length tells the real cap.

Offsets are positions in a list that can change while it is read. A cable added or
removed between two pages shifts every later row by one: a row is then read twice or not
at all. So each page after the first starts one row early, on the previous page's last
row, and the read is only used when:

- every page says the same ``count`` as the first;
- every page holds exactly the rows its offset and that count call for;
- each page's first row is the previous page's last one (the pages join up);
- no id is read twice.

Together these mean every row that existed during the whole read is in the result
exactly once. Otherwise the read is done again (``ATTEMPTS`` in all) and then fails.
When the first page has no ``count`` the pages are read one by one following ``next``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

FIRST_PAGE = 50
"""Rows in the first request when pages are fetched concurrently: it only has to tell the
count, and nothing else can start before it is back."""
ATTEMPTS = 3
"""Whole reads tried when the list changes under the read, before the read fails."""


@dataclass(frozen=True, slots=True)
class Page:
    """One answer: ``count`` (None when the API gives none), its rows, the next page's URL."""

    count: int | None
    rows: list[Any]
    next_url: str | None


FetchRange = Callable[[int, int], Awaitable[Page]]
"""GET the page at (offset, limit)."""
FetchUrl = Callable[[str], Awaitable[Page]]
"""GET the page at a ``next`` URL."""


class PagingDrift(Exception):
    """The list changed between pages; the message says how."""


def row_key(row: Any) -> Any:
    """What identifies a row: its integer id, else the row itself (compared by value)."""
    ident = row.get("id") if isinstance(row, dict) else None
    return ident if isinstance(ident, int) and not isinstance(ident, bool) else row


def plan(count: int, first_len: int, page_size: int, concurrency: int) -> list[tuple[int, int]]:
    """(offset, limit) of every page after the first, each starting on its predecessor's last row.

    The rows left are spread evenly over a multiple of ``concurrency`` pages of at most
    ``page_size`` rows, so the rounds of concurrent requests take equally long.
    """
    if first_len >= count:
        return []
    if first_len == 0:
        raise PagingDrift(f"the first page is empty for count {count}")
    if page_size < 2:
        raise ValueError("page_size must be at least 2 to overlap pages")
    start = first_len - 1  # the first page's last row, read again
    rows = count - start  # each page re-reads one row of the previous: pages overlap by one
    step_max = page_size - 1
    pages = -(-(rows - 1) // step_max)
    pages = -(-pages // concurrency) * concurrency
    pages = max(1, min(pages, rows - 1))
    step = -(-(rows - 1) // pages)
    out: list[tuple[int, int]] = []
    offset = start
    while offset < count - 1:
        out.append((offset, min(step + 1, count - offset)))
        offset += step
    return out


def assemble(first: Page, later: list[tuple[int, int, Page]]) -> list[Any]:
    """The rows of the whole read, or PagingDrift if the pages do not join up exactly."""
    count = first.count
    assert count is not None
    rows = list(first.rows)
    for offset, limit, page in later:
        if page.count != count:
            raise PagingDrift(f"count went from {count} to {page.count} during the read")
        want = min(limit, count - offset)
        if len(page.rows) != want:
            raise PagingDrift(f"page at offset {offset} has {len(page.rows)} rows, {want} expected")
        if not rows or row_key(page.rows[0]) != row_key(rows[-1]):
            raise PagingDrift(f"page at offset {offset} does not start where the previous ended")
        rows.extend(page.rows[1:])
    if len(rows) != count:
        raise PagingDrift(f"read {len(rows)} rows for count {count}")
    seen: set[int] = set()
    for row in rows:
        key = row_key(row)
        if isinstance(key, int):
            if key in seen:
                raise PagingDrift(f"row {key} was read twice")
            seen.add(key)
    return rows


class PageCapped(Exception):
    """A page came back shorter than asked with the count unchanged: the server caps ``limit``."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"the server caps pages at {cap} rows")
        self.cap = cap


class PagingError(Exception):
    """The API's paging cannot be followed (too many pages, a next link looping back)."""


class PageLimit(PagingError):
    """More pages than ``max_pages``."""

    def __init__(self, max_pages: int) -> None:
        super().__init__(f"more than max_pages={max_pages} pages; raise max_pages")


@dataclass(slots=True)
class PagedRead:
    """The rows of a read and how many times it was started again."""

    rows: list[Any]
    rereads: int


async def _sequential(first: Page, fetch_url: FetchUrl, max_pages: int) -> list[Any]:
    rows, page, pages = list(first.rows), first, 1
    seen: set[str] = set()
    while page.next_url is not None:
        pages += 1
        if pages > max_pages:
            raise PageLimit(max_pages)
        if page.next_url in seen:
            raise PagingError("a next link loops back to an earlier page")
        seen.add(page.next_url)
        page = await fetch_url(page.next_url)
        if first.count is not None and page.count != first.count:
            raise PagingDrift(f"count went from {first.count} to {page.count} during the read")
        rows.extend(page.rows)
    if first.count is not None and len(rows) != first.count:
        raise PagingDrift(f"read {len(rows)} rows for count {first.count}")
    return rows


async def _concurrent(
    first: Page, fetch_range: FetchRange, page_size: int, concurrency: int, max_pages: int
) -> list[Any]:
    count = first.count
    assert count is not None
    ranges = plan(count, len(first.rows), page_size, concurrency)
    if len(ranges) + 1 > max_pages:
        raise PageLimit(max_pages)
    gate = asyncio.Semaphore(concurrency)

    async def one(offset: int, limit: int) -> Page:
        async with gate:
            page = await fetch_range(offset, limit)
        if page.count == count and len(page.rows) < min(limit, count - offset):
            raise PageCapped(len(page.rows))
        return page

    try:
        # The first failing page cancels the others: the read fails as a whole.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(offset, limit)) for offset, limit in ranges]
    except BaseExceptionGroup as failed:
        raise first_failure(failed) from None
    return assemble(first, [(o, n, t.result()) for (o, n), t in zip(ranges, tasks, strict=True)])


def first_failure(group: BaseExceptionGroup[Any]) -> BaseException:
    """The exception a task group failed with (its first leaf)."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


async def read_pages(
    fetch_range: FetchRange,
    fetch_url: FetchUrl,
    *,
    page_size: int,
    concurrency: int,
    max_pages: int,
) -> PagedRead:
    """Read every row: concurrently by offset when the count is known, else following ``next``.

    Raises PagingDrift when the list changed during each of ``ATTEMPTS`` reads, PagingError
    when the paging cannot be followed; a failing page's own exception goes through unchanged.
    """
    concurrent = concurrency > 1 and page_size > 1
    first_limit = min(page_size, FIRST_PAGE) if concurrent else page_size
    for attempt in range(ATTEMPTS):
        try:
            first = await fetch_range(0, first_limit)
            if not concurrent or first.count is None or first.next_url is None:
                return PagedRead(await _sequential(first, fetch_url, max_pages), attempt)
            if len(first.rows) < min(first_limit, first.count):
                page_size = first_limit = max(2, len(first.rows))  # capped below FIRST_PAGE
            rows = await _concurrent(first, fetch_range, page_size, concurrency, max_pages)
            return PagedRead(rows, attempt)
        except PageCapped as capped:
            page_size = max(2, capped.cap)
            if attempt == ATTEMPTS - 1:
                raise PagingDrift(str(capped)) from None
        except PagingDrift:
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
