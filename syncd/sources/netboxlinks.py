"""A NetBox cable or switch interface reduced to the devices at its two ends, and the
device attributes (role, IPs, custom fields) that name those devices. Pure.

Its own module because reading NetBox's JSON rows is apart from reading its API
(:mod:`syncd.sources.netbox`): every row is checked here, and a row of the wrong
shape gives no link rather than an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from syncd.sources.base import RawValue

_IP_KEYS = ("primary_ip", "primary_ip4", "primary_ip6", "oob_ip")


@dataclass(slots=True)
class Link:
    """One cable (or switch interface) reduced to the devices at its two ends."""

    record: int
    a: list[int]
    b: list[int]
    other_ends: int
    """Ends that are not interfaces (patch panels, circuits, ...)."""


def device_key(device: dict[str, Any], key: str) -> RawValue:
    """The attribute that names a device in the CMDB; None when the device has none."""
    if key in _IP_KEYS:
        ip = device.get(key)
        address = ip.get("address") if isinstance(ip, dict) else None
        return address.split("/", 1)[0] if isinstance(address, str) and address else None
    if key.startswith("custom_fields."):
        fields = device.get("custom_fields")
        value = fields.get(key.split(".", 1)[1]) if isinstance(fields, dict) else None
    else:
        value = device.get(key)
    if value is None or value == "" or not isinstance(value, str | int | float):
        return None
    return value


def device_role(device: dict[str, Any] | None) -> str | None:
    """A device's role slug; None when it has none."""
    role = device.get("role") if device else None
    slug = role.get("slug") if isinstance(role, dict) else None
    return slug if isinstance(slug, str) else None


def _device_id(obj: Any) -> int | None:
    device = obj.get("device") if isinstance(obj, dict) else None
    ident = device.get("id") if isinstance(device, dict) else None
    return ident if isinstance(ident, int) else None


def _ends(terminations: Any) -> tuple[list[int], int]:
    devices: list[int] = []
    other = 0
    for term in terminations if isinstance(terminations, list) else ():
        if not isinstance(term, dict) or term.get("object_type") != "dcim.interface":
            other += 1
            continue
        ident = _device_id(term.get("object"))
        if ident is None:
            other += 1
        elif ident not in devices:
            devices.append(ident)
    return devices, other


def cable_link(row: Any) -> Link | None:
    """A cable row's two ends; None for a malformed row."""
    if not isinstance(row, dict) or not isinstance(row.get("id"), int):
        return None
    a, other_a = _ends(row.get("a_terminations"))
    b, other_b = _ends(row.get("b_terminations"))
    return Link(row["id"], a, b, other_a + other_b)


def interface_link(row: Any) -> Link | None:
    """A switch interface row's own device and its link peers' devices; None for a
    malformed row."""
    if not isinstance(row, dict) or not isinstance(row.get("id"), int):
        return None
    own = _device_id(row)
    peers: list[int] = []
    other = 0
    if row.get("link_peers_type") != "dcim.interface":
        other = max(1, len(row.get("link_peers") or ()))
    else:
        for peer in row.get("link_peers") or ():
            ident = _device_id(peer)
            if ident is None:
                other += 1
            elif ident not in peers:
                peers.append(ident)
    return Link(row["id"], [own] if own is not None else [], peers, other)
