"""What each source's ``source = {...}`` table may say: the settings models, no I/O.

``SourceSettings`` is a pydantic discriminated union on ``type``, so a config error
names the one source model that was meant ("relations[0].source.netbox.url: ...").
The configuration imports this union, never the source implementations (aiohttp,
subprocesses); ``syncd.sources.registry`` builds a source from its settings.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from syncd.sources.base import SourceError
from syncd.sources.lldpd import LocalSide, NeighborKey
from syncd.sources.paths import compile_path, path_validator
from syncd.support.httpbody import check_url
from syncd.support.secretfile import SecretFileError, read_secret_file
from syncd.support.sections import FileSourceSettings, NamedSourceSettings, _Section

_NETBOX_KEY = re.compile(
    r"^(name|primary_ip|primary_ip4|primary_ip6|oob_ip|serial|asset_tag|custom_fields\.\w+)$"
)


class TokenSettings(_Section):
    """A secret API token from exactly one place: inline, a file, or an environment variable."""

    token: SecretStr | None = None
    token_file: Path | None = Field(None, description="read at every source read (rotation)")
    token_env: str | None = Field(None, description="name of an environment variable")

    @model_validator(mode="after")
    def _one_token(self) -> TokenSettings:
        given = [n for n in ("token", "token_file", "token_env") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of token, token_file, token_env, not {' and '.join(given)}")
        return self

    def read_token(self) -> str | None:
        """The token in clear, for the wire only; SourceError says where it failed, not what."""
        if self.token is not None:
            return self.token.get_secret_value()
        if self.token_file is not None:
            try:
                return read_secret_file(self.token_file, "token_file")
            except SecretFileError as exc:
                raise SourceError(str(exc)) from None
        if self.token_env is not None:
            value = os.environ.get(self.token_env, "").strip()
            if not value:
                raise SourceError(f"environment variable {self.token_env} (token_env) is not set")
            return value
        return None

    def resolve_relative(self, base: Path) -> None:
        """Make relative file paths relative to the config file's directory."""
        if self.token_file is not None and not self.token_file.is_absolute():
            self.token_file = base / self.token_file


