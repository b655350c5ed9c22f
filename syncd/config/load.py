"""The steps around pydantic validation when loading the configuration file.

:mod:`syncd.config.settings` keeps the settings models and ``load_settings``;
this holds the pure plumbing it uses -- secret
file paths made relative to the config file, the environment's whole-section overlay
(so error lines name what the environment set), pydantic error locations rendered as
TOML paths, and relative paths resolved against the config file's directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncd.support.sections import FileSourceSettings

if TYPE_CHECKING:
    from syncd.config.settings import Settings


class BadEnvironment(ValueError):
    """An environment variable holding a section is not JSON; syncd.config.settings turns it into
    ConfigError."""


def field_path(loc: tuple[int | str, ...], data: Any) -> str:
    """Render a pydantic error location the way an operator writes it in TOML."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            name = None
            if isinstance(node, list) and 0 <= item < len(node) and isinstance(node[item], dict):
                name = node[item].get("name")
            parts[-1:] = [f"{parts[-1] if parts else ''}[{item}]" + (f"({name})" if name else "")]
            node = node[item] if isinstance(node, list) and 0 <= item < len(node) else None
        else:
            if item in {"file", "function-after", "tagged-union"}:
                continue
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"


def resolve_secret_files(raw: dict[str, Any], base: Path) -> None:
    """The file's relative secret files (app_secret_file, hooks.netbox.secret_file,
    ops.resync_token_file), made
    relative to the file's directory before validation reads them (every other path is
    resolved after validation)."""
    hooks = raw.get("hooks")
    netbox = hooks.get("netbox") if isinstance(hooks, dict) else None
    secrets = (
        (raw.get("cmdb"), "app_secret_file"),
        (netbox, "secret_file"),
        (raw.get("ops"), "resync_token_file"),
    )
    for section, key in secrets:
        if isinstance(section, dict) and isinstance(section.get(key), str):
            secret = Path(section[key])
            if not secret.is_absolute():
                section[key] = str(base / secret)


_COMPLEX_FIELDS = ("cmdb", "state", "sync", "log", "ops", "relations")


def env_overlay(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The TOML data with whole sections replaced as the environment replaces them, and
    which variable set each; a variable that is not JSON is a BadEnvironment naming it.

    Error lines are rendered against this, so a bad relation from SYNCD_RELATIONS is
    named by its own ``name``, not by the TOML relation at the same index.
    """
    env = {k.upper(): v for k, v in os.environ.items()}
    effective = dict(raw)
    from_env: dict[str, str] = {}
    for name in _COMPLEX_FIELDS:
        var = f"SYNCD_{name.upper()}"
        if var not in env:
            continue
        try:
            effective[name] = json.loads(env[var])
        except (ValueError, RecursionError) as exc:
            why = (
                f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            )
            raise BadEnvironment(
                f"config: environment variable {var} is not valid JSON"
                + (f": {why}" if why else "")
            ) from None
        from_env[name] = var
    return effective, from_env


def resolve_relative(settings: Settings, base: Path) -> None:
    def fix(p: Path) -> Path:
        return p if p.is_absolute() else (base / p)

    settings.state.path = fix(settings.state.path)
    if settings.cmdb.ca_bundle is not None:
        settings.cmdb.ca_bundle = fix(settings.cmdb.ca_bundle)
    for rel in settings.relations:
        for src in rel.source_settings():
            if isinstance(src, FileSourceSettings):
                src.path = fix(src.path)
            else:
                src.resolve_relative(base)
