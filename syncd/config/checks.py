"""Start-up checks of a configuration that validated: what pydantic cannot see.

Split from syncd.config.settings (issue 14: modules under ~400 lines) so the settings models stay
one concept and these checks, which touch the file system and sockets, sit apart: whether
CA bundles load at their resolved paths, whether the ops address can be bound, and which
valid settings still expose the app secret.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from syncd.config.settings import CmdbSettings, Settings


class UnusableConfig(ValueError):
    """A validated configuration cannot run here; config.settings makes it ConfigError."""


def _loopback(url: str) -> bool:
    """Does the URL name this machine (the secret never crosses a network)?"""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def security_warnings(cmdb: CmdbSettings) -> list[str]:
    """What in a valid CMDB configuration still exposes the secret; logged once at start."""
    warnings: list[str] = []
    if cmdb.url.lower().startswith("http://") and not _loopback(cmdb.url):
        warnings.append(
            "cmdb.url is plain http://: the app secret crosses the network in clear; use https://"
        )
    elif not cmdb.verify_tls:
        warnings.append(
            "cmdb.verify_tls = false: anyone on the path can pose as the CMDB and read the "
            "app secret; use cmdb.ca_bundle instead"
        )
    return warnings


UNUSED_SETTINGS = {
    "debounce": "hooks.netbox.gather",
    "max_delay": "hooks.netbox.group_max",
}
"""Settings still accepted (configs written for cycle-per-burst webhooks load) that no
longer do anything, and the setting that took over each one's job."""


def unused_settings(settings: Settings) -> list[str]:
    """One warning per setting the file sets that syncd no longer reads; logged at start
    and printed by ``check-config``, so an operator tuning it learns it has no effect."""
    netbox = settings.hooks.netbox
    if netbox is None:
        return []
    return [
        f"hooks.netbox.{name} is set but no longer used: deliveries are applied as they "
        f"come; tune {successor} instead"
        for name, successor in UNUSED_SETTINGS.items()
        if name in netbox.model_fields_set
    ]


def check_usable(settings: Settings) -> None:
    """What a model validator cannot see: files at their resolved paths, the ops address.

    Raises ``UnusableConfig`` with the operator's one line.
    """
    bundles: list[tuple[str, Path | None]] = [("cmdb.ca_bundle", settings.cmdb.ca_bundle)]
    for i, rel in enumerate(settings.relations):
        for j, src in enumerate(rel.source_settings()):
            where = "source" if rel.source is not None else f"sources[{j}]"
            bundle = getattr(src, "ca_bundle", None)
            bundles.append((f"relations[{i}]({rel.name}).{where}.ca_bundle", bundle))
    for where, bundle in bundles:
        if bundle is None:
            continue
        try:
            ssl.create_default_context(cafile=str(bundle))
        except FileNotFoundError:
            raise UnusableConfig(f"config: {where}: {str(bundle)!r} does not exist") from None
        except (OSError, ssl.SSLError, ValueError) as exc:
            why = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
            raise UnusableConfig(
                f"config: {where}: {str(bundle)!r} is not a usable CA bundle: {why}"
            ) from None
    ops = settings.ops
    if ops.enabled:
        try:
            infos = socket.getaddrinfo(
                ops.host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, kind, proto, _, addr = infos[0]
            with socket.socket(family, kind, proto) as probe:
                probe.bind(addr)  # port 0: is the address ours, without taking the real port
        except (OSError, UnicodeError) as exc:
            why = getattr(exc, "strerror", None) or exc
            raise UnusableConfig(
                f"config: ops.host: cannot listen on {ops.host!r}: {why}"
            ) from None
