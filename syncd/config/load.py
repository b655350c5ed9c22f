"""The steps around pydantic validation when loading the configuration file.

:mod:`syncd.config.settings` keeps the settings models; this is ``load_settings`` and the
plumbing around the models' validation -- secret
file paths made relative to the config file, the environment's whole-section overlay
(so error lines name what the environment set), pydantic error locations rendered as
TOML paths, and relative paths resolved against the config file's directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from syncd.config.checks import UnusableConfig, check_usable
from syncd.config.settings import CONFIG_ENV, ConfigError, Settings
from syncd.support.sections import FileSourceSettings


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


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Load and validate the configuration, or raise ConfigError with one clear line.

    Relative paths in the file (state, sources) are taken relative to the config
    file's directory, so a config works wherever the daemon is started from.
    ``overrides`` replace top-level sections of the file; the environment still wins.
    """
    if path is None:
        env = os.environ.get(CONFIG_ENV)
        path = Path(env) if env else None
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist or is not a file")
    import tomllib

    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {str(path)!r} is unreadable: {exc}") from None
    if path is not None:
        resolve_secret_files(raw, path.parent)
    try:
        effective, from_env = env_overlay(raw)
    except BadEnvironment as exc:
        raise ConfigError(str(exc)) from None
    try:
        settings = Settings(**{**raw, **overrides})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = field_path(tuple(err["loc"]), effective)
        top = str(err["loc"][0]) if err["loc"] else ""
        if top in from_env:
            where += f" (from {from_env[top]})"
        msg = err["msg"].removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"config: {where}: {msg}{more}") from None
    except SettingsError as exc:  # pydantic-settings could not parse an environment value
        raise ConfigError(f"config: {exc}") from None
    if path is not None:
        resolve_relative(settings, path.parent)
    try:
        check_usable(settings)
    except UnusableConfig as exc:
        raise ConfigError(str(exc)) from None
    return settings
