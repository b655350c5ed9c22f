"""Building blocks of the configuration, shared by config and the source modules.

Kept apart from ``syncd.config.settings`` so that each source can declare its own
settings model without importing the whole configuration (and its union of
every source) back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    # inf and nan are valid TOML floats but never a sane rate, timeout or interval.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, defer_build=True)


SOURCE_NAME = r"^[A-Za-z0-9_.-]+$"


class NamedSourceSettings(_Section):
    """What every source's table may say besides its own fields."""

    name: str | None = Field(
        None,
        pattern=SOURCE_NAME,
        description="names the source in logs and plans; default <type>#<index>",
    )


class FileSourceSettings(NamedSourceSettings):
    type: Literal["file"]
    path: Path
    format: Literal["auto", "csv", "jsonl", "json"] = "auto"
    source_field: str = "bk_inst_id"
    target_field: str = "bk_asst_inst_id"
    encoding: str = "utf-8"
    watch: bool = False
    """Start a cycle early (within ``watch_interval``) when the file changes."""
    watch_interval: float = Field(2.0, gt=0)
