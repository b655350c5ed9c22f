"""NetBoxSource against responses recorded from a real NetBox 4.7 (see record_netbox.py).

The recordings are replayed by a loopback server that answers only the exact
requests that were recorded, so these tests also pin the queries the source sends.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from pydantic import ValidationError
from src_helpers import load_recording, read_all, replay_netbox

from syncd.sources.base import SourceError
from syncd.sources.netbox import NetBoxSource
from syncd.sources.settings import NetBoxSourceSettings

V1 = "0123456789abcdef0123456789abcdef01234567"
V2 = "nbt_AbCdEfGhIjKl.0123456789abcdef0123456789abcdef01234567"

DC1_NAMES = [
    ("sw-a", "srv-01"),
    ("sw-a", "srv-02"),
    ("sw-b", "srv-02"),
    ("sw-b", "srv-03"),
    ("sw-c", "srv-04"),
    ("sw-c", "srv-05"),
    ("sw-c", "srv-06"),
    ("sw-c", "srv-03"),  # cable C-008 has the server on its A side
]


def make(url: str, name: str, token: str = V1, **over: Any) -> NetBoxSource:
    fields = {**load_recording(name)["recorded_with"], **over}
    settings = NetBoxSourceSettings.model_validate(
        {"type": "netbox", "url": url, "token": token, **fields}
    )
    return NetBoxSource(settings, name=name)


def test_recordings_come_from_netbox_4_7() -> None:
    for name in ("cables_dc1", "interfaces_dc1", "bad_token"):
        assert load_recording(name)["netbox_version"].startswith("4.7")


async def test_cables_mode_site_filter_paged() -> None:
    async with replay_netbox("cables_dc1") as nb:
        src = make(nb.url, "cables_dc1")
        facts = await read_all(src)
    assert [f[:2] for f in facts] == DC1_NAMES
    assert [f[2] for f in facts] == [1, 2, 3, 4, 5, 6, 7, 8]  # cable ids
    assert src.origin(8) == f"{nb.url}/dcim/cables/8/"
    extra = src.stats.extra
    assert extra["pages"] == 6  # 5 cable pages (limit 4, overlapping by one row), 1 device lookup
    assert extra["ignored_switch_to_switch"] == 1  # C-009 sw-a <-> sw-b
    assert extra["ignored_not_interface"] == 2  # C-010 patch panel, C-011 circuit
    assert src.stats.bad == 0
    first = nb.seen[0][0]
    assert first.startswith("/api/dcim/cables/?") and "site=dc1" in first
    assert "status=connected" in first


async def test_tag_filter() -> None:
    async with replay_netbox("cables_dc1_tag_prod") as nb:
        facts = await read_all(make(nb.url, "cables_dc1_tag_prod"))
    assert [f[2] for f in facts] == [1, 2, 3, 5, 7, 8]


async def test_primary_ip_keys_without_prefix_length() -> None:
    async with replay_netbox("cables_all_ip") as nb:
        src = make(nb.url, "cables_all_ip")
        facts = await read_all(src)
    pairs = {f[:2] for f in facts}
    assert ("192.0.2.1", "198.51.100.11") in pairs  # sw-a -> srv-01
    assert ("192.0.2.3", "198.51.100.13") in pairs  # sw-c -> srv-03 (server on side A)
    assert ("192.0.2.4", "198.51.100.17") in pairs  # dc2: no site filter here
    assert all("/" not in str(v) for f in facts for v in f[:2])
    assert len(facts) == 8
    assert src.stats.bad == 1  # srv-06 has no primary IPv4: logged and counted, not emitted


async def test_custom_field_key() -> None:
    async with replay_netbox("cables_dc1_cf") as nb:
        src = make(nb.url, "cables_dc1_cf")
        facts = await read_all(src)
    assert facts[0][:2] == ("sw-a", "host-01.example.net")
    assert "srv-05" not in {f[1] for f in facts} and src.stats.bad == 1


async def test_interfaces_mode_with_link_peers() -> None:
    async with replay_netbox("interfaces_dc1") as nb:
        src = make(nb.url, "interfaces_dc1")
        facts = await read_all(src)
    assert sorted(f[:2] for f in facts) == sorted(DC1_NAMES)
    assert src.origin(facts[0][2]).endswith(f"/dcim/interfaces/{facts[0][2]}/")
    first = nb.seen[0][0]
    assert "device_role=switch" in first and "cabled=true" in first and "connected=true" in first


async def test_interfaces_mode_any_status_skips_patch_panel_and_circuit() -> None:
    async with replay_netbox("interfaces_dc1_any_status") as nb:
        src = make(nb.url, "interfaces_dc1_any_status")
        facts = await read_all(src)
    pairs = sorted(f[:2] for f in facts)
    assert pairs == sorted([*DC1_NAMES, ("sw-c", "srv-01")])  # + the planned cable C-012
    assert src.stats.extra["ignored_not_interface"] == 2  # front port and circuit peers
    assert src.stats.extra["ignored_switch_to_switch"] == 2  # eth48 seen from both switches


async def test_interfaces_mode_host_role_all_sites() -> None:
    async with replay_netbox("interfaces_all_server_role") as nb:
        facts = await read_all(make(nb.url, "interfaces_all_server_role"))
    assert ("sw-d", "srv-07") in {f[:2] for f in facts} and len(facts) == 9


async def test_host_role_filter_drops_other_roles() -> None:
    """Same recording, a host role no device has: every link is skipped (no new request)."""
    async with replay_netbox("cables_dc1") as nb:
        src = make(nb.url, "cables_dc1", host_role=["storage"])
        assert await read_all(src) == []
    assert src.stats.extra["ignored_host_role"] == 8


@pytest.mark.parametrize(
    ("token", "version", "header"),
    [(V1, "auto", f"Token {V1}"), (V2, "auto", f"Bearer {V2}"), (V2, "v1", f"Token {V2}")],
)
async def test_token_versions(token: str, version: str, header: str) -> None:
    async with replay_netbox("cables_dc1") as nb:
        await read_all(make(nb.url, "cables_dc1", token=token, token_version=version))
    assert {h["Authorization"] for _, h in nb.seen} == {header}


async def test_refused_token_is_one_clear_error_without_the_token() -> None:
    async with replay_netbox("bad_token") as nb:
        with pytest.raises(SourceError) as err:
            await read_all(make(nb.url, "bad_token", token=V1))
    text = str(err.value)
    assert "HTTP 403" in text and "Invalid v1 token" in text and "bad_token" in text
    assert V1 not in text


async def test_unrecorded_question_fails_the_read() -> None:
    async with replay_netbox("cables_dc1") as nb:
        with pytest.raises(SourceError, match="HTTP 404"):
            await read_all(make(nb.url, "cables_dc1", site=["dc9"]))


def test_settings() -> None:
    base = {"type": "netbox", "url": "https://netbox.example.com/api/", "token": V1}
    s = NetBoxSourceSettings.model_validate(base)
    assert s.url == "https://netbox.example.com" and s.mode == "cables"
    assert s.switch_role == ["switch"] and s.status == ["connected"]
    with pytest.raises(ValidationError, match="custom_fields"):
        NetBoxSourceSettings.model_validate({**base, "host_key": "hostname"})
    with pytest.raises(ValidationError, match="interfaces mode"):
        NetBoxSourceSettings.model_validate({**base, "mode": "interfaces", "status": ["planned"]})
    NetBoxSourceSettings.model_validate({**base, "host_key": "custom_fields.cmdb_name"})


async def test_live_netbox() -> None:
    """Optional: a real NetBox (SYNCD_NETBOX_URL, SYNCD_NETBOX_TOKEN), seeded or not."""
    url, token = os.environ.get("SYNCD_NETBOX_URL"), os.environ.get("SYNCD_NETBOX_TOKEN")
    if not url or not token:
        pytest.skip("optional live test: set SYNCD_NETBOX_URL and SYNCD_NETBOX_TOKEN")
    for mode in ("cables", "interfaces"):
        settings = NetBoxSourceSettings.model_validate(
            {"type": "netbox", "url": url, "token_env": "SYNCD_NETBOX_TOKEN", "mode": mode}
        )
        src = NetBoxSource(settings, name="live")
        facts = await read_all(src)
        assert all(isinstance(f[0], str) and isinstance(f[1], str) for f in facts)
        assert src.stats.extra["pages"] >= 1
        if os.environ.get("SYNCD_NETBOX_SEEDED"):  # data from record_netbox.py --seed
            assert {("sw-a", "srv-01"), ("sw-d", "srv-07")} <= {f[:2] for f in facts}
