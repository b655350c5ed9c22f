"""The simulated CMDB's starting content, read from YAML or JSON and checked up front.

A typo in a fixture would otherwise surface as a puzzling per-index failure
minutes into a test; every error here names the file, the key and the reason.
``instance_ranges`` declares thousands of instances in one line for benchmarks
without materialising them until a search needs them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MAPPINGS = ("1:1", "1:n", "n:n")
HOST = "host"
MAX_RANGE = 10_000_000
"""Largest range one ``instance_ranges`` entry may declare (guards against typos)."""

_TOP_KEYS = (
    "apps",
    "auth",
    "bk_tokens",
    "objects",
    "instance_ranges",
    "model_associations",
    "instance_associations",
    "tenants",
)

_APP_KEYS = ("bk_app_code", "bk_app_secret", "deny", "tenant_mode", "tenant_id")
TENANT_MODES = ("single", "global")
SINGLE_TENANT = "default"
"""bk-cmdb's ``BKSingleTenantID``: the one tenant when multi-tenant mode is off
(release-v3.15.1: src/common/definitions.go:81-84)."""
_DENY_KEYS = ("api", "bk_obj_asst_id", "bk_obj_id")


class FixtureError(ValueError):
    """A fixture that cannot be used; the message says where and why."""

    def __init__(self, source: str, key: str, why: str) -> None:
        super().__init__(f"fixture {source}: {key}: {why}")
        self.source = source
        self.key = key
        self.why = why


@dataclass(frozen=True, slots=True)
class DenyRule:
    """An IAM denial: ``api`` (an ESB API name) refused, optionally for one relation or object."""

    api: str
    bk_obj_asst_id: str | None = None
    """Only requests whose body names this model association (the create APIs)."""
    bk_obj_id: str | None = None
    """Only requests whose body or path names this object."""


@dataclass(frozen=True, slots=True)
class App:
    """Credentials the simulated gateways accept, and what IAM refuses the app."""

    bk_app_code: str
    bk_app_secret: str
    deny: tuple[DenyRule, ...] = ()
    tenant_mode: str = "single"
    """The API gateway's app tenant mode: ``single`` (of ``tenant_id``) or ``global``
    (all tenants; must name one in ``X-Bk-Tenant-Id``)."""
    tenant_id: str = SINGLE_TENANT
    """A single-tenant app's tenant (ignored for a global app)."""


@dataclass(frozen=True, slots=True)
class ModelAssociation:
    """A model association (``bk_obj_asst_id``) and its mapping."""

    bk_obj_asst_id: str
    bk_obj_id: str
    bk_asst_id: str
    bk_asst_obj_id: str
    mapping: str
    on_delete: str = "none"
    bk_obj_asst_name: str = ""


@dataclass(frozen=True, slots=True)
class InstanceAssociation:
    """A pair that exists before the first request."""

    bk_obj_asst_id: str
    bk_inst_id: int
    bk_asst_inst_id: int


def id_field(obj_id: str) -> str:
    """Hosts are keyed by ``bk_host_id``, every other object by ``bk_inst_id``."""
    return "bk_host_id" if obj_id == HOST else "bk_inst_id"


