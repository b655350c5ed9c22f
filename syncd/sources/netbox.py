"""The NetBox source: switch-to-host cabling from NetBox 4.x's REST API.

Two ways to read it:

- ``cables``: ``GET /api/dcim/cables/`` (filters ``site``, ``tag``, ``status``); each cable's
  ``a_terminations``/``b_terminations`` name interfaces and their devices.
- ``interfaces``: ``GET /api/dcim/interfaces/?cabled=true&device_role=<switch role>``
  (filters ``site``, ``tag``); each switch interface's ``link_peers``.

Either way the devices at both ends are then looked up in bulk
(``GET /api/dcim/devices/?id=..&fields=..``) because the nested device in a cable or
interface carries neither its role nor its IPs. The end whose device role is a
switch role is the source of the fact; ends that are not interfaces (front ports of
patch panels, circuit terminations, power ports), switch-to-switch links and cables
with both ends on hosts are skipped and counted.

NetBox silently ignores query parameters it does not know, so a misspelt filter
would quietly widen the read: the filter names used here are the ones NetBox 4.7's
filtersets define (checked against a real server when recording the test fixtures).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import structlog

from syncd.sources.base import RawFact, RawValue, ReadStats, SourceError, chunked
from syncd.sources.http import _rebase, iter_json_pages, open_session
from syncd.sources.netboxlinks import Link, cable_link, device_key, device_role, interface_link
from syncd.sources.paging import Page, PagingDrift, PagingError, first_failure, read_pages
from syncd.sources.settings import NetBoxSourceSettings
from syncd.support.httpbody import safe_url
from syncd.support.log import BadRecords

log = structlog.get_logger("syncd.sources")

PageRead = Callable[[str], Awaitable[Page]]

DEVICE_LOOKUP_CHUNK = 100
"""Device ids per lookup request: keeps the URL well under common proxy limits."""
LIST_FIELDS = {
    "cables": "id,a_terminations,b_terminations",
    "interfaces": "id,device,link_peers_type,link_peers",
}
"""NetBox >= 4.0 ``fields=``: only these top-level fields are serialised (nested objects keep
their brief form); older versions ignore the parameter and send every field."""


@dataclass(frozen=True, slots=True)
class RecordFacts:
    """One cable's contribution: the devices at its ends and the facts it gives."""

    devices: frozenset[int]
    facts: tuple[tuple[RawValue, RawValue], ...]


