"""Configuration: one TOML file, every field overridable from the environment.

Precedence, highest first: environment (``SYNCD_`` prefix, ``__`` for nesting,
e.g. ``SYNCD_CMDB__RATE_LIMIT=50``), then the TOML file. Secrets are
``SecretStr`` so they never print; they may also come from a file (systemd
``LoadCredential=``, a Kubernetes Secret volume).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from syncd.config.cmdb import CmdbSettings as CmdbSettings  # imported from here in many places
from syncd.config.hooks import HooksSettings, OpsSettings
from syncd.core.identifiers import ASSOCIATION_ID_MAX, MODEL_ID_MAX, check_model_id
from syncd.core.moves import MoveGuards
from syncd.core.prune import PruneGuards
from syncd.sources.filters import FilterSettings
from syncd.sources.settings import NetBoxSourceSettings, SourceSettings
from syncd.support.printable import escape_controls
from syncd.support.sections import _Section

EX_CONFIG = 78
"""sysexits.h: configuration error. systemd's unit does not restart on it."""

CONFIG_ENV = "SYNCD_CONFIG"


class ConfigError(Exception):
    """The configuration is invalid; the message names the field and why, on one line
    (control characters from names and values are shown escaped)."""

    def __init__(self, message: str) -> None:
        super().__init__(escape_controls(message))


class StateSettings(_Section):
    path: Path = Path("./syncd-state.db")


class SyncSettings(_Section):
    interval: float = Field(300, gt=0, description="seconds between cycles")
    shutdown_deadline: float = Field(30, ge=0, description="seconds to let requests finish")
    pair_backoff_base: float = Field(
        60, ge=0, description="first hold-back after a per-pair failure, seconds; doubles"
    )
    pair_backoff_cap: float = Field(3600, ge=0, description="longest per-pair hold-back, seconds")
    empty_source_guard: int = Field(
        10,
        ge=0,
        description="a source that returns nothing after returning at least this many pairs "
        "fails the cycle (0: off)",
    )
    key_cache_ttl: float = Field(
        600, ge=0, description="seconds a resolved natural key is trusted; SIGHUP clears it"
    )
    watch: bool = Field(
        True,
        description="`syncd run` follows the CMDB's association events after each list and "
        "repairs pairs deleted behind its back within seconds",
    )
    relist_interval: float = Field(
        86400, gt=0, description="seconds after which a watched relation is listed again anyway"
    )
    isolation_budget: int = Field(
        1000,
        ge=16,
        le=1_000_000,
        description="extra batch-create requests per cycle, all relations together, to find "
        "the details a CMDB refuses as a whole; what is left waits for the next cycle (at "
        "least 16: what one refused detail in a full batch of 200 may cost)",
    )
    host_precheck: Literal["auto", "on", "off"] = Field(
        "auto",
        description="confirm in bulk that a relation's hosts exist before sending pairs "
        "naming them (list_hosts_without_biz, cached for key_cache_ttl); auto: on a "
        "relation's first cycle and while its last cycle met a missing host",
    )


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class PruneSettings(_Section):
    """Deleting pairs that left the source: off by default, guarded at every step."""

    enabled: bool = False
    grace_seconds: float = Field(3600, ge=0, description="absent at least this long")
    grace_cycles: int = Field(3, ge=1, description="... and for this many cycles in a row")
    max_count: int = Field(1000, ge=0, description="deletions per cycle at most")
    max_fraction: float = Field(0.1, ge=0, le=1, description="of the relation's pairs per cycle")
    max_shrink: float = Field(
        0.5, ge=0, le=1, description="no pruning if the source shrank more than this"
    )

    def guards(self) -> PruneGuards:
        return PruneGuards(
            self.grace_seconds,
            self.grace_cycles,
            self.max_count,
            self.max_fraction,
            self.max_shrink,
        )


class MoveSettings(_Section):
    """Moves: a desired pair blocked by a pair syncd created and the source dropped."""

    enabled: bool = True
    max_count: int = Field(1000, ge=0, description="moves per cycle at most ...")
    max_fraction: float = Field(
        0.5, ge=0, le=1, description="... and at most this share of the relation's pairs"
    )
    replace_foreign: bool = Field(
        False,
        description="also delete blocking pairs syncd did not create (someone else's data)",
    )

    def guards(self) -> MoveGuards:
        return MoveGuards(self.enabled, self.max_count, self.max_fraction, self.replace_foreign)


