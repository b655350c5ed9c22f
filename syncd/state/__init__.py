"""The known state, kept in SQLite: the database (:mod:`.db`) and its queries (:mod:`.store`)."""

from syncd.state.db import Database
from syncd.state.errors import StateError, StateLocked
from syncd.state.meta import Identity
from syncd.state.rows import Absence, Created, Failed, Held, Seen
from syncd.state.schema import APPLICATION_ID, SCHEMA_VERSION
from syncd.state.store import StateStore

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "Absence",
    "Created",
    "Database",
    "Failed",
    "Held",
    "Identity",
    "Seen",
    "StateError",
    "StateLocked",
    "StateStore",
]
