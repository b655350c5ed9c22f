"""When to try again: per request and per pair. Pure.

Two clocks. A request that hit a limit or a flaky gateway is retried within
the cycle after an exponential, fully jittered pause (AWS's "full jitter": the
retries of many workers spread out instead of arriving together). A pair the
CMDB refused is held back across cycles: a missing instance may appear later,
so it is retried with a growing hold-back; an impossible id waits for a resync
(SIGHUP) instead of spending rate budget every cycle. A mapping conflict is stored the
same way, but the plan re-decides it every cycle from the pair that blocks it
(:mod:`syncd.core.moves`): held while the blocker stands, sent once it is gone.
"""

from __future__ import annotations

import random

from syncd.core.details import IndexKind


def request_delay(
    attempt: int, base: float, cap: float, hint: float | None, rng: random.Random
) -> float:
    """Pause before retry number ``attempt`` (1-based) of one request.

    A server hint (``Retry-After`` or ``X-Bkapi-RateLimit-Reset``) is honoured
    as a floor, with a little jitter so the workers that all saw it don't
    return in the same millisecond.
    """
    ceiling = min(cap, base * (2 ** (attempt - 1)))
    delay = rng.uniform(0, ceiling)
    if hint is not None:
        delay = max(delay, hint + rng.uniform(0, min(base, 0.25)))
    return delay


def pair_next_attempt(
    kind: IndexKind,
    attempts: int,
    now: float,
    base: float,
    cap: float,
    *,
    isolated: bool = False,
) -> float | None:
    """When a refused pair may be sent again; ``None`` holds it until a resync.

    ``attempts`` counts this failure too (1 on the first). ``isolated``: the CMDB
    refused a whole request for this detail (found by bisection, syncd.core.isolate), so
    each resend costs a bisection again: it backs off like a missing instance.
    """
    if kind.held_until_resync:
        return None
    if kind.is_missing or isolated:
        return now + min(cap, base * 2.0 ** max(0, attempts - 1))
    # Unknown per-index refusal: try again next cycle.
    return now
