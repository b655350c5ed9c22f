"""A parser for lldpd's ``lldpcli -f json show neighbors`` output.

lldpd's "json" format (not "json0") folds named elements into object keys, so its
shape depends on the data:

- ``lldp.interface`` is an object ``{"eth0": {...}}`` when there is one neighbour and a
  list of one-key objects ``[{"eth0": {...}}, {"eth1": {...}}]`` when there are more
  (the same local port may appear twice when two neighbours share it);
- ``chassis`` is keyed by the neighbour's system name, ``{"sw1": {"id": ..., ...}}``, or
  holds the fields directly when the neighbour sent no name;
- ``mgmt-ip`` is a string, or a list when the neighbour announced several addresses;
- ``lldp`` itself is ``{}`` or has no ``interface`` when there are no neighbours.

Which end is the relation's source depends on where lldpd runs: on a host each
neighbour is a switch, so facts come out as (neighbour, this host), ``local_side =
"target"``; on a Linux switch one ``lldpcli`` call sees every host cabled to it, so
facts come out as (this switch, neighbour), ``local_side = "source"``.

``lldpcli -f json watch`` prints one such document per change, with ``lldp-added``,
``lldp-updated`` or ``lldp-deleted`` in place of ``lldp``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

NeighborKey = Literal["name", "mgmt_ip", "chassis_id"]
LocalSide = Literal["source", "target"]
WATCH_KINDS = ("lldp-added", "lldp-updated", "lldp-deleted")


class LldpdFormatError(ValueError):
    """The document is not lldpcli's JSON output."""


@dataclass(frozen=True, slots=True)
class Neighbor:
    """One neighbour seen on one local port."""

    local_port: str
    name: str | None
    chassis_id: str | None
    mgmt_ips: tuple[str, ...]
    port_id: str | None
    port_descr: str | None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _text(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("value")
    return value if isinstance(value, str) and value else None


def _chassis(raw: Any) -> tuple[str | None, dict[str, Any]]:
    if not isinstance(raw, dict):
        return None, {}
    # Unnamed chassis: the fields sit right here ("id" is an object with type/value).
    if isinstance(raw.get("id"), dict) and "type" in raw["id"]:
        return None, raw
    if len(raw) == 1:
        name, body = next(iter(raw.items()))
        return str(name), body if isinstance(body, dict) else {}
    return None, raw


def parse_neighbors(doc: Any) -> Iterator[Neighbor]:
    """Every neighbour in a parsed ``lldpcli -f json show neighbors [details]`` document."""
    if not isinstance(doc, dict) or "lldp" not in doc:
        raise LldpdFormatError("no top-level 'lldp' object: is this lldpcli -f json output?")
    lldp = doc["lldp"]
    if isinstance(lldp, list):
        raise LldpdFormatError("this is lldpcli's json0 format; run lldpcli -f json")
    if not isinstance(lldp, dict):
        raise LldpdFormatError("'lldp' is not an object")
    interfaces = lldp.get("interface")
    entries: list[tuple[str, Any]] = []
    if isinstance(interfaces, dict):
        entries = list(interfaces.items())
    elif isinstance(interfaces, list):
        for item in interfaces:
            if not isinstance(item, dict):
                raise LldpdFormatError("an 'interface' list item is not an object")
            entries.extend(item.items())
    elif interfaces is not None:
        raise LldpdFormatError("'lldp.interface' is neither an object nor a list")
    for port, body in entries:
        if not isinstance(body, dict):
            raise LldpdFormatError(f"interface {port!r} is not an object")
        name, chassis = _chassis(body.get("chassis"))
        ips = tuple(ip for ip in (_text(v) for v in _as_list(chassis.get("mgmt-ip"))) if ip)
        raw_port = body.get("port")
        port_info: dict[str, Any] = raw_port if isinstance(raw_port, dict) else {}
        yield Neighbor(
            local_port=str(port),
            name=name,
            chassis_id=_text(chassis.get("id")),
            mgmt_ips=ips,
            port_id=_text(port_info.get("id")),
            port_descr=_text(port_info.get("descr")),
        )


def pick_ip(ips: tuple[str, ...]) -> str | None:
    """The management address a CMDB would know: IPv4 first, then global IPv6, never link-local."""
    parsed = []
    for text in ips:
        try:
            parsed.append(ipaddress.ip_address(text.split("%", 1)[0]))
        except ValueError:
            continue
    for want_v4 in (True, False):
        for ip in parsed:
            if (ip.version == 4) == want_v4 and not ip.is_link_local:
                return str(ip)
    return None


def neighbor_key(neighbor: Neighbor, key: NeighborKey) -> str | None:
    """The switch's key as configured; None when the neighbour did not announce it."""
    if key == "name":
        return neighbor.name
    if key == "mgmt_ip":
        return pick_ip(neighbor.mgmt_ips)
    return neighbor.chassis_id


def orient(local: str, neighbor: str, local_side: LocalSide) -> tuple[str, str]:
    """(source key, target key) of one fact, by which end this machine is."""
    return (local, neighbor) if local_side == "source" else (neighbor, local)


def watch_event(doc: Any) -> tuple[str, list[str]]:
    """(kind, local ports) of one ``lldpcli -f json watch`` document, for the log."""
    if not isinstance(doc, dict) or len(doc) != 1:
        raise LldpdFormatError("a watch event is an object with one key")
    kind, body = next(iter(doc.items()))
    if kind not in WATCH_KINDS:
        raise LldpdFormatError(f"unknown watch event {kind!r}")
    ports = [n.local_port for n in parse_neighbors({"lldp": body})]
    return kind.removeprefix("lldp-"), ports
