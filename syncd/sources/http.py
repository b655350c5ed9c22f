"""The HTTP source: GET JSON from a URL, follow its pagination, pick two keys from each record.

Works with any JSON API that returns a list of records: DRF/NetBox style bodies
(``{"results": [...], "next": url}``), RFC 8288 ``Link: <url>; rel="next"`` headers,
or a single unpaged list. The token is read at every read (so a rotated
``token_file`` is picked up) and is never written to a log or an error message.
A source that cannot be read completely fails the read: a partial topology would
look like deleted cabling.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp
import structlog

from syncd.sources.base import RawFact, ReadStats, SourceError, chunked, redact
from syncd.sources.paths import PathMissing, PathStep, compile_path, get_path, scalar
from syncd.sources.settings import HttpCommonSettings, HttpSourceSettings
from syncd.support.httpbody import BodyTooLarge, origin_of, read_capped, safe_url
from syncd.support.log import BadRecords

log = structlog.get_logger("syncd.sources")

# --- the pager -----------------------------------------------------------------------------


def _rebase(url: str, base: str) -> str:
    """Keep the token on the configured origin: servers behind a TLS proxy often
    advertise ``http://internal-name/...`` in their next links."""
    parts, configured = urlsplit(url), urlsplit(base)
    return urlunsplit(
        (configured.scheme, configured.netloc, parts.path, parts.query, parts.fragment)
    )


def without_secrets(headers: Mapping[str, str], secrets: list[str]) -> dict[str, str]:
    """The headers minus every one that carries a secret (auth_header, or a custom one)."""
    return {k: v for k, v in headers.items() if not any(s and s in v for s in secrets)}


def open_session(common: HttpCommonSettings, *, max_connections: int = 2) -> aiohttp.ClientSession:
    """One session per read: nothing lingers between cycles."""
    ssl_opt: ssl.SSLContext | bool = True
    if not common.verify_tls:
        ssl_opt = False
    elif common.ca_bundle is not None:
        ssl_opt = ssl.create_default_context(cafile=str(common.ca_bundle))
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ssl_opt, limit=max_connections),
        timeout=aiohttp.ClientTimeout(total=common.timeout),
        raise_for_status=False,
    )


async def iter_json_pages(
    session: aiohttp.ClientSession,
    url: str,
    *,
    what: str,
    headers: Mapping[str, str],
    secrets: list[str],
    pagination: Literal["auto", "next", "link", "none"] = "auto",
    next_path: tuple[PathStep, ...] = ("next",),
    max_pages: int = 10_000,
    max_body: int = 64 * 1024 * 1024,
) -> AsyncIterator[tuple[str, Any]]:
    """Yield ``(page url, parsed body)`` for each page; SourceError for anything short of JSON.

    ``what`` names the source in messages (e.g. ``http source 'switch-host'``).
    Redirects are followed here, not by aiohttp: a redirect to another origin
    drops every header that carries a secret, whatever its name.
    """
    seen: set[str] = set()
    current: str | None = url
    pages = 0
    while current is not None:
        if current in seen:
            raise SourceError(f"{what}: pagination loops back to {safe_url(current)}")
        seen.add(current)
        pages += 1
        if pages > max_pages:
            raise SourceError(f"{what}: more than max_pages={max_pages} pages; raise max_pages")
        doc, link_next = await _get_json(session, current, headers, secrets, what, max_body)
        yield current, doc
        nxt = _next_url(doc, link_next, pagination, next_path)
        if nxt is not None:
            nxt = urljoin(current, nxt)
            if origin_of(nxt) != origin_of(url):
                nxt = _rebase(nxt, url)
        current = nxt


async def _get_json(
    session: aiohttp.ClientSession,
    url: str,
    headers: Mapping[str, str],
    secrets: list[str],
    what: str,
    max_body: int,
) -> tuple[Any, Any]:
    """One page: its parsed body and its ``Link: rel=next``; SourceError short of JSON."""
    where = f"GET {safe_url(url)}"
    status, reason, content_type, link_next, body, final = await _get(
        session, url, headers, secrets, what, max_body
    )
    if final != url:
        where = f"GET {safe_url(url)} (redirected to {safe_url(final)})"
    if status != 200:
        snippet = redact(body[:200].decode("utf-8", "replace").strip(), secrets)
        raise SourceError(f"{what}: {where}: HTTP {status} {reason}: {snippet!r}")
    try:
        return json.loads(body), link_next
    except RecursionError:
        raise SourceError(f"{what}: {where}: answer is JSON nested too deep") from None
    except ValueError:
        snippet = redact(body[:120].decode("utf-8", "replace").strip(), secrets)
        raise SourceError(
            f"{what}: {where}: answer is not JSON ({content_type or 'no content type'}): "
            f"{snippet!r}"
        ) from None


def _next_url(
    doc: Any, link_next: Any, pagination: str, next_path: tuple[PathStep, ...]
) -> str | None:
    """Where the next page is, as the answer says (before joining with its URL)."""
    if pagination in ("auto", "next") and isinstance(doc, dict):
        try:
            value = get_path(doc, next_path)
        except PathMissing:
            value = None
        if isinstance(value, str) and value:
            return value
    if pagination in ("auto", "link") and link_next is not None:
        return str(link_next.get("url") or "") or None
    return None


MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


async def _get(
    session: aiohttp.ClientSession,
    url: str,
    headers: Mapping[str, str],
    secrets: list[str],
    what: str,
    max_body: int,
) -> tuple[int, str, str, Any, bytes, str]:
    """GET one page, following at most MAX_REDIRECTS redirects by hand.

    Returns (status, reason, content type, Link next, body, final URL). The
    secret-carrying headers go only to the origin the request started at.
    """
    home = origin_of(url)
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        sent = dict(headers) if origin_of(current) == home else without_secrets(headers, secrets)
        where = f"GET {safe_url(current)}"
        try:
            async with session.get(current, headers=sent, allow_redirects=False) as resp:
                location = resp.headers.get("Location")
                if resp.status in _REDIRECTS and location:
                    current = urljoin(current, location)
                    continue
                body = await read_capped(resp, max_body)
                return (
                    resp.status,
                    resp.reason or "",
                    resp.headers.get("Content-Type", ""),
                    resp.links.get("next"),
                    body,
                    current,
                )
        except BodyTooLarge as exc:
            raise SourceError(f"{what}: {where}: {exc} (max_body); raise max_body") from None
        except TimeoutError:
            raise SourceError(f"{what}: {where}: timed out") from None
        except aiohttp.ClientError as exc:
            text = redact(f"{type(exc).__name__}: {exc}", secrets)
            raise SourceError(f"{what}: {where}: {text}") from None
    raise SourceError(f"{what}: GET {safe_url(url)}: more than {MAX_REDIRECTS} redirects")


# --- the source ----------------------------------------------------------------------------


class HttpSource:
    """Reads one relation's facts from a JSON API. Record numbers count from 1 across pages."""

    def __init__(self, settings: HttpSourceSettings, *, name: str) -> None:
        self.settings = settings
        self.name = name
        self.label = f"http:{safe_url(settings.url)}"
        self._bad_records = BadRecords(self.label)
        self._records = compile_path(settings.records) if settings.records is not None else None
        self._src = compile_path(settings.source_path)
        self._dst = compile_path(settings.target_path)
        self._next = compile_path(settings.next_path)
        self._stats = ReadStats()
        self._page_starts: list[int] = []

    @property
    def stats(self) -> ReadStats:
        return self._stats

    def origin(self, record: int) -> str:
        """``http:https://host/path page 2 record 37`` (records count from 1 over all pages)."""
        page = 0
        for number, start in enumerate(self._page_starts, start=1):
            if start > record:
                break
            page = number
        where = f" page {page}" if page else ""
        return f"{self.label}{where} record {record}"

    def _headers(self) -> tuple[dict[str, str], list[str]]:
        s = self.settings
        headers = {"Accept": "application/json", **s.headers}
        token = s.read_token()
        secrets: list[str] = []
        if token is not None:
            headers[s.auth_header] = f"{s.auth_scheme} {token}" if s.auth_scheme else token
            secrets.append(token)
        return headers, secrets

    def _page_records(self, doc: Any, page_url: str) -> list[Any]:
        what = f"http source {self.name!r}: {safe_url(page_url)}"
        if self._records is not None:
            try:
                items = get_path(doc, self._records)
            except PathMissing as exc:
                raise SourceError(f"{what}: no {exc} in the body (records path)") from None
        elif isinstance(doc, list):
            items = doc
        elif isinstance(doc, dict) and "results" in doc:
            items = doc["results"]
        else:
            raise SourceError(f"{what}: the body is not a list and has no 'results'; set records")
        if not isinstance(items, list):
            raise SourceError(f"{what}: records is a {type(items).__name__}, not a list")
        return items

    async def facts(self) -> AsyncIterator[list[RawFact]]:
        self._stats = ReadStats()
        self._bad_records = BadRecords(self.label)
        self._page_starts = []
        headers, secrets = self._headers()
        s = self.settings
        record = 0
        async with open_session(s) as session:
            async for page_url, doc in iter_json_pages(
                session,
                s.url,
                what=f"http source {self.name!r}",
                headers=headers,
                secrets=secrets,
                pagination=s.pagination,
                next_path=self._next,
                max_pages=s.max_pages,
                max_body=s.max_body,
            ):
                self._page_starts.append(record + 1)
                self._stats.extra["pages"] = self._stats.extra.get("pages", 0) + 1
                chunk: list[RawFact] = []
                for item in self._page_records(doc, page_url):
                    record += 1
                    self._stats.records += 1
                    try:
                        fact = (
                            scalar(get_path(item, self._src)),
                            scalar(get_path(item, self._dst)),
                            record,
                        )
                    except (PathMissing, TypeError) as exc:
                        self._bad(record, exc)
                        continue
                    chunk.append(fact)
                for part in chunked(chunk):
                    yield part
        self._bad_records.finish()

    def _bad(self, record: int, exc: Exception) -> None:
        self._stats.bad += 1
        reason = f"no {exc} in the record" if isinstance(exc, PathMissing) else str(exc)
        self._bad_records.add(self.origin(record), reason)