class HttpCommonSettings(TokenSettings, NamedSourceSettings):
    """What the http and netbox sources share: where, how long, which TLS, how much."""

    url: str
    timeout: float = Field(30.0, gt=0, description="seconds for one page, end to end")
    verify_tls: bool = True
    ca_bundle: Path | None = None
    max_pages: int = Field(10_000, ge=1, description="a read that needs more pages fails")
    max_body: int = Field(
        64 * 1024 * 1024, ge=1, description="bytes of one page's body at most; more fails the read"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    def resolve_relative(self, base: Path) -> None:
        super().resolve_relative(base)
        if self.ca_bundle is not None and not self.ca_bundle.is_absolute():
            self.ca_bundle = base / self.ca_bundle


class HttpSourceSettings(HttpCommonSettings):
    """GET JSON records from a URL; ``source_path``/``target_path`` pick the two keys."""

    type: Literal["http"]
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers")
    auth_header: str = "Authorization"
    auth_scheme: str = Field(
        "Bearer", description='e.g. "Bearer", "Token"; "" sends the bare token'
    )
    pagination: Literal["auto", "next", "link", "none"] = "auto"
    next_path: str = Field("next", description="where the next page's URL is in the body")
    records: str | None = Field(
        None, description="path to the record list; default: the body if a list, else results"
    )
    source_path: str = "bk_inst_id"
    target_path: str = "bk_asst_inst_id"

    @field_validator("next_path", "records", "source_path", "target_path")
    @classmethod
    def _paths(cls, value: str | None) -> str | None:
        return path_validator(value)


class NetBoxSourceSettings(HttpCommonSettings):
    """Where NetBox is, which cabling to read, and which device attribute names each end."""

    type: Literal["netbox"]
    token_version: Literal["auto", "v1", "v2"] = Field(
        "auto",
        description='v1: "Token <t>"; v2: "Bearer nbt_<key>.<t>"; auto: by the nbt_ prefix',
    )
    mode: Literal["cables", "interfaces"] = "cables"
    site: list[str] = Field(default_factory=list, description="site slugs (any of)")
    tag: list[str] = Field(
        default_factory=list,
        description="tag slugs on the cable (cables) or switch interface (interfaces); all of",
    )
    status: list[str] = Field(
        default_factory=lambda: ["connected"], description="cable status (cables mode only)"
    )
    switch_role: list[str] = Field(default_factory=lambda: ["switch"], min_length=1)
    host_role: list[str] = Field(
        default_factory=list, description="device role slugs of the host end; empty: any"
    )
    switch_key: str = Field("name", description="device attribute emitted for the switch")
    host_key: str = Field("name", description="device attribute emitted for the host")
    page_size: int = Field(250, ge=1, le=1000)
    concurrency: int = Field(
        4, ge=1, le=16, description="pages fetched at once once the count is known; 1: one by one"
    )

    @field_validator("url")
    @classmethod
    def _base(cls, value: str) -> str:
        value = value.rstrip("/")
        return value.removesuffix("/api")

    @model_validator(mode="after")
    def _status(self) -> NetBoxSourceSettings:
        if self.mode == "interfaces" and self.status not in (["connected"], []):
            raise ValueError(
                'interfaces mode filters on status = ["connected"] (the default) or [] only'
            )
        return self

    @field_validator("switch_key", "host_key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not _NETBOX_KEY.match(value):
            raise ValueError(
                "must be name, primary_ip, primary_ip4, primary_ip6, oob_ip, serial, asset_tag "
                "or custom_fields.<name>"
            )
        return value


Framing = Literal["lines", "paragraphs"]


class WatchSettings(_Section):
    """The fields of a command source that also streams changes (``watch = true``)."""

    watch: bool = False
    watch_argv: list[str] | None = Field(
        None,
        description="the streaming command; lldpd default: [argv[0], '-f', 'json', 'watch']",
    )
    watch_backoff: float = Field(1.0, gt=0, description="first pause before a restart; doubles")
    watch_backoff_cap: float = Field(60.0, gt=0, description="longest pause before a restart")

    @field_validator("watch_argv")
    @classmethod
    def _watch_argv(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not value[0]):
            raise ValueError("watch_argv[0] must name the program")
        return value

    @model_validator(mode="after")
    def _watch(self) -> WatchSettings:
        if self.watch and self.watch_command() is None:
            raise ValueError(
                'watch = true needs watch_argv (the streaming command) unless format = "lldpd"'
            )
        return self

    def watch_command(self) -> list[str] | None:
        """The argv to stream, or None when there is none."""
        if self.watch_argv:
            return self.watch_argv
        argv, fmt = getattr(self, "argv", None), getattr(self, "format", None)
        if fmt == "lldpd" and argv:
            return [argv[0], "-f", "json", "watch"]
        return None

    def watch_framing(self) -> Framing:
        """lldpcli's json writer prints an indented document and a blank line per event."""
        return "paragraphs" if getattr(self, "format", None) == "lldpd" else "lines"


class CommandSourceSettings(WatchSettings, NamedSourceSettings):
    """Run ``argv`` and read facts from its stdout (and with ``watch``, stream changes)."""

    type: Literal["command"]
    argv: list[str] = Field(min_length=1, description="program and arguments; no shell")
    timeout: float = Field(60.0, gt=0, description="seconds for the whole run")
    env: dict[str, SecretStr] = Field(
        default_factory=dict, description="added to the environment; values are secrets"
    )
    inherit_env: bool = Field(True, description="start from syncd's environment")
    cwd: Path | None = None
    format: Literal["json", "jsonl", "csv", "lldpd"] = "json"
    records: str | None = Field(None, description="json: path to the record list")
    source_field: str = Field("bk_inst_id", description="csv column, or json/jsonl path")
    target_field: str = Field("bk_asst_inst_id", description="csv column, or json/jsonl path")
    max_output: int = Field(256 * 1024 * 1024, ge=1, description="bytes of stdout at most")
    local_name: str | None = Field(
        None, description="lldpd: this host's key (default: the machine's host name)"
    )
    neighbor_key: NeighborKey = Field("name", description="lldpd: name, mgmt_ip or chassis_id")
    local_side: LocalSide = Field(
        "target", description='lldpd: this machine is the target (a host) or "source" (a switch)'
    )

    @field_validator("argv")
    @classmethod
    def _argv(cls, value: list[str]) -> list[str]:
        if not value[0]:
            raise ValueError("argv[0] must name the program")
        return value

    @model_validator(mode="after")
    def _paths(self) -> CommandSourceSettings:
        if self.format in ("json", "jsonl"):
            compile_path(self.source_field)
            compile_path(self.target_field)
            if self.records is not None:
                compile_path(self.records)
        return self

    def resolve_relative(self, base: Path) -> None:
        if self.cwd is not None and not self.cwd.is_absolute():
            self.cwd = base / self.cwd


SourceSettings = Annotated[
    FileSourceSettings | HttpSourceSettings | NetBoxSourceSettings | CommandSourceSettings,
    Field(discriminator="type"),
]
