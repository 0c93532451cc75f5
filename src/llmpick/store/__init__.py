"""The SQLite store: runs, cached generations, cells and scores.

One file (default ``./llmpick.db``), WAL mode, schema versioned by ordered
migrations (:mod:`llmpick.store.migrations`).
"""

from llmpick.store.db import (
    DEFAULT_DB,
    CellRecord,
    GenerationRecord,
    RunRecord,
    RunRow,
    ScoreRecord,
    Store,
    open_store,
)
from llmpick.store.migrations import SCHEMA_VERSION

__all__ = [
    "DEFAULT_DB",
    "SCHEMA_VERSION",
    "CellRecord",
    "GenerationRecord",
    "RunRecord",
    "RunRow",
    "ScoreRecord",
    "Store",
    "open_store",
]
