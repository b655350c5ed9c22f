"""Who may lift a prune guard through ``POST /resync``: the bearer of the resync token.

A resync from the CMDB is harmless and anyone local may ask for one. Lifting the prune
guards (the shrink and empty-source guards) is the operator's word that a smaller
source is meant, after which the next cycle may delete pairs: it takes ``SIGHUP`` (the
service's own user or root) or this endpoint with ``Authorization: Bearer <token>``, the
token from ``ops.resync_token_file`` or the systemd credential ``resync_token``. With no
token configured the endpoint never lifts a guard. Tokens are compared in constant time
and never logged.
"""

from __future__ import annotations

import hmac
from enum import StrEnum

from pydantic import SecretStr


class ResyncGrant(StrEnum):
    """What a ``POST /resync`` may do."""

    PLAIN = "plain"
    """No credential: a resync; the guards stay."""
    LIFT = "lift"
    """The right token: a resync that also lifts the prune guards."""
    REFUSED = "refused"
    """A credential that is wrong, malformed, or cannot be checked (no token configured)."""


def grant(authorization: str | None, token: SecretStr | None) -> ResyncGrant:
    """Decide from the request's ``Authorization`` header and the configured token."""
    if authorization is None:
        return ResyncGrant.PLAIN
    scheme, _, presented = authorization.strip().partition(" ")
    if token is None or scheme.lower() != "bearer" or not presented.strip():
        return ResyncGrant.REFUSED
    expected = token.get_secret_value().encode("utf-8")
    given = presented.strip().encode("utf-8", "surrogateescape")
    return ResyncGrant.LIFT if hmac.compare_digest(given, expected) else ResyncGrant.REFUSED


REFUSAL = {
    True: "the resync token does not match; nothing was done",
    False: "no resync token is configured (ops.resync_token_file or the systemd credential "
    "resync_token), so this endpoint cannot lift prune guards; nothing was done. SIGHUP "
    "lifts them, a request without credentials resyncs without lifting them",
}
"""Why a request was refused, by whether a token is configured (never the token)."""
