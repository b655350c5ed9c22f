"""``python -m cmdb_simulator`` stops at once on SIGTERM, even with a watch held open
(bk-cmdb holds a quiet watch 20 s; the simulator used to wait for it)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BOUND = 5.0
"""Well under the 20 s hold the stop used to wait for (it takes well under a second)."""


def _watch(url: str, **body: Any) -> dict[str, Any]:
    doc = {
        "bk_app_code": "syncd",
        "bk_app_secret": "change-me",
        "bk_username": "admin",
        "bk_resource": "inst_asst",
        "bk_event_types": ["create", "delete"],
        "bk_fields": ["bk_obj_id"],
        **body,
    }
    req = urllib.request.Request(
        f"{url}/api/c/compapi/v2/cc/resource_watch/", data=json.dumps(doc).encode(), method="POST"
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
    return answer


def test_sigterm_ends_the_simulator_with_a_watch_held_open() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cmdb_simulator", "--listen", "127.0.0.1:0",
         "--fixture", "config/demo/fixture.yaml"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = json.loads(proc.stdout.readline())["url"]
        cursor = _watch(url)["data"]["bk_events"][0]["bk_cursor"]
        held: list[object] = []

        def hold() -> None:
            try:
                held.append(_watch(url, bk_cursor=cursor))
            except (urllib.error.URLError, ConnectionError) as exc:
                held.append(exc)

        thread = threading.Thread(target=hold, daemon=True)
        thread.start()
        time.sleep(0.5)
        assert not held  # the watch is being held
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert time.monotonic() - began < BOUND
        thread.join(10)
        assert held  # the held request was ended, not left hanging
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
