"""The CMDB client: one aiohttp session, one concurrency cap, one rate budget, retries.

Every call goes through ``call``: a slot from the concurrency semaphore and
the rate limiter per attempt (not held while backing off), then the answer is
classified (``syncd.core.answer``) and acted on. Retryable and ambiguous answers are
retried with jittered exponential backoff; ``batch_create_instance_association``
is idempotent per pair (a repeat answers "already exists"), so retrying an
ambiguous batch is safe and the resend's per-index answers are the truth.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import replace
from typing import Any, Protocol
from urllib.parse import urljoin

import aiohttp
import structlog

from syncd.cmdb import apis
from syncd.cmdb.apis import HOST_PAGE_LIMIT, PAGE_LIMIT, Api
from syncd.cmdb.gateway import frame
from syncd.cmdb.ratelimit import RateBudgets
from syncd.cmdb.reads import AssociationReads
from syncd.cmdb.reads import CmdbError as CmdbError  # imported from here in many places
from syncd.config.checks import security_warnings
from syncd.config.settings import CmdbSettings
from syncd.core.answer import Answer, Verdict, classify_response, classify_transport_error
from syncd.core.backoff import request_delay
from syncd.core.batching import MAX_BATCH
from syncd.support.httpbody import BodyTooLarge, read_capped, safe_url
from syncd.support.slots import away

log = structlog.get_logger("syncd.cmdb")

MAX_ANSWER_BYTES = 32 << 20
"""A CMDB answer larger than this is not read (a page of 500 associations is ~100 KB)."""

WATCH_HOLD = 20.0
"""bk-cmdb's ``timeoutWatchLoopSeconds``: a watch with no event is held more than this and,
as the check is in whole seconds after 250 ms sleeps, up to about 21.25 s."""

WATCH_TIMEOUT = WATCH_HOLD + 15.0
"""A watch request's shortest end-to-end timeout: the longest hold plus the ESB's margin."""

LONG_WAIT = 5.0
"""A retry pause longer than this (seconds) is logged at info: the operator sees why it is slow."""

_warned: set[str] = set()
"""Start-up warnings already logged by this process (each is logged once)."""


class ClientObserver(Protocol):
    """Where the client reports what it did (the metrics registry implements this)."""

    def record_request(self, api: str, status: str, seconds: float) -> None: ...
    def record_retry(self, api: str, reason: str) -> None: ...
    def record_rate_limit_wait(self, seconds: float) -> None: ...


def _classify(status: int, headers: Any, payload: bytes) -> Answer:
    """classify_response, with JSON nested too deep to build taken as a garbled answer."""
    try:
        return classify_response(status, headers, payload)
    except RecursionError:
        return Answer(Verdict.AMBIGUOUS, status, None, "answer is JSON nested too deep")


def _redirected(status: int, url: str, headers: Any) -> Answer:
    """A 30x from the CMDB: an error for the relation, naming where it pointed."""
    location = headers.get("Location")
    target = safe_url(urljoin(url, location)) if location else "nowhere (no Location)"
    return Answer(
        Verdict.RELATION,
        status,
        None,
        f"redirect to {target}",
        hint="syncd does not follow CMDB redirects (the secret would go along): "
        "fix cmdb.url to the address the CMDB really answers on",
    )


class CmdbClient:
    """Async client for the handful of CMDB APIs syncd uses (the association and host
    reads are :class:`~syncd.cmdb.reads.AssociationReads`, handed on below)."""

    def __init__(
        self,
        settings: CmdbSettings,
        *,
        observer: ClientObserver | None = None,
        seed: int | None = None,
        watch_slots: int = 0,
    ) -> None:
        self.settings = settings
        self.budgets = RateBudgets.for_gateway(
            settings.gateway, settings.rate_limit, settings.read_rate_limit
        )
        self.limiter = self.budgets.write
        """The write budget (on the ESB, the one budget of all calls)."""
        self._semaphore = asyncio.Semaphore(settings.concurrency)
        self.watch_slots = watch_slots
        """Connections kept for held watch requests, beside ``concurrency``: a watch
        held for 20 s never takes a slot a write could use."""
        self._watch_semaphore = asyncio.Semaphore(max(1, watch_slots))
        self._observer = observer
        self._rng = random.Random(seed)
        self._session: aiohttp.ClientSession | None = None
        self.stopping = False
        """Set at shutdown: requests in flight finish, no new attempt starts."""
        self.reads = AssociationReads(self)

    async def __aenter__(self) -> CmdbClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        if self._session is not None:
            return
        for warning in security_warnings(self.settings):
            if warning not in _warned:
                _warned.add(warning)
                log.warning("insecure_cmdb_settings", problem=warning)
        ssl_opt: ssl.SSLContext | bool = True
        if not self.settings.url.startswith("https://"):
            ssl_opt = False  # plain HTTP: building a verifying context is wasted start-up
        elif not self.settings.verify_tls:
            ssl_opt = False
        elif self.settings.ca_bundle is not None:
            ssl_opt = ssl.create_default_context(cafile=str(self.settings.ca_bundle))
        connector = aiohttp.TCPConnector(
            limit=self.settings.concurrency + self.watch_slots,
            ssl=ssl_opt,
            enable_cleanup_closed=True,
        )
        timeout = aiohttp.ClientTimeout(
            total=self.settings.timeout, sock_connect=self.settings.connect_timeout
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, raise_for_status=False
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the one way out -------------------------------------------------

    async def call(
        self, api: Api, body: dict[str, Any], params: dict[str, Any] | None = None
    ) -> Answer:
        """Send one call, retrying what is safe to retry; returns the final answer."""
        params = params or {}
        attempt = 0
        limiter = self.budgets.for_api(api.name)
        ambiguous = False
        while True:
            attempt += 1
            answer = await self._attempt(api, body, params)
            if ambiguous:
                answer = replace(answer, after_ambiguous=True)
            ambiguous = ambiguous or answer.verdict is Verdict.AMBIGUOUS
            if answer.verdict not in (Verdict.RETRY, Verdict.AMBIGUOUS):
                if answer.verdict is Verdict.OK:
                    limiter.succeeded()
                return answer
            rate_refusal = answer.rate_limited
            # A server hint never holds a request longer than retry_cap: a gateway that
            # says "Retry-After: 86400" must not park the daemon for a day.
            hint = answer.retry_after
            if hint is not None:
                hint = min(hint, self.settings.retry_cap)
            if rate_refusal:
                limiter.throttled(hint)
            if attempt > self.settings.max_retries or self.stopping:
                return answer
            reason = "rate_limited" if rate_refusal else answer.verdict.value
            if self._observer is not None:
                self._observer.record_retry(api.name, reason)
            delay = request_delay(
                attempt,
                self.settings.retry_base,
                self.settings.retry_cap,
                None if rate_refusal else hint,
                self._rng,
            )
            # A rate refusal also pauses every worker in the limiter for the hint.
            wait = max(delay, hint or 0.0) if rate_refusal else delay
            (log.info if wait > LONG_WAIT else log.debug)(
                "retry",
                api=api.name,
                attempt=attempt,
                reason=reason,
                error=answer.error,
                delay=round(wait, 3),
            )
            async with away():  # the engine's slot is not held while backing off
                await asyncio.sleep(delay)

    async def _attempt(self, api: Api, body: dict[str, Any], params: dict[str, Any]) -> Answer:
        if self._session is None:
            raise RuntimeError("CmdbClient used before open()")
        framed = frame(self.settings, api, body, params)
        held = api is apis.RESOURCE_WATCH
        timeout = self._session.timeout
        if held:
            timeout = aiohttp.ClientTimeout(
                total=max(self.settings.timeout, WATCH_TIMEOUT),
                sock_connect=self.settings.connect_timeout,
            )
        async with self._watch_semaphore if held else self._semaphore:
            waited = await self.budgets.for_api(api.name).acquire()
            if self._observer is not None and waited > 0.0005:
                self._observer.record_rate_limit_wait(waited)
            started = time.monotonic()
            try:
                # Never follow a redirect: the secret rides in every request (ESB body,
                # X-Bkapi-Authorization) and must not reach wherever a 30x points.
                async with self._session.request(
                    framed.method,
                    framed.url,
                    data=framed.body,
                    headers=framed.headers,
                    allow_redirects=False,
                    timeout=timeout,
                ) as resp:
                    if 300 <= resp.status < 400:
                        answer = _redirected(resp.status, framed.url, resp.headers)
                    else:
                        try:
                            payload = await read_capped(resp, MAX_ANSWER_BYTES)
                        except BodyTooLarge as exc:
                            answer = Answer(Verdict.AMBIGUOUS, resp.status, None, str(exc))
                        else:
                            answer = _classify(resp.status, resp.headers, payload)
            except aiohttp.ClientConnectorError as exc:
                answer = classify_transport_error(exc, sent=False)
            except (aiohttp.ClientError, TimeoutError) as exc:
                # Disconnected, reset or timed out after the request left: the CMDB may
                # have acted. (A reset while connecting is ClientConnectorError above.)
                answer = classify_transport_error(exc, sent=True)
            if answer.request_id is None:
                answer = replace(answer, request_id=framed.request_id)
            if self._observer is not None:
                status = str(answer.status) if answer.status is not None else "error"
                self._observer.record_request(api.name, status, time.monotonic() - started)
            return answer

    # -- typed operations -----------------------------------------------

    async def batch_create(
        self,
        bk_obj_id: str,
        bk_asst_obj_id: str,
        bk_obj_asst_id: str,
        details: Sequence[tuple[int, int]],
    ) -> Answer:
        """batch_create_instance_association; refuses more than the CMDB's 200."""
        if not details:
            raise ValueError("batch_create needs at least one detail")
        if len(details) > MAX_BATCH or len(details) > self.settings.batch_size:
            raise ValueError(
                f"batch of {len(details)} exceeds the limit "
                f"{min(MAX_BATCH, self.settings.batch_size)}"
            )
        body = {
            "bk_obj_id": bk_obj_id,
            "bk_asst_obj_id": bk_asst_obj_id,
            "bk_obj_asst_id": bk_obj_asst_id,
            "details": [{"bk_inst_id": s, "bk_asst_inst_id": d} for s, d in details],
        }
        return await self.call(apis.BATCH_CREATE, body)

    async def find_object_association(self, bk_obj_asst_id: str) -> dict[str, Any] | None:
        """The model association, or None when the CMDB has none by that id."""
        answer = await self.call(
            apis.FIND_OBJECT_ASSOCIATION, {"condition": {"bk_obj_asst_id": bk_obj_asst_id}}
        )
        if answer.verdict is not Verdict.OK:
            raise CmdbError(f"find_object_association({bk_obj_asst_id})", answer)
        rows = answer.data if isinstance(answer.data, list) else []
        for row in rows:
            if isinstance(row, dict) and row.get("bk_obj_asst_id") == bk_obj_asst_id:
                return row
        return None

    async def delete_associations(self, bk_obj_id: str, ids: Sequence[int]) -> Answer:
        """delete_related_inst_asso: 1 to 500 ids; unknown ids are skipped by the CMDB."""
        if not 1 <= len(ids) <= PAGE_LIMIT:
            raise ValueError(f"delete takes 1..{PAGE_LIMIT} ids, got {len(ids)}")
        return await self.call(apis.DELETE_ASSOCIATIONS, {"id": list(ids), "bk_obj_id": bk_obj_id})

    # -- the reads, handed on to syncd.cmdb.reads --------------------------------------

    def iter_associations(
        self, bk_obj_id: str, bk_obj_asst_id: str, extra_rules: Iterable[dict[str, Any]] = ()
    ) -> AsyncIterator[list[tuple[int, int, int]]]:
        """See :meth:`AssociationReads.iter_associations`."""
        return self.reads.iter_associations(bk_obj_id, bk_obj_asst_id, extra_rules)

    async def lookup_association_ids(
        self, bk_obj_id: str, bk_obj_asst_id: str, pairs: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], int]:
        """See :meth:`AssociationReads.lookup_association_ids`."""
        return await self.reads.lookup_association_ids(bk_obj_id, bk_obj_asst_id, pairs)

    async def watch_associations(self, sub_resource: str | None, cursor: str | None) -> Answer:
        """See :meth:`AssociationReads.watch_associations`."""
        return await self.reads.watch_associations(sub_resource, cursor)

    async def existing_hosts(
        self, host_ids: Iterable[int], *, page_size: int = HOST_PAGE_LIMIT
    ) -> set[int]:
        """See :meth:`AssociationReads.existing_hosts`."""
        return await self.reads.existing_hosts(host_ids, page_size=page_size)