class NetBoxSource:
    """Reads (switch key, host key) facts; record numbers are cable or interface ids."""

    def __init__(self, settings: NetBoxSourceSettings, *, name: str) -> None:
        self.settings = settings
        self.name = name
        self.label = f"netbox:{safe_url(settings.url)} {settings.mode}"
        self._bad_records = BadRecords(self.label)
        self._stats = ReadStats()
        self._what = f"netbox source {name!r}"
        self.by_record: dict[int, RecordFacts] = {}
        """The last read's facts per cable (duplicates kept): what a webhook's change of
        one cable is compared with (syncd.engine.change)."""

    @property
    def stats(self) -> ReadStats:
        return self._stats

    def origin(self, record: int) -> str:
        kind = "cables" if self.settings.mode == "cables" else "interfaces"
        return f"{safe_url(self.settings.url)}/dcim/{kind}/{record}/"

    def _headers(self) -> tuple[dict[str, str], list[str]]:
        token = self.settings.read_token()
        headers = {"Accept": "application/json"}
        if token is None:
            return headers, []
        version = self.settings.token_version
        if version == "auto":
            version = "v2" if token.startswith("nbt_") else "v1"
        headers["Authorization"] = f"{'Bearer' if version == 'v2' else 'Token'} {token}"
        return headers, [token]

    def _url(self, path: str, params: list[tuple[str, str]]) -> str:
        return f"{self.settings.url}/api/{path}?{urlencode(params)}"

    def _list_url(
        self, limit: int, offset: int = 0, extra: list[tuple[str, str]] | None = None
    ) -> str:
        s = self.settings
        params: list[tuple[str, str]] = [("limit", str(limit)), *(extra or [])]
        if offset:
            params += [("offset", str(offset))]
        params += [("fields", LIST_FIELDS[s.mode])]
        if s.mode == "cables":
            params += [("status", v) for v in s.status]
        else:
            params += [("cabled", "true")]
            if s.status:
                # NetBox: the cable path is active (every cable connected) and complete.
                params += [("connected", "true")]
            params += [("device_role", v) for v in s.switch_role]
        params += [("site", v) for v in s.site]
        params += [("tag", v) for v in s.tag]
        return self._url("dcim/cables/" if s.mode == "cables" else "dcim/interfaces/", params)

    def _device_fields(self) -> str:
        names = {"id", "name", "role"}
        for key in (self.settings.switch_key, self.settings.host_key):
            names.add(key.split(".", 1)[0])
        return ",".join(sorted(names))

    def _page_reader(self, session: Any, headers: dict[str, str], secrets: list[str]) -> PageRead:
        s = self.settings

        async def page(url: str) -> Page:
            async for page_url, doc in iter_json_pages(
                session,
                url,
                what=self._what,
                headers=headers,
                secrets=secrets,
                pagination="none",
                max_body=s.max_body,
            ):
                results = doc.get("results") if isinstance(doc, dict) else None
                if not isinstance(results, list):
                    raise SourceError(
                        f"{self._what}: {safe_url(page_url)}: no results list in the answer"
                    )
                self._count("pages")
                count, nxt = doc.get("count"), doc.get("next")
                return Page(
                    count if isinstance(count, int) and not isinstance(count, bool) else None,
                    results,
                    nxt if isinstance(nxt, str) and nxt else None,
                )
            raise AssertionError("iter_json_pages yields one page or raises")

        return page

    async def facts(self) -> AsyncIterator[list[RawFact]]:
        self._stats = stats = ReadStats()
        self._bad_records = BadRecords(self.label)
        headers, secrets = self._headers()
        s = self.settings
        async with open_session(s, max_connections=s.concurrency) as session:
            page = self._page_reader(session, headers, secrets)
            rows = await self._rows(page)
            links: list[Link] = []
            for row in rows:
                link = self._cable(row) if s.mode == "cables" else self._interface(row)
                if link is not None:
                    stats.records += 1
                    links.append(link)
            devices = await self._devices(page, links)
        self.by_record = {}
        pairs = self._pairs(links, devices, self.by_record)
        self._bad_records.finish()
        for part in chunked(pairs):
            yield part

    async def read_cables(
        self, *, cables: Iterable[int] = (), devices: Iterable[int] = ()
    ) -> dict[int, RecordFacts]:
        """What NetBox says now of the cables named, and of every cable of the devices named,
        with the source's filters: cable id -> its facts. A named cable that NetBox does not
        return (deleted, or no longer matching the filters) maps to no facts. Cables mode
        only; raises SourceError when a read fails."""
        if self.settings.mode != "cables":
            raise SourceError(f"{self._what}: single-cable reads need mode = 'cables'")
        self._stats = ReadStats()
        headers, secrets = self._headers()
        s = self.settings
        named = sorted(set(cables))
        owners = sorted(set(devices))
        rows: list[Any] = []
        async with open_session(s, max_connections=s.concurrency) as session:
            page = self._page_reader(session, headers, secrets)
            step = DEVICE_LOOKUP_CHUNK
            queries = [
                [("id", str(c)) for c in named[i : i + step]] for i in range(0, len(named), step)
            ]
            queries += [
                [("device_id", str(d)) for d in owners[i : i + step]]
                for i in range(0, len(owners), step)
            ]
            for extra in queries:
                rows.extend(await self._all_pages(page, self._list_url(s.page_size, extra=extra)))
            links = [link for row in rows if (link := self._cable(row)) is not None]
            found = await self._devices(page, links)
        out: dict[int, RecordFacts] = {c: RecordFacts(frozenset(), ()) for c in named}
        self._pairs(links, found, out)
        return out

    async def _all_pages(self, page: PageRead, url: str) -> list[Any]:
        """Every row of a (small) filtered list, following next links up to ``max_pages``."""
        rows: list[Any] = []
        next_url: str | None = url
        for _ in range(self.settings.max_pages):
            if next_url is None:
                return rows
            got = await page(next_url)
            rows.extend(got.rows)
            next_url = self._next(next_url, got.next_url) if got.next_url and got.rows else None
        if next_url is not None:
            raise SourceError(f"{self._what}: more than max_pages pages for one change")
        return rows

    async def _rows(self, page: PageRead) -> list[Any]:
        """Every cable (or interface) row; pages concurrently once NetBox has told the count."""
        s = self.settings
        base = self._list_url(s.page_size)

        async def by_range(offset: int, limit: int) -> Page:
            return await page(self._list_url(limit, offset))

        async def by_url(url: str) -> Page:
            return await page(self._next(base, url))

        try:
            read = await read_pages(
                by_range,
                by_url,
                page_size=s.page_size,
                concurrency=s.concurrency,
                max_pages=s.max_pages,
            )
        except PagingError as exc:
            raise SourceError(f"{self._what}: {exc}") from None
        except PagingDrift as exc:
            raise SourceError(
                f"{self._what}: NetBox changed during each of the read's attempts ({exc}); "
                "nothing of it is used, the next cycle reads again"
            ) from None
        if read.rereads:
            self._count("rereads", read.rereads)
            log.info("netbox_reread", relation=self.name, source=self.label, rereads=read.rereads)
        return read.rows

    @staticmethod
    def _next(current: str, link: str) -> str:
        """A next link resolved against ``current``, kept on its origin (the token goes there)."""
        nxt = urljoin(current, link)
        if urlsplit(nxt)[:2] != urlsplit(current)[:2]:
            nxt = _rebase(nxt, current)
        return nxt

    async def _devices(self, page: PageRead, links: list[Link]) -> dict[int, dict[str, Any]]:
        """The devices at the links' ends, ``DEVICE_LOOKUP_CHUNK`` ids a request, concurrently."""
        wanted = sorted({d for link in links for d in (*link.a, *link.b)})
        gate = asyncio.Semaphore(self.settings.concurrency)
        devices: dict[int, dict[str, Any]] = {}

        async def lookup(ids: list[int]) -> None:
            params = [("id", str(d)) for d in ids]
            params += [("fields", self._device_fields()), ("limit", str(len(ids)))]
            url: str | None = self._url("dcim/devices/", params)
            for _ in range(len(ids)):  # a capped page size: next links, each with >= 1 device
                if url is None:
                    return
                async with gate:
                    found = await page(url)
                for dev in found.rows:
                    if isinstance(dev, dict) and isinstance(dev.get("id"), int):
                        devices[dev["id"]] = dev
                url = self._next(url, found.next_url) if found.next_url and found.rows else None
            if url is not None:
                raise SourceError(f"{self._what}: device lookup pages do not end")

        step = DEVICE_LOOKUP_CHUNK
        chunks = [wanted[i : i + step] for i in range(0, len(wanted), step)]
        try:
            async with asyncio.TaskGroup() as group:
                for ids in chunks:
                    group.create_task(lookup(ids))
        except BaseExceptionGroup as failed:
            raise first_failure(failed) from None
        return devices

    # -- reading rows --------------------------------------------------------------------

    def _count(self, what: str, n: int = 1) -> None:
        self._stats.extra[what] = self._stats.extra.get(what, 0) + n

    def _cable(self, row: Any) -> Link | None:
        link = cable_link(row)
        if link is None:
            self._count("malformed")
        return link

    def _interface(self, row: Any) -> Link | None:
        link = interface_link(row)
        if link is None:
            self._count("malformed")
        return link

    # -- ends to facts --------------------------------------------------------------------

    def _pairs(
        self,
        links: Iterable[Link],
        devices: dict[int, dict[str, Any]],
        by_record: dict[int, RecordFacts] | None = None,
    ) -> list[RawFact]:
        """The facts of ``links`` (each pair once); ``by_record`` gets each link's own."""
        s = self.settings
        switch_roles, host_roles = set(s.switch_role), set(s.host_role)
        seen: set[tuple[RawValue, RawValue]] = set()
        facts: list[RawFact] = []
        for link in links:
            own: list[tuple[RawValue, RawValue]] = []
            if by_record is not None:
                by_record[link.record] = RecordFacts(frozenset((*link.a, *link.b)), ())
            if not link.a or not link.b:
                self._count("ignored_not_interface")
                continue
            a_switch = [device_role(devices.get(d)) in switch_roles for d in link.a]
            b_switch = [device_role(devices.get(d)) in switch_roles for d in link.b]
            if all(a_switch) and not any(b_switch):
                switches, hosts = link.a, link.b
            elif all(b_switch) and not any(a_switch):
                switches, hosts = link.b, link.a
            elif any(a_switch) and any(b_switch):
                self._count("ignored_switch_to_switch")
                continue
            else:
                self._count("ignored_no_switch")
                continue
            if host_roles and not all(device_role(devices.get(h)) in host_roles for h in hosts):
                self._count("ignored_host_role")
                continue
            for sw in switches:
                for host in hosts:
                    src = self._key(devices.get(sw), sw, s.switch_key, link.record)
                    dst = self._key(devices.get(host), host, s.host_key, link.record)
                    if src is None or dst is None:
                        continue
                    own.append((src, dst))
                    if (src, dst) in seen:
                        self._count("duplicate")
                        continue
                    seen.add((src, dst))
                    facts.append((src, dst, link.record))
            if by_record is not None and own:
                by_record[link.record] = RecordFacts(frozenset((*link.a, *link.b)), tuple(own))
        return facts

    def _key(self, device: dict[str, Any] | None, ident: int, key: str, record: int) -> RawValue:
        value = device_key(device, key) if device is not None else None
        if value is None:
            self._stats.bad += 1
            name = device.get("name") if device else None
            self._bad_records.add(
                self.origin(record),
                f"device {name or ident!s} has no {key}"
                if device is not None
                else f"device {ident} was not found",
            )
        return value
