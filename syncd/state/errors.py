"""The state store's errors, in a module of their own so the schema check, the lock and
the database can all raise them without importing one another."""

from __future__ import annotations

from pathlib import Path


class StateError(Exception):
    """The state store cannot do what was asked (locked, disk full, closed, bad input)."""


class StateLocked(StateError):
    """Another process holds the state file: one writer per state file."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(
            f"state file {path} is in use by another syncd (pid {holder or 'unknown'}); "
            "one syncd per state file"
        )
        self.holder = holder


class SchemaMismatch(StateError):
    """The file is a syncd state store of a schema this syncd does not know: kept as it is."""


class Unusable(Exception):
    """The file at the state path is not a state store we can use; move it aside."""
