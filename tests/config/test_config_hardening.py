"""Everything wrong at start is one line naming the field, exit 78 (check-config too);
an ops port already taken is one line and exit 75."""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from syncd.cli import main
from syncd.config.load import load_settings
from syncd.config.settings import ConfigError
from syncd.support import log as syncd_log
from tests.helpers import ASST, write_config

URL = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """main() configures structlog onto this test's captured stdout; undo that after."""
    saved = structlog.get_config()
    fast = syncd_log._fast
    yield
    structlog.configure(**saved)
    syncd_log._fast = fast


def config(tmp_path: Path, *, replace: dict[str, str] | None = None, **kw: object) -> Path:
    topo = tmp_path / "t.csv"
    topo.write_text("bk_inst_id,bk_asst_inst_id\n1,1001\n")
    cfg = write_config(tmp_path, URL, topo, **kw)  # type: ignore[arg-type]
    text = cfg.read_text()
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    cfg.write_text(text)
    return cfg


def refused(cfg: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """check-config exits 78 with exactly one line on stderr; that line."""
    with pytest.raises(SystemExit) as info:
        main(["check-config", "--config", str(cfg)])
    assert info.value.code == 78
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("rate_limit = 200", "rate_limit = inf", "cmdb.rate_limit"),
        ("rate_limit = 200", "rate_limit = nan", "cmdb.rate_limit"),
        ("interval = 0.2", "interval = inf", "sync.interval"),
        ("retry_cap = 0.2", "retry_cap = 0.001", "retry_base (0.01) is larger than retry_cap"),
        (f'url = "{URL}"', 'url = "http://127.0.0.1:99999"', "cmdb.url: the port in the URL"),
        (f'url = "{URL}"', 'url = "http://127.0.0.1:0/x"', "cmdb.url: the port in the URL"),
    ],
)
def test_bad_numbers_and_urls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, field: str
) -> None:
    line = refused(config(tmp_path, replace={old: new}), capsys)
    assert field in line


def test_a_source_url_with_a_bad_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path)
    text = cfg.read_text()
    start = text.index("source = {")
    end = text.index("\n", start)
    text = text[:start] + 'source = { type = "http", url = "https://nb:70000/api" }' + text[end:]
    cfg.write_text(text)
    assert "relations[0](switch-host).source.http.url" in refused(cfg, capsys)


def test_garbage_json_in_the_environment_names_the_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(tmp_path)
    for var in ("SYNCD_CMDB", "SYNCD_RELATIONS"):
        monkeypatch.setenv(var, "{not json")
        assert f"environment variable {var} is not valid JSON" in refused(cfg, capsys)
        monkeypatch.delenv(var)


def test_a_bad_relation_from_the_environment_is_blamed_by_its_own_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(tmp_path)
    cfg.write_text(cfg.read_text().replace('name = "switch-host"', 'name = "toml-0"'))
    good = {
        "name": "env-0",
        "bk_obj_id": "bk_switch",
        "bk_asst_obj_id": "host",
        "bk_obj_asst_id": ASST,
        "source": {"type": "file", "path": "t.csv"},
    }
    bad = {**good, "name": "env-1", "bk_obj_asst_id": "nope"}
    monkeypatch.setenv("SYNCD_RELATIONS", json.dumps([good, bad]))
    line = refused(cfg, capsys)
    assert "relations[1](env-1)" in line and "(from SYNCD_RELATIONS)" in line
    assert "toml" not in line


def test_ca_bundle_missing_or_garbage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(config(tmp_path, cmdb_extra='ca_bundle = "nope.pem"'), capsys)
    assert "cmdb.ca_bundle" in line and "does not exist" in line
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    line = refused(config(tmp_path, cmdb_extra='ca_bundle = "bad.pem"'), capsys)
    assert "cmdb.ca_bundle" in line and "not a usable CA bundle" in line


@pytest.mark.parametrize("host", ["192.0.2.1", "no such host!"])
def test_an_unusable_ops_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], host: str
) -> None:
    cfg = config(tmp_path, replace={"[ops]\nenabled = false": f'[ops]\nhost = "{host}"'})
    line = refused(cfg, capsys)
    assert "ops.host" in line and host in line


def secret_config(tmp_path: Path, secret_file: Path) -> Path:
    return config(
        tmp_path,
        replace={'app_secret = "s3cret-app"': f'app_secret_file = "{secret_file}"'},
    )


def test_a_secret_file_that_is_not_utf8_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\xff\xfe\x00bad")
    line = refused(secret_config(tmp_path, secret), capsys)
    assert "cmdb" in line and str(secret) in line and "not UTF-8" in line


def test_a_fifo_or_device_secret_file_is_refused_without_blocking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "secret.fifo"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        line = refused(secret_config(tmp_path, path), capsys)
        assert str(path) in line and "not a regular file" in line


def test_a_good_secret_file_still_loads(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret-app\n")
    settings = load_settings(secret_config(tmp_path, secret))
    assert settings.cmdb.secret() == "s3cret-app"
    with pytest.raises(ConfigError):
        load_settings(config(tmp_path, replace={"rate_limit = 200": "rate_limit = inf"}))


def test_check_config_warns_about_plain_http_off_this_machine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path, replace={f'url = "{URL}"': 'url = "http://cmdb.example"'})
    assert main(["check-config", "--config", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert "warning: cmdb.url is plain http://" in err and "s3cret" not in err


def test_an_ops_port_in_use_is_one_line_and_exit_75(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        cfg = config(
            tmp_path,
            replace={"[ops]\nenabled = false": f'[ops]\nhost = "127.0.0.1"\nport = {port}'},
        )
        assert main(["run", "--config", str(cfg)]) == 75
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "in use" in err[0]
    assert err[0].startswith(f"syncd: ops server cannot listen on 127.0.0.1:{port}: ")


def test_check_config_does_not_warn_about_loopback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", "--config", str(config(tmp_path))]) == 0
    assert "warning" not in capsys.readouterr().err


def test_check_config_warns_about_a_setting_that_no_longer_acts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    netbox = '{ type = "netbox", url = "https://netbox.example/api/", token = "%s" }' % ("t" * 40)
    cfg = config(tmp_path, replace={"[ops]\nenabled = false": "[ops]\nport = 0"})
    text = re.sub(r'source = \{ type = "file"[^\n]*', f"source = {netbox}", cfg.read_text())
    hooks = '[hooks.netbox]\nsecret = "hook-s3cret"\ndebounce = 0.2\n'
    cfg.write_text(text.replace("[[relations]]", hooks + "\n[[relations]]"))
    assert main(["check-config", "--config", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert "warning: hooks.netbox.debounce is set but no longer used" in err
    assert "hooks.netbox.gather" in err and "hook-s3cret" not in err
