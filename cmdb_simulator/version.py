"""Which bk-cmdb release the simulator answers as, and what changed between releases.

``3.10``, ``3.12``, ``3.14`` and ``3.15`` name the newest patch of that line; ``3.10.16``
and the like pick an older patch, for the changes that landed mid-line (from bk-cmdb's
git history, docs/simulator.md lists them). ``3.15`` is the multi-tenant line
(``release-v3.15.1``, branch ``feature-tenant``): it branched before v3.14.8, so it has
every 3.10-3.12 change but not 3.14.8's.
"""

from __future__ import annotations

from dataclasses import dataclass

LINES = ("3.10", "3.12", "3.14", "3.15")
DEFAULT = "3.14"
_LATEST_PATCH = 10_000


@dataclass(frozen=True, slots=True)
class CmdbVersion:
    """A parsed ``--cmdb-version``; the properties are the behaviours that differ."""

    text: str
    number: tuple[int, int, int]

    @classmethod
    def parse(cls, text: str) -> CmdbVersion:
        """``3.14`` or ``3.14.7``; raises ValueError for anything else."""
        parts = text.strip().split(".")
        line = ".".join(parts[:2])
        if line not in LINES or len(parts) > 3 or (len(parts) == 3 and not parts[2].isdigit()):
            raise ValueError(
                f"unknown cmdb version {text!r} (expected {', '.join(LINES)}, optionally .PATCH)"
            )
        patch = int(parts[2]) if len(parts) == 3 else _LATEST_PATCH
        return cls(text.strip(), (int(parts[0]), int(parts[1]), patch))

    @property
    def unique_pair_index(self) -> bool:
        """bkcc_unique_bkInstID_bkAsstInstID_bkObjAsstID exists (v3.10.17, commit 09558b061c);
        before it a lost insert race stores the pair twice without an error."""
        return self.number >= (3, 10, 17)

    @property
    def apigw_renames_keys(self) -> bool:
        """The API server renames bk_error_code/bk_error_msg to code/message for API-gateway
        (JWT) requests (v3.12.4, commit 00d8288214)."""
        return self.number >= (3, 12, 4)

    @property
    def dangerous_ops_check(self) -> bool:
        """The DAL refuses $where/$expr/$accumulator/$function (v3.14.8, commit d7c0743aa6;
        not an ancestor of release-v3.15.1)."""
        return (3, 14, 8) <= self.number < (3, 15, 0)

    @property
    def inst_asst_watch(self) -> bool:
        """``resource_watch`` knows ``inst_asst`` (v3.10.10, commit 1a3d09a192); before it the
        resource is refused like any unknown one."""
        return self.number >= (3, 10, 10)

    @property
    def tenants(self) -> bool:
        """The multi-tenant line: ``X-Bk-Tenant-Id`` on every call, the API server's
        ``TenantVerify`` filter, no ``bk_supplier_account`` (release-v3.15.1:
        src/common/http/header/header.go:62-63, src/apiserver/service/service.go:105-110)."""
        return self.number >= (3, 15, 0)