@dataclass(slots=True)
class Fixture:
    """Everything the simulator starts from; see docs/simulator.md for the format."""

    apps: list[App]
    objects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    instance_ranges: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    model_associations: list[ModelAssociation] = field(default_factory=list)
    instance_associations: list[InstanceAssociation] = field(default_factory=list)
    bk_tokens: list[str] | None = None
    """Accepted ``bk_token`` values; ``None`` accepts any non-empty token."""
    source: str = "<dict>"
    auth: bool = True
    """bk-cmdb's ``enableAuth`` (on by default, src/common/auth/auth.go:29)."""
    tenants: dict[str, bool] | None = None
    """Tenant id -> enabled, for ``--cmdb-version 3.15``: multi-tenant mode is on when
    the fixture lists tenants; each starts with a copy of the fixture's data."""

    @classmethod
    def load(cls, path: str | Path) -> Fixture:
        """Read a ``.yaml``/``.yml``/``.json`` file (JSON is YAML, so any suffix parses)."""
        p = Path(path)
        source = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise FixtureError(source, "<file>", f"cannot read: {exc.strerror or exc}") from exc
        try:
            doc = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise FixtureError(source, "<file>", f"not valid YAML/JSON: {exc}") from exc
        return cls.from_dict(doc, source=source)

    @classmethod
    def from_dict(cls, doc: Any, *, source: str = "<dict>") -> Fixture:
        """Validate a parsed document; raises :class:`FixtureError`."""
        return _Parser(source).parse(doc)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, why: str) -> FixtureError:
        return FixtureError(self.source, key, why)

    def mapping(self, value: Any, key: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"must be a mapping, got {_kind(value)}")
        return value

    def seq(self, value: Any, key: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list, got {_kind(value)}")
        return value

    def text(self, entry: Mapping[str, Any], name: str, key: str) -> str:
        value = entry.get(name)
        if not isinstance(value, str) or not value:
            raise self.fail(f"{key}.{name}", "required, a non-empty string")
        return value

    def integer(self, value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, got {_kind(value)}")
        if value <= 0:
            raise self.fail(key, f"must be a positive integer, got {value}")
        return value

    def parse(self, doc: Any) -> Fixture:
        top = self.mapping(doc, "<top>")
        unknown = sorted(set(map(str, top)) - set(_TOP_KEYS))
        if unknown:
            raise self.fail(unknown[0], f"unknown key (expected one of {', '.join(_TOP_KEYS)})")
        apps = self.apps(top.get("apps"))
        objects = self.objects(top.get("objects"))
        ranges = self.ranges(top.get("instance_ranges"))
        models = self.models(top.get("model_associations"))
        pairs = self.pairs(top.get("instance_associations"), models)
        tokens_raw = top.get("bk_tokens")
        tokens: list[str] | None = None
        if tokens_raw is not None:
            tokens = [
                self.text({"bk_token": t}, "bk_token", f"bk_tokens[{i}]")
                for i, t in enumerate(self.seq(tokens_raw, "bk_tokens"))
            ]
        auth = top.get("auth", True)
        if not isinstance(auth, bool):
            raise self.fail("auth", f"must be true or false, got {_kind(auth)}")
        tenants = self.tenants(top.get("tenants"))
        for i, app in enumerate(apps):
            known = tenants if tenants is not None else {SINGLE_TENANT: True}
            if app.tenant_mode == "single" and app.tenant_id not in known:
                raise self.fail(
                    f"apps[{i}].tenant_id",
                    f"{app.tenant_id!r} is not a tenant (tenants: {', '.join(known)})",
                )
        return Fixture(apps, objects, ranges, models, pairs, tokens, self.source, auth, tenants)

    def tenants(self, raw: Any) -> dict[str, bool] | None:
        """``tenants: [acme, {bk_tenant_id: old, enabled: false}]``; None when absent."""
        if raw is None:
            return None
        out: dict[str, bool] = {}
        for i, item in enumerate(self.seq(raw, "tenants")):
            key = f"tenants[{i}]"
            entry = {"bk_tenant_id": item} if isinstance(item, str) else self.mapping(item, key)
            unknown = sorted(set(map(str, entry)) - {"bk_tenant_id", "enabled"})
            if unknown:
                raise self.fail(
                    f"{key}.{unknown[0]}", "unknown key (expected bk_tenant_id, enabled)"
                )
            tenant = self.text(entry, "bk_tenant_id", key)
            enabled = entry.get("enabled", True)
            if not isinstance(enabled, bool):
                raise self.fail(f"{key}.enabled", f"must be true or false, got {_kind(enabled)}")
            if tenant in out:
                raise self.fail(f"{key}.bk_tenant_id", f"duplicate tenant {tenant!r}")
            out[tenant] = enabled
        if not out:
            raise self.fail("tenants", "list at least one tenant, or leave the key out")
        return out

    def apps(self, raw: Any) -> list[App]:
        items = self.seq(raw, "apps")
        if not items:
            raise self.fail("apps", "at least one {bk_app_code, bk_app_secret} is required")
        apps: list[App] = []
        seen: set[str] = set()
        for i, item in enumerate(items):
            key = f"apps[{i}]"
            entry = self.mapping(item, key)
            unknown = sorted(set(map(str, entry)) - set(_APP_KEYS))
            if unknown:
                raise self.fail(
                    f"{key}.{unknown[0]}", f"unknown key (expected one of {', '.join(_APP_KEYS)})"
                )
            mode = entry.get("tenant_mode", "single")
            if mode not in TENANT_MODES:
                raise self.fail(f"{key}.tenant_mode", f"must be one of {', '.join(TENANT_MODES)}")
            tenant = SINGLE_TENANT
            if "tenant_id" in entry:
                tenant = self.text(entry, "tenant_id", key)
            app = App(
                self.text(entry, "bk_app_code", key),
                self.text(entry, "bk_app_secret", key),
                self.deny(entry.get("deny"), f"{key}.deny"),
                mode,
                tenant,
            )
            if app.bk_app_code in seen:
                raise self.fail(f"{key}.bk_app_code", f"duplicate app code {app.bk_app_code!r}")
            seen.add(app.bk_app_code)
            apps.append(app)
        return apps

    def deny(self, raw: Any, key: str) -> tuple[DenyRule, ...]:
        # Imported here: the API table lives with the backend, which imports this module.
        from cmdb_simulator.backend import BY_NAME

        rules: list[DenyRule] = []
        for i, item in enumerate(self.seq(raw, key)):
            k = f"{key}[{i}]"
            if isinstance(item, str):
                entry: Mapping[str, Any] = {"api": item}
            else:
                entry = self.mapping(item, k)
                unknown = sorted(set(map(str, entry)) - set(_DENY_KEYS))
                if unknown:
                    raise self.fail(
                        f"{k}.{unknown[0]}",
                        f"unknown key (expected one of {', '.join(_DENY_KEYS)})",
                    )
            api = entry.get("api")
            if not isinstance(api, str) or api not in BY_NAME:
                known = ", ".join(sorted(BY_NAME))
                raise self.fail(k if isinstance(item, str) else f"{k}.api",
                                f"must be an API name (one of {known}), got {api!r}")  # fmt: skip
            if api == "count_instance_associations":
                raise self.fail(k if isinstance(item, str) else f"{k}.api",
                                "bk-cmdb never authorises count_instance_associations"
                                " (SkipAction in the API server, no check in topo)")  # fmt: skip
            asst = entry.get("bk_obj_asst_id")
            obj = entry.get("bk_obj_id")
            for name, value in (("bk_obj_asst_id", asst), ("bk_obj_id", obj)):
                if value is not None and (not isinstance(value, str) or not value):
                    raise self.fail(f"{k}.{name}", "must be a non-empty string")
            rules.append(DenyRule(api, asst, obj))
        return tuple(rules)

    def objects(self, raw: Any) -> dict[str, list[dict[str, Any]]]:
        if raw is None:
            return {}
        out: dict[str, list[dict[str, Any]]] = {}
        for obj_id, items in self.mapping(raw, "objects").items():
            key = f"objects.{obj_id}"
            ident = id_field(str(obj_id))
            seen: set[int] = set()
            rows: list[dict[str, Any]] = []
            for i, item in enumerate(self.seq(items, key)):
                entry = dict(self.mapping(item, f"{key}[{i}]"))
                if ident not in entry:
                    raise self.fail(f"{key}[{i}].{ident}", "required (the instance id)")
                inst_id = self.integer(entry[ident], f"{key}[{i}].{ident}")
                if inst_id in seen:
                    raise self.fail(f"{key}[{i}].{ident}", f"duplicate id {inst_id}")
                seen.add(inst_id)
                rows.append(entry)
            out[str(obj_id)] = rows
        return out

    def ranges(self, raw: Any) -> dict[str, list[tuple[int, int]]]:
        if raw is None:
            return {}
        out: dict[str, list[tuple[int, int]]] = {}
        for obj_id, spec in self.mapping(raw, "instance_ranges").items():
            key = f"instance_ranges.{obj_id}"
            spec_list = self.seq(spec, key)
            # One [lo, hi] or a list of them.
            pairs = spec_list if spec_list and isinstance(spec_list[0], list) else [spec_list]
            got: list[tuple[int, int]] = []
            for j, pair in enumerate(pairs):
                k = key if len(pairs) == 1 else f"{key}[{j}]"
                if not isinstance(pair, list) or len(pair) != 2:
                    raise self.fail(k, "must be [first_id, last_id] (inclusive)")
                lo, hi = self.integer(pair[0], k + "[0]"), self.integer(pair[1], k + "[1]")
                if lo > hi:
                    raise self.fail(k, f"first id {lo} is greater than last id {hi}")
                if hi - lo + 1 > MAX_RANGE:
                    raise self.fail(k, f"more than {MAX_RANGE} instances")
                got.append((lo, hi))
            out[str(obj_id)] = got
        return out

    def models(self, raw: Any) -> list[ModelAssociation]:
        out: list[ModelAssociation] = []
        seen: set[str] = set()
        for i, item in enumerate(self.seq(raw, "model_associations")):
            key = f"model_associations[{i}]"
            entry = self.mapping(item, key)
            asst_id = self.text(entry, "bk_obj_asst_id", key)
            if asst_id in seen:
                raise self.fail(f"{key}.bk_obj_asst_id", f"duplicate {asst_id!r}")
            seen.add(asst_id)
            obj = self.text(entry, "bk_obj_id", key)
            asst_obj = self.text(entry, "bk_asst_obj_id", key)
            kind = self.text(entry, "bk_asst_id", key)
            mapping = entry.get("mapping", "n:n")
            if mapping not in MAPPINGS:
                raise self.fail(f"{key}.mapping", f"must be one of {', '.join(MAPPINGS)}")
            if not (asst_id.startswith(obj) and asst_id.endswith(asst_obj)):
                raise self.fail(
                    f"{key}.bk_obj_asst_id",
                    f"must start with bk_obj_id {obj!r} and end with bk_asst_obj_id {asst_obj!r}"
                    " (conventionally {bk_obj_id}_{bk_asst_id}_{bk_asst_obj_id})",
                )
            on_delete = entry.get("on_delete", "none")
            name = entry.get("bk_obj_asst_name", "")
            if not isinstance(on_delete, str) or not isinstance(name, str):
                raise self.fail(key, "on_delete and bk_obj_asst_name must be strings")
            out.append(ModelAssociation(asst_id, obj, kind, asst_obj, mapping, on_delete, name))
        return out

    def pairs(self, raw: Any, models: list[ModelAssociation]) -> list[InstanceAssociation]:
        known = {m.bk_obj_asst_id for m in models}
        out: list[InstanceAssociation] = []
        for i, item in enumerate(self.seq(raw, "instance_associations")):
            key = f"instance_associations[{i}]"
            entry = self.mapping(item, key)
            asst_id = self.text(entry, "bk_obj_asst_id", key)
            if asst_id not in known:
                raise self.fail(
                    f"{key}.bk_obj_asst_id", f"{asst_id!r} is not in model_associations"
                )
            src = self.integer(entry.get("bk_inst_id"), f"{key}.bk_inst_id")
            dst = self.integer(entry.get("bk_asst_inst_id"), f"{key}.bk_asst_inst_id")
            out.append(InstanceAssociation(asst_id, src, dst))
        return out


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
