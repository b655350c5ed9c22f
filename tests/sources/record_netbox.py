"""Seed a real NetBox 4.x with a small switch/server topology and record what NetBoxSource asks.

The NetBox tests replay these recordings from a loopback server, so they stay faithful
to a real NetBox without needing one. Re-record after a NetBox upgrade or when
NetBoxSource starts asking something new:

1. Run a NetBox 4.7 (e.g. ``pip install 'netbox==4.7.*'`` into a Python 3.12 venv, with
   PostgreSQL and Redis; ``netbox setup --target DIR``, fill ``DIR/conf/configuration.py``,
   ``NETBOX_ROOT=DIR netbox migrate``, ``netbox runserver 127.0.0.1:8000``) and make an
   API token with write permission (v1 or v2).
2. ``SYNCD_NETBOX_TOKEN=... .venv/bin/python tests/sources/record_netbox.py \\
   --url http://127.0.0.1:8000 --seed``
   ``--seed`` creates the sample data (idempotent: existing objects are reused).
3. Review the diff of ``tests/sources/fixtures/netbox/`` and run the tests.

Each scenario in ``SCENARIOS`` is run through the real ``NetBoxSource`` behind a recording
proxy on loopback; every GET is saved with its path, query and JSON body. The token never
reaches the recordings (only response bodies are stored).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "netbox"

# Scenario name -> NetBoxSourceSettings fields (url and token are added at run time).
# page_size is small on purpose so that every scenario pages through ``next`` links.
SCENARIOS: dict[str, dict[str, Any]] = {
    "cables_dc1": {"mode": "cables", "site": ["dc1"], "page_size": 4},
    "cables_dc1_tag_prod": {"mode": "cables", "site": ["dc1"], "tag": ["prod"], "page_size": 4},
    "cables_all_ip": {
        "mode": "cables",
        "page_size": 5,
        "switch_key": "primary_ip",
        "host_key": "primary_ip4",
    },
    "cables_dc1_cf": {
        "mode": "cables",
        "site": ["dc1"],
        "page_size": 50,
        "host_key": "custom_fields.cmdb_name",
    },
    "interfaces_dc1": {"mode": "interfaces", "site": ["dc1"], "page_size": 4},
    "interfaces_dc1_any_status": {
        "mode": "interfaces",
        "site": ["dc1"],
        "status": [],
        "page_size": 50,
    },
    "interfaces_all_server_role": {
        "mode": "interfaces",
        "host_role": ["server"],
        "page_size": 50,
    },
}


# --- seeding ------------------------------------------------------------------------------


class Api:
    """A tiny synchronous NetBox REST client for seeding (stdlib only)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        scheme = "Bearer" if token.startswith("nbt_") else "Token"
        self.headers = {
            "Authorization": f"{scheme} {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers=self.headers
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                text = resp.read()
        except urllib.error.HTTPError as exc:
            raise SystemExit(f"{method} {path}: HTTP {exc.code}: {exc.read()[:500]!r}") from None
        return json.loads(text) if text else None

    def get_or_create(self, path: str, lookup: dict[str, Any], body: dict[str, Any]) -> Any:
        query = "&".join(f"{k}={v}" for k, v in lookup.items())
        found = self.request("GET", f"{path}?{query}")["results"]
        if found:
            return found[0]
        return self.request("POST", path, body)


def seed(api: Api) -> None:
    """Two sites, 4 switches, 7 servers, a patch panel, a circuit, tags and cables."""
    tags = {}
    for slug in ("prod", "lab"):
        tags[slug] = api.get_or_create(
            "/api/extras/tags/", {"slug": slug}, {"name": slug, "slug": slug}
        )["id"]
    api.get_or_create(
        "/api/extras/custom-fields/",
        {"name": "cmdb_name"},
        {"name": "cmdb_name", "type": "text", "object_types": ["dcim.device"]},
    )
    sites = {}
    for slug in ("dc1", "dc2"):
        sites[slug] = api.get_or_create(
            "/api/dcim/sites/", {"slug": slug}, {"name": slug.upper(), "slug": slug}
        )["id"]
    maker = api.get_or_create(
        "/api/dcim/manufacturers/", {"slug": "generic"}, {"name": "Generic", "slug": "generic"}
    )["id"]
    types = {}
    for slug in ("switch-48p", "server-1u", "patch-panel-24"):
        types[slug] = api.get_or_create(
            "/api/dcim/device-types/",
            {"slug": slug},
            {"manufacturer": maker, "model": slug, "slug": slug},
        )["id"]
    roles = {}
    for slug, color in (("switch", "2196f3"), ("server", "4caf50"), ("patch-panel", "9e9e9e")):
        roles[slug] = api.get_or_create(
            "/api/dcim/device-roles/",
            {"slug": slug},
            {"name": slug.replace("-", " ").title(), "slug": slug, "color": color},
        )["id"]

    def device(name: str, role: str, dtype: str, site: str, ip: str | None, cf: str | None) -> int:
        dev = api.get_or_create(
            "/api/dcim/devices/",
            {"name": name},
            {
                "name": name,
                "role": roles[role],
                "device_type": types[dtype],
                "site": sites[site],
                "custom_fields": {"cmdb_name": cf} if cf else {},
            },
        )
        if ip and not dev.get("primary_ip4"):
            mgmt = api.get_or_create(
                "/api/dcim/interfaces/",
                {"device_id": dev["id"], "name": "mgmt0"},
                {"device": dev["id"], "name": "mgmt0", "type": "1000base-t", "mgmt_only": True},
            )
            addr = api.get_or_create(
                "/api/ipam/ip-addresses/",
                {"address": ip},
                {
                    "address": ip,
                    "assigned_object_type": "dcim.interface",
                    "assigned_object_id": mgmt["id"],
                },
            )
            api.request("PATCH", f"/api/dcim/devices/{dev['id']}/", {"primary_ip4": addr["id"]})
        return int(dev["id"])

    devs: dict[str, int] = {}
    for i, (name, site) in enumerate(
        (("sw-a", "dc1"), ("sw-b", "dc1"), ("sw-c", "dc1"), ("sw-d", "dc2")), start=1
    ):
        devs[name] = device(name, "switch", "switch-48p", site, f"192.0.2.{i}/24", None)
    for i in range(1, 8):
        name = f"srv-{i:02d}"
        site = "dc2" if i == 7 else "dc1"
        ip = None if i == 6 else f"198.51.100.{10 + i}/24"  # srv-06 has no primary IP
        cf = f"host-{i:02d}.example.net" if i != 5 else None  # srv-05 has no cmdb_name
        devs[name] = device(name, "server", "server-1u", site, ip, cf)
    devs["pp-1"] = device("pp-1", "patch-panel", "patch-panel-24", "dc1", None, None)

    def iface(dev: str, name: str) -> int:
        return int(
            api.get_or_create(
                "/api/dcim/interfaces/",
                {"device_id": devs[dev], "name": name},
                {"device": devs[dev], "name": name, "type": "10gbase-x-sfpp"},
            )["id"]
        )

    rear = api.get_or_create(
        "/api/dcim/rear-ports/",
        {"device_id": devs["pp-1"], "name": "rear1"},
        {"device": devs["pp-1"], "name": "rear1", "type": "lc", "positions": 24},
    )["id"]
    front = api.get_or_create(
        "/api/dcim/front-ports/",
        {"device_id": devs["pp-1"], "name": "front1"},
        {
            "device": devs["pp-1"],
            "name": "front1",
            "type": "lc",
            "rear_ports": [{"position": 1, "rear_port": rear, "rear_port_position": 1}],
        },
    )["id"]
    provider = api.get_or_create(
        "/api/circuits/providers/", {"slug": "isp"}, {"name": "ISP", "slug": "isp"}
    )["id"]
    ctype = api.get_or_create(
        "/api/circuits/circuit-types/", {"slug": "transit"}, {"name": "Transit", "slug": "transit"}
    )["id"]
    circuit = api.get_or_create(
        "/api/circuits/circuits/",
        {"cid": "TRANSIT-1"},
        {"cid": "TRANSIT-1", "provider": provider, "type": ctype},
    )["id"]
    cterm = api.get_or_create(
        "/api/circuits/circuit-terminations/",
        {"circuit_id": circuit, "term_side": "A"},
        {
            "circuit": circuit,
            "term_side": "A",
            "termination_type": "dcim.site",
            "termination_id": sites["dc1"],
        },
    )["id"]

    # (a side, b side, status, tags); a side is an (object type, id).
    def ifc(dev: str, name: str) -> tuple[str, int]:
        return ("dcim.interface", iface(dev, name))

    cables: list[tuple[str, tuple[str, int], tuple[str, int], str, list[str]]] = [
        ("C-001", ifc("sw-a", "eth1"), ifc("srv-01", "eno1"), "connected", ["prod"]),
        ("C-002", ifc("sw-a", "eth2"), ifc("srv-02", "eno1"), "connected", ["prod"]),
        ("C-003", ifc("sw-b", "eth1"), ifc("srv-02", "eno2"), "connected", ["prod"]),
        ("C-004", ifc("sw-b", "eth2"), ifc("srv-03", "eno1"), "connected", ["lab"]),
        ("C-005", ifc("sw-c", "eth1"), ifc("srv-04", "eno1"), "connected", ["prod"]),
        ("C-006", ifc("sw-c", "eth2"), ifc("srv-05", "eno1"), "connected", []),
        ("C-007", ifc("sw-c", "eth3"), ifc("srv-06", "eno1"), "connected", ["prod"]),
        # The server on the A side: the source must still put the switch first.
        ("C-008", ifc("srv-03", "eno2"), ifc("sw-c", "eth5"), "connected", ["prod"]),
        # Switch to switch uplink: not a switch->host fact.
        ("C-009", ifc("sw-a", "eth48"), ifc("sw-b", "eth48"), "connected", ["prod"]),
        # A switch to a patch panel front port and to a circuit: ignored.
        ("C-010", ifc("sw-a", "eth7"), ("dcim.frontport", int(front)), "connected", ["prod"]),
        (
            "C-011",
            ifc("sw-b", "eth7"),
            ("circuits.circuittermination", int(cterm)),
            "connected",
            [],
        ),
        # Planned, not yet in place: ignored by the default status filter.
        ("C-012", ifc("sw-c", "eth4"), ifc("srv-01", "eno2"), "planned", ["prod"]),
        ("C-013", ifc("sw-d", "eth1"), ifc("srv-07", "eno1"), "connected", ["prod"]),
    ]
    for label, (a_type, a_id), (b_type, b_id), status, cable_tags in cables:
        api.get_or_create(
            "/api/dcim/cables/",
            {"label": label},
            {
                "label": label,
                "status": status,
                "a_terminations": [{"object_type": a_type, "object_id": a_id}],
                "b_terminations": [{"object_type": b_type, "object_id": b_id}],
                "tags": [{"id": tags[t]} for t in cable_tags],
            },
        )
    print(f"seeded {len(devs)} devices and {len(cables)} cables", file=sys.stderr)


# --- recording ----------------------------------------------------------------------------

PLACEHOLDER = "http://netbox.test"
"""Recorded bodies name this origin; the replay server puts its own URL in its place."""


async def record_all(url: str, token: str, out: Path) -> None:
    """Run every scenario through NetBoxSource behind a recording proxy; write one file each."""
    import aiohttp
    from aiohttp import web

    from syncd.sources.base import SourceError
    from syncd.sources.netbox import NetBoxSource
    from syncd.sources.settings import NetBoxSourceSettings

    upstream = url.rstrip("/")
    exchanges: list[dict[str, Any]] = []
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        headers = {"Accept": "application/json", "Host": request.host}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        async with session.get(upstream + request.path_qs, headers=headers) as resp:
            raw = await resp.read()
            status = resp.status
            ctype = resp.headers.get("Content-Type", "application/json")
        origin = f"{request.scheme}://{request.host}"
        text = raw.decode("utf-8").replace(origin, PLACEHOLDER)
        exchanges.append(
            {
                "method": request.method,
                "path": request.path,
                "query": sorted(request.query.items()),
                "status": status,
                "body": json.loads(text),
            }
        )
        return web.Response(body=raw, status=status, content_type=ctype.split(";")[0])

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    proxy = f"http://127.0.0.1:{port}"
    version = "unknown"
    try:
        async with session.get(
            upstream + "/api/status/", headers={"Authorization": _auth(token)}
        ) as resp:
            version = (await resp.json()).get("netbox-version", "unknown")
        runs = [(name, fields, token) for name, fields in SCENARIOS.items()]
        runs.append(("bad_token", {"mode": "cables", "site": ["dc1"]}, "0123456789abcdef" * 2))
        for name, fields, tok in runs:
            exchanges.clear()
            settings = NetBoxSourceSettings.model_validate(
                {"type": "netbox", "url": proxy, "token": tok, **fields}
            )
            source = NetBoxSource(settings, name=name)
            facts: list[Any] = []
            error = None
            try:
                async for chunk in source.facts():
                    facts.extend(chunk)
            except SourceError as exc:
                error = str(exc).replace(proxy, PLACEHOLDER)
            doc = {
                "netbox_version": version,
                "recorded_with": fields,
                "exchanges": exchanges,
                "facts_at_recording": [list(f) for f in facts],
                "error_at_recording": error,
            }
            path = out / f"{name}.json"
            path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")
            print(f"{path}: {len(exchanges)} requests, {len(facts)} facts", file=sys.stderr)
    finally:
        await runner.cleanup()
        await session.close()


def _auth(token: str) -> str:
    return f"{'Bearer' if token.startswith('nbt_') else 'Token'} {token}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("SYNCD_NETBOX_URL", ""))
    parser.add_argument("--token-env", default="SYNCD_NETBOX_TOKEN")
    parser.add_argument("--seed", action="store_true", help="create the sample data first")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--out", type=Path, default=FIXTURES)
    args = parser.parse_args(argv)
    token = os.environ.get(args.token_env, "")
    if not args.url or not token:
        parser.error(f"need --url (or SYNCD_NETBOX_URL) and the token in ${args.token_env}")
    if args.seed:
        seed(Api(args.url, token))
    if not args.no_record:
        args.out.mkdir(parents=True, exist_ok=True)
        asyncio.run(record_all(args.url, token, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
