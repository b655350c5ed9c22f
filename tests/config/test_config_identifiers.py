"""Model and association ids as bk-cmdb allows them, quoted in URL paths; control
characters in names never reach an error line raw."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from yarl import URL

from syncd.cli import main
from syncd.cmdb.apis import Api
from syncd.cmdb.gateway import frame, path_segment
from syncd.core.identifiers import ASSOCIATION_ID_MAX, MODEL_ID_MAX, check_model_id
from syncd.support import log as syncd_log
from syncd.support.printable import escape_controls
from tests.helpers import ASST, load, write_config

URL_ = "http://127.0.0.1:9"
SEARCH = Api("search", "POST", "/api/v3/search/instance_associations/object/{bk_obj_id}")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    saved = structlog.get_config()
    fast = syncd_log._fast
    yield
    structlog.configure(**saved)
    syncd_log._fast = fast


def _config(tmp_path: Path, old: str, new: str) -> Path:
    topo = tmp_path / "t.csv"
    topo.write_text("bk_inst_id,bk_asst_inst_id\n1,1001\n")
    cfg = write_config(tmp_path, URL_, topo)
    text = cfg.read_text()
    assert old in text, old
    cfg.write_text(text.replace(old, new))
    return cfg


def _refused(cfg: Path, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(["check-config", "--config", str(cfg)])
    assert info.value.code == 78
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(
    "bad",
    ["bk_switch/../../x", "bk_switch#frag", "bk_switch?a=1", "bk switch", "1switch", "", "sw-1"],
)
def test_check_config_refuses_an_object_id_bk_cmdb_would_not_allow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    cfg = _config(tmp_path, 'bk_obj_id = "bk_switch"', f'bk_obj_id = "{bad}"')
    line = _refused(cfg, capsys)
    assert "bk_obj_id" in line and "relations[0](switch-host)" in line


@pytest.mark.parametrize("field", ["bk_asst_obj_id", "bk_obj_asst_id"])
def test_the_target_and_association_ids_are_checked_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str
) -> None:
    old = 'bk_asst_obj_id = "host"' if field == "bk_asst_obj_id" else f'bk_obj_asst_id = "{ASST}"'
    value = "host/../x" if field == "bk_asst_obj_id" else f"{ASST}?x"
    cfg = _config(tmp_path, old, f'{field} = "{value}"')
    assert field in _refused(cfg, capsys)


def test_the_length_limits_are_bk_cmdbs() -> None:
    assert check_model_id("a" * MODEL_ID_MAX, "bk_obj_id") == "a" * MODEL_ID_MAX
    with pytest.raises(ValueError, match="128"):
        check_model_id("a" * (MODEL_ID_MAX + 1), "bk_obj_id")
    long_asst = "_".join(["a" * MODEL_ID_MAX] * 3)
    assert len(long_asst) == ASSOCIATION_ID_MAX
    assert check_model_id(long_asst, "bk_obj_asst_id", limit=ASSOCIATION_ID_MAX) == long_asst


def test_control_characters_in_names_are_escaped_in_the_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(
        tmp_path,
        'name = "switch-host"',
        'name = "evil\\u001b[2J\\u001b]0;pwned\\u0007\\nline two\\u202e"',
    )
    line = _refused(cfg, capsys)  # one line: the newline is escaped too
    assert "\x1b" not in line and "\x07" not in line and "\u202e" not in line
    assert "\\x1b[2J" in line and "\\n" in line and "\\u202e" in line


def test_escape_controls_leaves_plain_text_alone() -> None:
    assert escape_controls("relations[0](switch-host).bk_obj_id: é ok") == (
        "relations[0](switch-host).bk_obj_id: é ok"
    )
    assert escape_controls("a\tb\x7f\x9b") == "a\\tb\\x7f\\x9b"


def test_the_api_gateway_path_quotes_every_variable(tmp_path: Path) -> None:
    topo = tmp_path / "t.csv"
    topo.write_text("bk_inst_id,bk_asst_inst_id\n1,1001\n")
    settings = load(write_config(tmp_path, URL_, topo, gateway="apigw"))
    framed = frame(settings.cmdb, SEARCH, {}, {"bk_obj_id": "a/../../../b#c?d=1"})
    url = URL(framed.url)
    assert url.raw_path.startswith(f"/api/bk-cmdb/{settings.cmdb.stage}/api/v3/search/")
    assert url.raw_path.endswith("/object/a%2F..%2F..%2F..%2Fb%23c%3Fd=1")
    assert not url.query_string and not url.fragment
    ok = frame(settings.cmdb, SEARCH, {}, {"bk_obj_id": "bk_switch"})
    assert ok.url.endswith("/api/v3/search/instance_associations/object/bk_switch")
    for dots in (".", ".."):
        with pytest.raises(ValueError, match="path segment"):
            path_segment(dots)
