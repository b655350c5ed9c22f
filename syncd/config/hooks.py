"""The listeners' settings: the ops server (``[ops]``) and pushed changes (``[hooks]``).

Secrets here (the webhook's, the resync token) come from the value, a file, or a systemd
credential, and are ``SecretStr`` from then on.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from syncd.support.secretfile import read_credential
from syncd.support.sections import _Section

__all__ = ["HooksSettings", "NetBoxHookSettings", "OpsSettings", "split_listen"]


class OpsSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535)
    pidfile: Path | None = None
    resync_token: SecretStr | None = None
    resync_token_file: Path | None = Field(
        None,
        description="POST /resync then needs 'Authorization: Bearer <token>'; "
        "required when ops.host is not a loopback address",
    )

    @model_validator(mode="after")
    def _load_token(self) -> OpsSettings:
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        credential = Path(creds) / "resync_token" if creds else None
        if self.resync_token is None and (
            self.resync_token_file is not None or (credential is not None and credential.is_file())
        ):
            # Optional: the file, else the systemd credential resync_token when present.
            self.resync_token = SecretStr(
                read_credential(self.resync_token_file, "resync_token", "ops.resync_token")
            )
        if self.resync_token is not None and not self.resync_token.get_secret_value():
            raise ValueError("ops.resync_token is empty")
        return self


class NetBoxHookSettings(_Section):
    """``POST /hooks/netbox``: a signed NetBox webhook starts a cycle (syncd.runtime.webhooks)."""

    secret: SecretStr | None = None
    secret_file: Path | None = None
    url: str | None = Field(
        None, description="the NetBox it belongs to (base URL); default: every netbox relation"
    )
    max_body: int = Field(1024 * 1024, ge=1024, description="bytes of a payload at most")
    debounce: float = Field(0.5, gt=0, le=1, description="unused (a warning at start): see gather")
    max_delay: float = Field(
        30, gt=0, le=600, description="unused (a warning at start): see group_max"
    )
    """Accepted (and checked) so that configs written for cycle-per-burst webhooks load."""
    gather: float = Field(
        0.05, ge=0, le=1, description="seconds a first change waits for its companions"
    )
    group_max: int = Field(100, ge=1, le=10_000, description="cables and devices a group at most")
    replay_window: float = Field(
        600, ge=0, description="seconds an identical delivery is recognised as a replay"
    )
    prune_at_once: bool = Field(
        True, description="a deleted cable's owned pair is pruned at once (pruning on)"
    )
    retry_base: float = Field(1.0, gt=0, description="first retry of a failed push, seconds")
    retry_cap: float = Field(60.0, gt=0, description="longest wait between push retries")

    @model_validator(mode="after")
    def _load_secret(self) -> NetBoxHookSettings:
        if self.secret is None:
            self.secret = SecretStr(
                read_credential(self.secret_file, "netbox_webhook_secret", "hooks.netbox.secret")
            )
        if not self.secret.get_secret_value():
            raise ValueError("hooks.netbox.secret is empty")
        return self

    def owns(self, netbox_url: str) -> bool:
        """Whether a relation reading ``netbox_url`` is started by this webhook."""
        if self.url is None:
            return True
        mine = self.url.rstrip("/").removesuffix("/api")
        return netbox_url.rstrip("/").removesuffix("/api") == mine


class HooksSettings(_Section):
    """Sources that push changes: on the ops server, or on a listener of their own."""

    listen: str | None = Field(
        None, description="host:port of a webhook-only listener (ops endpoints stay apart)"
    )
    netbox: NetBoxHookSettings | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            split_listen(value)
        return value

    def address(self) -> tuple[str, int] | None:
        return split_listen(self.listen) if self.listen is not None else None


def split_listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) -> (host, port), or ValueError naming what is wrong."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r} is not host:port (port 0..65535)")
    return host, int(port)
