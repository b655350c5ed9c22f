"""Who may ask for a resync through ``POST /resync``, and who may lift a prune guard.

A resync from the CMDB is harmless: a loopback caller may ask for one without
credentials (unless a resync token is configured, which every request must then carry).
Lifting the prune guards (the shrink and empty-source guards) is the operator's word
that a smaller source is meant, after which the next cycle may delete pairs: it takes
``SIGHUP`` (the service's own user or root) or this endpoint with ``Authorization:
Bearer <token>``, the token from ``ops.resync_token_file``, ``ops.resync_token`` or the
systemd credential ``resync_token``. With no token configured the endpoint never lifts a
guard. Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from enum import StrEnum


class ResyncGrant(StrEnum):
    """What a ``POST /resync`` may do."""

    PLAIN = "plain"
    """A resync; the guards stay."""
    LIFT = "lift"
    """The right token: a resync that also lifts the prune guards."""
    REFUSED = "refused"
    """Nothing: a wrong, missing or uncheckable credential, or an untrusted caller."""


NO_TOKEN = (
    "no resync token is configured (ops.resync_token_file or the systemd credential "
    "resync_token), so this endpoint cannot lift prune guards; nothing was done. SIGHUP "
    "lifts them; a request without credentials resyncs without lifting them"
)
WRONG = "a valid 'Authorization: Bearer <ops.resync_token>' is required"
REMOTE = (
    "ops.host is not loopback: a caller from another machine needs "
    "ops.resync_token_file (and 'Authorization: Bearer <token>')"
)


def grant(
    authorization: str | None, token: bytes | None, *, trusted: bool = True
) -> tuple[ResyncGrant, str | None]:
    """Decide from the request's ``Authorization`` header, the configured token (UTF-8) and
    whether the caller is on this machine (``trusted``); the second item says why not."""
    if authorization is None:
        if token is not None:
            return ResyncGrant.REFUSED, WRONG
        return (ResyncGrant.PLAIN, None) if trusted else (ResyncGrant.REFUSED, REMOTE)
    if token is None:
        return ResyncGrant.REFUSED, NO_TOKEN
    scheme, _, presented = authorization.strip().partition(" ")
    given = presented.strip().encode("utf-8", "replace")
    if scheme.lower() != "bearer" or not given or not hmac.compare_digest(given, token):
        return ResyncGrant.REFUSED, WRONG
    return ResyncGrant.LIFT, None
