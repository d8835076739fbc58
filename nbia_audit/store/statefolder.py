"""The one definition of nbia-audit's private folder inside a copy: its name and contents.

Every copy nbia-audit fetches or verifies may hold ``<root>/.nbia-audit/``: the local state
database, the stat memo, the fetch lock and the fetch's work folder. Only this module spells
those names; the walk of ``verify`` skips the folder at the root of a copy only, and a fetch
layout may never place an image inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["STATE_DB", "STATE_DIR", "WHOLE_DESTINATION_LOCK", "StateFolder"]

STATE_DIR = ".nbia-audit"  # at the root of a copy
STATE_DB = "state.db"  # the local state database (store.localstate)
_STAT_MEMO = "stat-memo.json"  # a clean stat pass remembered (verify.memo)
WHOLE_DESTINATION_LOCK = "fetch"  # <name>.lock is flock'ed by a running fetch (fetch.placement)
_WORK = "tmp"  # unverified downloads, one folder per run (fetch.placement)


@dataclass(frozen=True, slots=True)
class StateFolder:
    """The paths of the private folder of one copy (made by :meth:`of`)."""

    path: Path
    database: Path
    stat_memo: Path
    fetch_lock: Path
    work: Path

    @classmethod
    def of(cls, root: Path) -> StateFolder:
        """The private folder of the copy at ``root`` (nothing is created)."""
        path = root / STATE_DIR
        return cls(
            path, path / STATE_DB, path / _STAT_MEMO, path / f"{WHOLE_DESTINATION_LOCK}.lock",
            path / _WORK,
        )  # fmt: skip

    def lock(self, name: str) -> Path:
        """The lock file a fetch holding ``name`` takes (``fetch``: the whole destination)."""
        return self.path / f"{name}.lock"
