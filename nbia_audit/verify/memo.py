"""The stat memo: a clean ``stat`` pass remembered, so the next one over an unchanged tree
costs one walk.

A ``stat`` pass trusts unchanged device, inode, size, mtime and ctime. When a whole pass
found the copy clean, the memo keeps a digest of every entry's stat key together with the
report. The next ``stat`` pass walks the tree (the one unavoidable cost, like ``find``);
if that digest, the lock (its root digest and its database's stat key), the ignore
patterns and the nbia-audit version are all the same, nothing it would read can have
changed, and it returns the remembered verdict, saying so in its facts. Any other level
removes the memo first: its records change what a stat pass would say.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import marshal
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

import xxhash

from nbia_audit.findings import AuditReport, SeriesStatus
from nbia_audit.store.statefolder import StateFolder
from nbia_audit.store.statkey import StatKey, epoch_ns, racily_clean, stat_key
from nbia_audit.store.textlock import database_path
from nbia_audit.verify.walk import Blocked, FileEntry
from nbia_audit.version import __version__

__all__ = [
    "Survey", "forget", "recall", "remember", "setting", "settled", "tree_stat_digest",
]  # fmt: skip


def _path(root: Path) -> Path:
    return StateFolder.of(root).stat_memo


def setting(lock_path: Path, root_digest: str, ignore: tuple[str, ...]) -> str:
    """What must not change for a memo to hold, besides the tree itself."""
    try:
        db_key: tuple[int, ...] | None = tuple(stat_key(database_path(lock_path)))
    except OSError:
        db_key = None  # a text lock alone
    text = json.dumps([str(lock_path.resolve()), root_digest, db_key, list(ignore), __version__])
    return xxhash.xxh3_128_hexdigest(text.encode("utf-8"))


def _digest_text(entry: FileEntry | Blocked) -> bytes:
    if isinstance(entry, Blocked):
        return f"B\0{entry.rel}\0{entry.detail}\n".encode(errors="surrogateescape")
    text = f"F\0{entry.rel}\0{tuple(entry.key)}\n"
    return text.encode(errors="surrogateescape")  # names that are not UTF-8


def tree_stat_digest(entries: Iterable[FileEntry | Blocked]) -> str:
    """xxh3-128 over every entry's relative path and stat key (or why it is blocked)."""
    digest = xxhash.xxh3_128()
    for entry in entries:
        digest.update(_digest_text(entry))
    return digest.hexdigest()


def settled(entries: Iterable[FileEntry | Blocked], started: datetime) -> bool:
    """True when no file's stat key is racily clean at this pass's start (a second write in
    the same timestamp tick would leave its mtime, so its stat key, unchanged)."""
    taken = epoch_ns(started)
    return all(isinstance(e, Blocked) or not racily_clean(e.key.mtime_ns, taken) for e in entries)


class Survey:
    """One walk, digested as it goes and spilled to a private temporary file, not held.

    A stat pass needs the walk twice: first its digest (does the memo hold?), then, when it
    does not, every entry for the run. Keeping the walk in a list cost memory in proportion
    to the tree (a million files, a few hundred MB); walking again would cost a second
    listing of a shared file system. The spill is local scratch (``tempfile``), written and
    read sequentially, and removed when the replay ends or :meth:`discard` is called.
    """

    def __init__(self, entries: Iterable[FileEntry | Blocked], started: datetime) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="nbia-audit-walk-"))
        digest = xxhash.xxh3_128()
        taken = epoch_ns(started)
        self.settled = True  # see settled()
        try:
            with open(self._folder / "walk", "wb") as out:
                for entry in entries:
                    digest.update(_digest_text(entry))
                    if isinstance(entry, Blocked):
                        record: tuple[str | int | bool, ...] = (
                            entry.rel, entry.detail, entry.io_error, entry.directory,
                        )  # fmt: skip
                    else:
                        record = (entry.rel, entry.path, *entry.key)
                        if racily_clean(entry.key.mtime_ns, taken):
                            self.settled = False
                    marshal.dump(record, out)  # our own file, read back by replay() only
        except BaseException:
            self.discard()
            raise
        self.tree = digest.hexdigest()

    def replay(self) -> Iterator[FileEntry | Blocked]:
        """The entries, in walk order, once (the spill is removed when this ends)."""
        try:
            with open(self._folder / "walk", "rb") as spill:
                while True:
                    try:
                        record = marshal.load(spill)
                    except EOFError:
                        return
                    if len(record) == 4:
                        yield Blocked(*record)
                    else:
                        key = tuple.__new__(StatKey, record[2:])
                        yield tuple.__new__(FileEntry, (record[0], record[1], key))
        finally:
            self.discard()

    def discard(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)


def recall(root: Path, key: str, tree: str) -> AuditReport | None:
    """The remembered clean report, if the memo matches ``key`` and ``tree``."""
    try:
        memo = json.loads(_path(root).read_text(encoding="utf-8"))
        if memo["setting"] != key or memo["tree"] != tree:
            return None
        report = memo["report"]
        return AuditReport(
            command="verify",
            lock_path=report["lock_path"],
            root_digest=report["root_digest"],
            started_at=report["started_at"],
            finished_at=report["finished_at"],
            findings=(),
            series=tuple(SeriesStatus(**s) for s in report["series"]),
            complete=True,
            facts=dict(report["facts"]),
            proof=str(report.get("proof", "")),
            proven_on=str(report.get("proven_on", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember(root: Path, key: str, tree: str, report: AuditReport) -> None:
    """Keep a clean, complete stat report for the next pass (best effort)."""
    if not report.clean:
        forget(root)
        return
    document = {
        "setting": key,
        "tree": tree,
        "report": {
            "lock_path": report.lock_path,
            "root_digest": report.root_digest,
            "started_at": report.started_at,
            "finished_at": report.finished_at,
            "series": [dataclasses.asdict(s) for s in report.series],
            "facts": {k: v for k, v in report.facts.items() if _plain(v)},
            "proof": report.proof,
            "proven_on": report.proven_on,
        },
    }
    target = _path(root)
    temporary = target.with_name(target.name + ".tmp")
    with contextlib.suppress(OSError):  # a read-only copy simply has no memo
        temporary.write_text(json.dumps(document), encoding="utf-8")
        os.replace(temporary, target)


def forget(root: Path) -> None:
    """Drop the memo (before any pass that changes the records a stat pass relies on)."""
    with contextlib.suppress(OSError):
        _path(root).unlink(missing_ok=True)


def _plain(value: object) -> bool:
    return isinstance(value, str | int | float | bool) or value is None