class RelationSettings(_Section):
    """One bk_obj_asst_id kept in step with one source, or with the union of several."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    bk_obj_id: str = Field(min_length=1)
    bk_asst_obj_id: str = Field(min_length=1)
    bk_obj_asst_id: str = Field(min_length=1)
    source: SourceSettings | None = None
    sources: list[SourceSettings] | None = Field(
        None, description="several sources: the desired set is their union"
    )
    filters: FilterSettings = FilterSettings()
    source_key: str = Field(
        "id",
        min_length=1,
        description="attribute naming the source instance: 'id' or e.g. bk_inst_name",
    )
    target_key: str = Field(
        "id", min_length=1, description="attribute naming the target: 'id', bk_host_innerip, ..."
    )
    prune: PruneSettings = PruneSettings()
    moves: MoveSettings = MoveSettings()

    @field_validator("bk_obj_id", "bk_asst_obj_id", "bk_obj_asst_id")
    @classmethod
    def _bk_cmdb_id(cls, value: str, info: ValidationInfo) -> str:
        # As bk-cmdb allows them (syncd.core.identifiers): they reach URL paths.
        field = info.field_name or "id"
        limit = ASSOCIATION_ID_MAX if field == "bk_obj_asst_id" else MODEL_ID_MAX
        return check_model_id(value, field, limit=limit)

    @model_validator(mode="after")
    def _consistent(self) -> RelationSettings:
        # The CMDB rejects these with 1199006; say so before sending anything.
        if not self.bk_obj_asst_id.startswith(self.bk_obj_id + "_"):
            raise ValueError(
                f"bk_obj_asst_id {self.bk_obj_asst_id!r} must start with "
                f"bk_obj_id {self.bk_obj_id!r} + '_'"
            )
        if not self.bk_obj_asst_id.endswith("_" + self.bk_asst_obj_id):
            raise ValueError(
                f"bk_obj_asst_id {self.bk_obj_asst_id!r} must end with "
                f"'_' + bk_asst_obj_id {self.bk_asst_obj_id!r}"
            )
        return self

    @model_validator(mode="after")
    def _one_source_field(self) -> RelationSettings:
        if self.source is not None and self.sources is not None:
            raise ValueError("give either source = {...} or sources = [...], not both")
        if self.source is None and self.sources is None:
            raise ValueError("no source: give source = {...} or sources = [...]")
        if self.sources is not None and not self.sources:
            raise ValueError("sources = [] is empty: give at least one source")
        first: dict[str, int] = {}
        for i, (name, _) in enumerate(self.named_sources()):
            if name in first:
                raise ValueError(
                    f"sources[{first[name]}] and sources[{i}] are both named {name!r}; "
                    "give each source of a relation its own name"
                )
            first[name] = i
        return self

    @property
    def several_sources(self) -> bool:
        """Configured with ``sources = [...]``: guards and sizes are kept per source."""
        return self.sources is not None

    def source_settings(self) -> list[SourceSettings]:
        """Every source of the relation, in configuration order."""
        return (
            list(self.sources) if self.sources is not None else [self.source] if self.source else []
        )

    def named_sources(self) -> list[tuple[str, SourceSettings]]:
        """(name, settings) of every source: its ``name``, or ``<type>#<index>``."""
        return [
            (src.name or f"{src.type}#{i}", src) for i, src in enumerate(self.source_settings())
        ]


class Settings(BaseSettings):
    """The whole configuration of one syncd instance."""

    model_config = SettingsConfigDict(
        env_prefix="SYNCD_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    cmdb: CmdbSettings
    state: StateSettings = StateSettings()
    sync: SyncSettings = SyncSettings()
    log: LogSettings = LogSettings()
    ops: OpsSettings = OpsSettings()
    hooks: HooksSettings = HooksSettings()
    relations: list[RelationSettings] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Settings:
        seen: dict[str, str] = {}
        names: set[str] = set()
        for rel in self.relations:
            if rel.name in names:
                raise ValueError(f"relation name {rel.name!r} appears twice")
            names.add(rel.name)
            other = seen.get(rel.bk_obj_asst_id)
            if other is not None:
                raise ValueError(
                    f"relations {other!r} and {rel.name!r} both sync {rel.bk_obj_asst_id!r}; "
                    "give one relation several sources (sources = [...]) instead"
                )
            seen[rel.bk_obj_asst_id] = rel.name
        return self

    @model_validator(mode="after")
    def _hooks_can_work(self) -> Settings:
        """A webhook that can never arrive, or would start nothing, is a config error."""
        hook = self.hooks.netbox
        if hook is None:
            return self
        if not self.ops.enabled and self.hooks.listen is None:
            raise ValueError(
                "hooks.netbox needs a listener: set ops.enabled = true or hooks.listen"
            )
        urls = [
            src.url
            for rel in self.relations
            for src in rel.source_settings()
            if isinstance(src, NetBoxSourceSettings)
        ]
        if not any(hook.owns(url) for url in urls):
            raise ValueError(
                f"hooks.netbox.url {hook.url!r} matches no netbox source "
                f"(their urls: {', '.join(sorted(set(urls))) or 'none'}); it must be the "
                "same base URL, spelt the same way (localhost is not 127.0.0.1)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment first, then the init arguments: load_settings passes the parsed
        # TOML as init arguments, so one parse serves validation and error messages, and
        # no module state carries the file's path.
        return (env_settings, init_settings)
