"""The lock's two files and the local state: text lock, lock database, one reader.

``read_lock`` reads a lock pair and proves the database against the text lock
(``LockContents``); ``read_text_lock`` reads the text lock alone; ``LocalState`` is a
copy's ``.nbia-audit/state.db``.
"""

from nbia_audit.store.localstate import LocalState
from nbia_audit.store.reader import LockContents, LockProofError, read_lock
from nbia_audit.store.textlock import TextLock, database_path, read_text_lock

__all__ = [
    "LocalState",
    "LockContents",
    "LockProofError",
    "TextLock",
    "database_path",
    "read_lock",
    "read_text_lock",
]
