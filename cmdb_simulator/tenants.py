"""bk-cmdb 3.15's tenants: which tenant a request is for, and each tenant's own data.

The multi-tenant line (``release-v3.15.1``, branch ``feature-tenant``) carries the tenant
in ``X-Bk-Tenant-Id`` (src/common/http/header/header.go:62-63). Two places decide it:

- the API gateway's ``bk-tenant-validate`` (blueking-apigateway-apisix
  src/apisix/plugins/bk-tenant-validate.lua:79-115,172-178): a single-tenant app that
  sends no header gets its own tenant filled in, a header naming another tenant is 403
  1640302 ``CROSS_TENANT_FORBIDDEN``, and an all-tenant (``global``) app must send one.
  A gateway that is not multi-tenant sets ``default`` whatever was sent
  (bk-default-tenant.lua:40-43);
- the API server's ``TenantVerify`` filter, after its limiter (src/apiserver/service/
  service.go:105-110, filter.go:522-554): with multi-tenant mode off only ``""`` and
  ``default`` pass (pkg/tenant/tools/tenant.go:41-51); the tenant must exist and be
  enabled; anything else is a BaseResp 1100005 ``invalid tenant`` the filter writes
  itself (``bk_error_code``, no ``data``). The ESB sends no tenant header at all
  (esb/components/bk/apisv2/cc/toolkit/tools.py:40-51).

Tables are sharded per tenant (cs/event/watch/client.go:66,87,153-155 on 3.15.1), so each
tenant has its own store and event chain: a pair made in one is invisible to another.
The association id sequence is system-wide (core/instance.go:158-160): ids never repeat
across tenants.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cmdb_simulator.authparse import AuthParser
from cmdb_simulator.backend import Backend
from cmdb_simulator.chain import EventChain
from cmdb_simulator.fixture import SINGLE_TENANT, App, Fixture
from cmdb_simulator.iam import Iam
from cmdb_simulator.messages import CmdbError, GatewayError
from cmdb_simulator.stats import Stats
from cmdb_simulator.store import Store

HEADER = "X-Bk-Tenant-Id"
INVALID_TENANT = 1100005
"""``CCErrAPICheckTenantInvalid`` (release-v3.15.1: src/common/errInfo.go:266)."""
INVALID_TENANT_TEXT = "invalid tenant"
"""The filter's own text, in English whatever the language (filter.go:531,544)."""
CROSS_TENANT = GatewayError(403, 1640302, "CROSS_TENANT_FORBIDDEN", "Cross tenant forbidden")
"""bk-core/errorx.lua:197-207."""


@dataclass(slots=True)
class TenantData:
    """One tenant's CMDB: its data, its event chain and the parts that read them."""

    store: Store
    events: EventChain
    backend: Backend
    iam: Iam
    auth_parser: AuthParser


def _tenant_data(
    fixture: Fixture,
    stats: Stats,
    retention: Callable[[], float],
    *,
    owner: str | None,
    ids: Iterator[int],
) -> TenantData:
    store = Store(fixture, supplier_account=owner, ids=ids)
    events = EventChain(retention)
    store.on_change = events.record
    return TenantData(
        store, events, Backend(store, stats, events), Iam(fixture, store), AuthParser(store)
    )


class Tenancy:
    """Every tenant's data, and the two tenant checks (gateway, API server)."""

    def __init__(
        self,
        fixture: Fixture,
        stats: Stats,
        retention: Callable[[], float],
        *,
        tenant_line: bool,
    ) -> None:
        self.multi = fixture.tenants is not None
        """Multi-tenant mode (bk-cmdb's ``EnableMultiTenantMode``, and a multi-tenant gateway)."""
        self.enabled: dict[str, bool] = fixture.tenants or {SINGLE_TENANT: True}
        owner = None if tenant_line else "0"
        ids = itertools.count(1)  # one association id sequence for all tenants
        self.data = {
            tenant: _tenant_data(fixture, stats, retention, owner=owner, ids=ids)
            for tenant in self.enabled
        }
        self.default = next(iter(self.data.values()))
        """What a release without tenants serves: the first tenant's data."""

    def gateway(self, app: App, header: str | None) -> tuple[str, GatewayError | None]:
        """The ``X-Bk-Tenant-Id`` the API gateway passes on, or its 403."""
        if not self.multi:
            return SINGLE_TENANT, None
        if app.tenant_mode == "global":
            if not header:
                reason = (
                    "Cross-tenant calls are not allowed: header X-Bk-Tenant-Id is required and"
                    f" should not be empty. the app {app.bk_app_code}"
                    f" tenant_mode={app.tenant_mode}. [AH1]"
                )
                return "", CROSS_TENANT.with_reason(reason=reason)
            return header, None
        if not header:
            return app.tenant_id, None
        if header != app.tenant_id:
            reason = (
                f"Cross-tenant calls are not allowed: current header X-Bk-Tenant-Id={header},"
                f" app {app.bk_app_code} belongs to tenant {app.tenant_id}"
                f"(tenant_mode={app.tenant_mode}). [AH2]"
            )
            return header, CROSS_TENANT.with_reason(reason=reason)
        return header, None

    def verify(self, header: str | None) -> TenantData | CmdbError:
        """``TenantVerify``: the tenant's data, or the filter's 1100005."""
        tenant = header or ""
        if not self.multi:
            if tenant not in ("", SINGLE_TENANT):
                return CmdbError(INVALID_TENANT, raw=INVALID_TENANT_TEXT, filter=True)
            tenant = SINGLE_TENANT
        if not self.enabled.get(tenant, False):
            return CmdbError(INVALID_TENANT, raw=INVALID_TENANT_TEXT, filter=True)
        return self.data[tenant]
