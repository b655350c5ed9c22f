"""Build the NetBox webhook bodies in fixtures/netbox/webhooks/ the way NetBox does.

No NetBox ran to make these: each body is what NetBox 4.6/4.7's code produces, derived
from its source (see fixtures/netbox/webhooks/README.md for where each field comes
from) and from the REST objects recorded from a real NetBox 4.7 in cables_dc1.json.
Run from the repository root to rebuild them: ``python tests/sources/make_netbox_webhooks.py``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NETBOX = HERE / "fixtures" / "netbox"
OUT = NETBOX / "webhooks"
RECORDED_BASE = "http://netbox.test"
REQUEST_ID = "3b4c1e0a-6f2d-4d8e-9a51-0c7f2b9e4d21"
TIMESTAMP = "2026-11-30T04:30:12.418265+00:00"


def relative(value: Any) -> Any:
    """serialize_for_event() runs the REST serializer with request=None: URLs are paths."""
    text = json.dumps(value).replace(RECORDED_BASE, "")
    return json.loads(text)


def recorded_cable(cable_id: int) -> dict[str, Any]:
    doc = json.loads((NETBOX / "cables_dc1.json").read_text("utf-8"))
    for ex in doc["exchanges"]:
        if ex["path"] == "/api/dcim/cables/":
            for cable in ex["body"]["results"]:
                if cable["id"] == cable_id:
                    return dict(cable)
    raise KeyError(cable_id)


def new_cable() -> dict[str, Any]:
    """C-012: sw-a eth3 (interface 31) to srv-04 eno2 (interface 32), shaped like C-001."""
    cable = relative(copy.deepcopy(recorded_cable(1)))
    cable.update(id=12, url="/api/dcim/cables/12/", display_url="/dcim/cables/12/")
    cable.update(display="C-012", label="C-012")
    cable["created"] = cable["last_updated"] = "2026-11-30T04:30:12.377104Z"
    for end, (if_id, if_name, dev_id, dev_name) in (
        ("a_terminations", (31, "eth3", 1, "sw-a")),
        ("b_terminations", (32, "eno2", 8, "srv-04")),
    ):
        term = cable[end][0]
        term["object_id"] = if_id
        obj = term["object"]
        obj.update(id=if_id, url=f"/api/dcim/interfaces/{if_id}/", display=if_name, name=if_name)
        obj["device"].update(
            id=dev_id, url=f"/api/dcim/devices/{dev_id}/", display=dev_name, name=dev_name
        )
        obj["cable"].update(id=12, url="/api/dcim/cables/12/", display="C-012", label="C-012")
    return cable


def cable_snapshot(cable: dict[str, Any], terminations: tuple[list[int], list[int]]) -> dict:
    """Cable.serialize_object(): Django's serializer fields in model order, custom_fields
    moved last, tags as sorted names, then the CableTermination pks of each end."""
    return {
        "created": "2026-11-30T04:30:12.377Z",
        "last_updated": "2026-11-30T04:30:12.377Z",
        "owner": None,
        "description": cable["description"],
        "comments": cable["comments"],
        "type": cable["type"],
        "status": cable["status"]["value"],
        "profile": cable["profile"],
        "tenant": None,
        "label": cable["label"],
        "color": cable["color"],
        "length": None,
        "length_unit": None,
        "_abs_length": None,
        "bundle": None,
        "custom_fields": {},
        "tags": sorted(t["name"] for t in cable["tags"]),
        "a_terminations": terminations[0],
        "b_terminations": terminations[1],
    }


def context(
    event: str, object_type: str, data: dict[str, Any], snapshots: dict[str, Any], path: str
) -> dict[str, Any]:
    """extras.webhooks.send_webhook(): the context, in its key order."""
    method = {"created": "POST", "updated": "PATCH", "deleted": "DELETE"}[event]
    return {
        "event": event,
        "timestamp": TIMESTAMP,
        "object_type": object_type,
        "username": "admin",
        "request_id": REQUEST_ID,
        "data": data,
        "request": {"id": REQUEST_ID, "method": method, "path": path, "user": "admin"},
        "snapshots": snapshots,
    }


def body(ctx: dict[str, Any]) -> bytes:
    """Webhook.render_body() without a body template: json.dumps(context, cls=JSONEncoder)
    (DRF's encoder: default separators, ensure_ascii), then .encode('utf8') by send_webhook."""
    return json.dumps(ctx).encode("utf8")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    cable = new_cable()
    snap = cable_snapshot(cable, ([23], [24]))
    bodies = {
        "cable_created": context(
            "created",
            "dcim.cable",
            cable,
            {"prechange": None, "postchange": snap},
            "/api/dcim/cables/",
        ),
        "cable_deleted": context(
            "deleted",
            "dcim.cable",
            cable,
            {"prechange": snap, "postchange": None},
            "/api/dcim/cables/12/",
        ),
        "site_updated": context(
            "updated",
            "dcim.site",
            {
                "id": 1,
                "url": "/api/dcim/sites/1/",
                "display_url": "/dcim/sites/1/",
                "display": "dc1",
                "name": "dc1",
                "slug": "dc1",
                "status": {"value": "active", "label": "Active"},
            },
            {
                "prechange": {"name": "dc1", "slug": "dc1", "description": ""},
                "postchange": {"name": "dc1", "slug": "dc1", "description": "main hall"},
            },
            "/api/dcim/sites/1/",
        ),
    }
    # NetBox before 4.5 also sent "model" (removed by netbox#20088); before 4.4 it had
    # no "object_type" (added by netbox#20029). This is the 4.3 shape.
    legacy = dict(bodies["cable_created"])
    del legacy["object_type"]
    legacy = {"event": legacy["event"], "timestamp": TIMESTAMP, "model": "cable", **legacy}
    bodies["cable_created_netbox43"] = legacy
    for name, ctx in bodies.items():
        (OUT / f"{name}.json").write_bytes(body(ctx))
    # What the test NetBox serves after C-012 was created (the REST object, absolute URLs).
    rest = json.loads(json.dumps(cable).replace('"/api/', f'"{RECORDED_BASE}/api/'))
    rest = json.loads(json.dumps(rest).replace('"/dcim/', f'"{RECORDED_BASE}/dcim/'))
    (OUT / "cable_12_rest.json").write_text(json.dumps(rest, indent=1) + "\n", "utf-8")


if __name__ == "__main__":
    main()
