"""The ``[cmdb]`` section: how to reach the CMDB, as whom, for which tenant, how hard.

A module of its own because the CMDB's settings carry their own checks (the URL, the
secret's sources, the tenant and its gateway, the retry order); the rest of the
configuration is :mod:`syncd.config.settings`, which re-exports this class.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from syncd.core.batching import MAX_BATCH
from syncd.support.httpbody import check_url
from syncd.support.secretfile import read_secret_file
from syncd.support.sections import _Section

_TENANT_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
"""What a tenant id may be: it goes into a header, so nothing that could break one."""


class CmdbSettings(_Section):
    """How to reach the CMDB and how hard to push it."""

    url: str = Field(description="ESB or API gateway base URL")
    gateway: Literal["esb", "apigw"] = "esb"
    stage: str = Field("prod", description="API gateway stage (apigw only)")
    app_code: str
    app_secret: SecretStr | None = None
    app_secret_file: Path | None = None
    username: str = "admin"
    bk_token: SecretStr | None = None
    supplier_account: str = Field(
        "0", description="bk_supplier_account / X-Bkcmdb-Supplier-Account (bk-cmdb 3.10-3.14)"
    )
    tenant_id: str | None = Field(
        None,
        description="bk-cmdb 3.15 (multi-tenant BlueKing): the tenant, sent as X-Bk-Tenant-Id "
        "on every call through the API gateway instead of the supplier account",
    )
    language: Literal["en", "zh-cn"] = "en"
    rate_limit: float = Field(50, gt=0, description="requests per second, all relations together")
    read_rate_limit: float | None = Field(
        None,
        gt=0,
        description="API gateway only: requests per second for reads (searches, counts, "
        "lookups), a budget apart from writes; default rate_limit. The ESB shares one budget",
    )
    concurrency: int = Field(8, ge=1, le=256, description="requests in flight at most")
    batch_size: int = Field(MAX_BATCH, ge=1, le=MAX_BATCH)
    timeout: float = Field(60.0, gt=0, description="seconds for one request, end to end")
    connect_timeout: float = Field(10.0, gt=0)
    verify_tls: bool = True
    ca_bundle: Path | None = None
    max_retries: int = Field(6, ge=0, le=50, description="per request, for retryable failures")
    retry_base: float = Field(0.5, gt=0, description="first backoff, seconds; doubles, jittered")
    retry_cap: float = Field(30.0, gt=0, description="longest single backoff, seconds")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value).rstrip("/")

    @field_validator("tenant_id")
    @classmethod
    def _tenant(cls, value: str | None) -> str | None:
        if value is not None and not _TENANT_ID.fullmatch(value):
            raise ValueError(
                "must be a BlueKing tenant id: a letter, then letters, digits, '-' or '_' "
                '(at most 64), e.g. "default" for a BlueKing that is not multi-tenant'
            )
        return value

    @model_validator(mode="after")
    def _tenant_gateway(self) -> CmdbSettings:
        if self.tenant_id is not None and self.gateway == "esb":
            raise ValueError(
                'cmdb.tenant_id is set but cmdb.gateway is "esb": the ESB sends no '
                "X-Bk-Tenant-Id, so a multi-tenant CMDB (3.15) refuses every ESB call with "
                '1100005 invalid tenant. Set cmdb.gateway = "apigw" (and cmdb.url to the '
                "API gateway), or remove cmdb.tenant_id for a CMDB that is not multi-tenant"
            )
        return self

    @model_validator(mode="after")
    def _retry_order(self) -> CmdbSettings:
        if self.retry_base > self.retry_cap:
            raise ValueError(
                f"retry_base ({self.retry_base:g}) is larger than retry_cap ({self.retry_cap:g})"
            )
        return self

    @model_validator(mode="after")
    def _secret(self) -> CmdbSettings:
        if self.app_secret is None:
            path = self.app_secret_file
            if path is None:
                creds = os.environ.get("CREDENTIALS_DIRECTORY")
                candidate = Path(creds) / "app_secret" if creds else None
                if candidate is None or not candidate.exists():
                    raise ValueError(
                        "no app secret: set cmdb.app_secret, cmdb.app_secret_file, "
                        "or provide the systemd credential 'app_secret'"
                    )
                path = candidate
            self.app_secret = SecretStr(read_secret_file(path, "app_secret_file"))
        return self

    def secret(self) -> str:
        """The app secret in clear, for the wire only."""
        assert self.app_secret is not None  # guaranteed by the validator
        return self.app_secret.get_secret_value()
