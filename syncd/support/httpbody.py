"""HTTP at the edges: bounded bodies, checked URLs, URLs fit for messages.

Shared by the CMDB client, the configuration and the http/netbox sources.

A peer that streams gigabytes (or never stops) must not exhaust memory: every body
syncd reads is capped, like the command source's ``max_output``. And a URL that goes
into a log line or an error loses its user info and query, where tokens hide.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:  # the configuration imports check_url: keep aiohttp out of it
    import aiohttp

READ_BLOCK = 1 << 16


class BodyTooLarge(Exception):
    """The answer's body is larger than the cap."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"answer larger than {limit} bytes")
        self.limit = limit


async def read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or BodyTooLarge as soon as it passes ``limit`` bytes."""
    if resp.content_length is not None and resp.content_length > limit:
        raise BodyTooLarge(limit)
    parts: list[bytes] = []
    size = 0
    async for block in resp.content.iter_chunked(READ_BLOCK):
        size += len(block)
        if size > limit:
            raise BodyTooLarge(limit)
        parts.append(block)
    return b"".join(parts)


def safe_url(url: str) -> str:
    """A URL for messages: without user info and query values."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def origin_of(url: str) -> tuple[str, str]:
    """(scheme, host:port): credentials never leave the origin they were configured for."""
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.rsplit("@", 1)[-1].lower()


def check_url(value: str) -> str:
    """An http(s) URL with a host and, if given, a port in 1..65535; ValueError if not."""
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError("must be an http:// or https:// URL")
    try:
        port = urlsplit(value).port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("the port in the URL must be 1..65535")
    return value
