"""Add to each NetBox recording the answers to the pages NetBoxSource asks for now.

The recordings (record_netbox.py) hold what a real NetBox 4.7.3 answered to the queries
NetBoxSource made then: ``next`` links, every field. NetBoxSource now asks for only the
fields it uses (``fields=``, NetBox >= 4.0) and fetches pages concurrently by
``offset``/``limit``. Those answers are derived here from the recorded rows by the
stand-in in bench/netbox_standin.py, which pages and selects fields the way NetBox's
code does (NetBoxPagination; BaseModelSerializer drops the top-level fields not asked
for, nested objects keep their brief form). Derived exchanges carry ``"derived": true``;
the recorded ones are kept unchanged. A refused token is refused whatever the query, so
its recorded answer is copied to the new first query.

    .venv/bin/python tests/sources/derive_netbox_fixtures.py

Fails if a scenario's facts differ from the facts at recording.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent)]

from bench.netbox_standin import PLACEHOLDER, recorded_rows, serve_standin  # noqa: E402
from syncd.sources.netbox import NetBoxSource  # noqa: E402
from syncd.sources.settings import NetBoxSourceSettings  # noqa: E402

FIXTURES = HERE / "fixtures" / "netbox"
TOKEN = "0123456789abcdef0123456789abcdef01234567"


def _key(ex: dict[str, Any]) -> tuple[str, str]:
    return ex["path"], json.dumps(sorted(ex["query"]))


async def derive(name: str) -> None:
    path = FIXTURES / f"{name}.json"
    doc = json.loads(path.read_text("utf-8"))
    recorded = [ex for ex in doc["exchanges"] if not ex.get("derived")]
    settings = {"type": "netbox", "token": TOKEN, **doc["recorded_with"]}
    new: list[dict[str, Any]] = []
    if doc["error_at_recording"]:
        source = NetBoxSource(
            NetBoxSourceSettings.model_validate({**settings, "url": "http://127.0.0.1:9"}),
            name=name,
        )
        url = source._list_url(min(source.settings.page_size, 50))
        query = sorted([k, v] for k, v in _query(url))
        new = [{**recorded[0], "query": query, "derived": True}]
    else:
        async with serve_standin(recorded_rows(name)) as nb:
            nb.cost_ms = 0
            source = NetBoxSource(
                NetBoxSourceSettings.model_validate({**settings, "url": nb.url}), name=name
            )
            facts = [list(f) async for chunk in source.facts() for f in chunk]
            if facts != doc["facts_at_recording"]:
                raise SystemExit(f"{name}: facts differ from the recording: {facts}")
            known = {_key(ex) for ex in recorded}
            for ex in nb.exchanges:
                if _key(ex) not in known:
                    known.add(_key(ex))
                    body = json.loads(json.dumps(ex["body"]).replace(nb.url, PLACEHOLDER))
                    new.append({**ex, "body": body, "derived": True})
    doc["exchanges"] = recorded + new
    path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"{path.name}: {len(new)} derived exchanges", file=sys.stderr)


def _query(url: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl, urlsplit

    return parse_qsl(urlsplit(url).query)


async def main() -> None:
    for path in sorted(FIXTURES.glob("*.json")):
        await derive(path.stem)


if __name__ == "__main__":
    asyncio.run(main())
