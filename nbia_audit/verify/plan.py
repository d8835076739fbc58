"""One ``verify`` run's bookkeeping: which files need reading, and what each read proved.

:class:`Run` sits between the walk and the worker pool. For each file it decides, from the
level and the local state's record of the file, whether the record already answers
(``stat``: an unchanged stat key; ``--sample``: an unchanged file outside the sample is only
counted present) or which read a worker must do (``quick``: xxh3-128 against the one
recorded; otherwise identity and MD5). A file with no record, or whose stat key changed or is racily
clean, is always read in full, whatever the level or the sample (issue 5: "files new or
changed since the last pass are always fully hashed"). A record is trusted only for the
device and inode it was taken on: a state database copied along with a tree (rsync, a
crafted one) describes other inodes and proves nothing. Results come back here, in walk
order, to be placed in the :class:`~nbia_audit.verify.judge.Tally` and recorded in the
local state.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from nbia_audit.dicom.header import DicomIdentity
from nbia_audit.findings import Finding, FindingKind
from nbia_audit.store.localstate import LocalState
from nbia_audit.verify.expectation import Expectation
from nbia_audit.verify.judge import HOW_MD5, HOW_PRESENT, HOW_STAT, HOW_XXH3, Seen, Tally
from nbia_audit.verify.read import Examined, Want, examine, recheck_xxh3
from nbia_audit.verify.records import Racy, Rec, Records, Row, load_records, write_records
from nbia_audit.verify.sampling import Sample
from nbia_audit.verify.sidecars import dicom_expected, has_dicom_marker, sidecar_of
from nbia_audit.verify.walk import FileEntry

__all__ = ["LEVELS", "Plan", "Run"]

LEVELS = ("full", "quick", "stat")
_FLUSH_EVERY = 2000


@dataclass(frozen=True, slots=True)
class Plan:
    """What this run does: level, sample, and the lock it checks against."""

    level: str
    sample: Sample | None  # units by a pure function of (seed, unit); None: every unit
    fraction: float | None
    seed: int | None
    stamp: str  # start of the run, ISO 8601 UTC to the microsecond: ``verified_at``
    exp: Expectation

    @property
    def hash_first(self) -> bool:
        """Hash every file and identify it by content: nothing to choose, images to match."""
        return self.sample is None and self.exp.has_pinned_images

    def content_identity(self, md5: str) -> DicomIdentity | None:
        """The locked image whose archive MD5 is ``md5`` (runs on worker threads)."""
        found = self.exp.identify_by_md5(md5)
        if found is None:
            return None
        return DicomIdentity(found[0], found[1], "", "")

    def in_sample(self, sop: str, series: str) -> bool:
        """Whether the image ``sop`` of ``series`` is drawn: its unit is the image, or the
        whole series where the lock pins that series by its hash only."""
        if self.sample is None:
            return True
        locked = self.exp.series.get(series)
        if locked is not None and not locked.images_pinned:
            return series in self.sample
        return sop in self.sample

    def decide(self, identity: DicomIdentity | None) -> Want:
        """How much of a file to read once its header is known (runs on worker threads).

        Every locked file a worker examines is hashed: :meth:`Run.admit` sends a worker
        only files that are new, changed, or in the sample.
        """
        if identity is None:
            # Not DICOM (or unreadable header): only its content MD5 can say which locked
            # image it is, and only a lock with per-image MD5s can answer.
            return Want.FULL if self.exp.has_pinned_images else Want.IDENTITY
        if not self.exp.has_image(identity.sop_uid):
            locked = self.exp.series.get(identity.series_uid)
            if locked is None or locked.images_pinned:
                return Want.IDENTITY  # unexpected: reported, never hashed
        return Want.FULL


def _storable(rel: str) -> bool:
    """Whether SQLite can store ``rel``: a name that is not UTF-8 (read with
    surrogateescape) is never recorded, so that file is simply hashed at every pass."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Run:
    """The state of one run between the walk, the workers and the judge."""

    def __init__(
        self,
        plan: Plan,
        root: str,
        state: LocalState | None,
        note: str,
        *,
        tally: Tally | None = None,
    ) -> None:
        self.plan = plan
        self.root = root
        self.state = state
        self.state_note = note
        self._records = load_records(state, root)  # read per file, never all at once
        # What the walk found, in a SQLite file (a private temporary one unless the caller,
        # a shard, chose where); the caller closes it.
        self.tally = tally if tally is not None else Tally()
        self.counts: Counter[str] = Counter()
        self.stat_days: set[str] = set()  # days the stat-trusted files were verified
        self.xxh3_days: set[str] = set()  # days the xxh3-proven files were verified
        self.files = 0
        self.unchanged_stat = 0
        self.pending: list[Row] = []
        self.seen_paths = self._records  # .add(rel): to a TEMP table, for finish_state
        self.walk_complete = True
        self.ignored: tuple[str, ...] = ()  # --ignore patterns, for the report
        # The lock pair and its spec when they live in the copy: sidecars of nbia-audit's own,
        # passed over only while they are not DICOM (a name hides nothing).
        self.own_files: frozenset[str] = frozenset()
        self._racy = Racy()

    # -- records --------------------------------------------------------------------------

    def records(self) -> Records:
        """The copy's local-state records (queried, never held: ``len()`` counts them)."""
        return self._records

    def record(self, rel: str) -> Rec | None:
        """The record of one file, if the local state has one (a point query)."""
        return self._records.get(rel)

    # -- deciding -------------------------------------------------------------------------

    def _is_sidecar(self, rel: str, path: str) -> bool:
        if rel in self.own_files:
            try:
                return not has_dicom_marker(path)
            except OSError:
                return False  # reading it again reports why it cannot be read
        return sidecar_of(rel, path) is not None

    def admit(self, entry: FileEntry) -> Callable[[], Examined] | None:
        """Account for a file; return the read a worker must do, or None if none is needed."""
        rel = entry.rel
        self.seen_paths.add(rel)
        if self._is_sidecar(rel, entry.path):
            self.counts["sidecars"] += 1
            return None
        self.files += 1
        plan = self.plan
        rec = self.record(rel)
        # A record describes one inode: one copied along with the tree proves nothing.
        if rec is None or not rec.md5 or not rec.key.same_file(entry.key):
            return functools.partial(examine, entry.path, plan)
        if rec.key == entry.key and not self._racy(rec):  # unchanged since its last pass
            if plan.level == "stat":
                self._trust(rel, rec)
                return None
            if rec.sop and not plan.in_sample(rec.sop, rec.series):
                self._place(Seen(rel, rec.sop, rec.series, rec.md5, HOW_PRESENT))
                return None
        if plan.level == "quick" and rec.xxh3:
            return functools.partial(recheck_xxh3, entry.path, rec.xxh3, plan)
        return functools.partial(examine, entry.path, plan)

    def _trust(self, rel: str, rec: Rec) -> None:
        """Take a file whose stat key is unchanged since its last pass as its record says."""
        self.unchanged_stat += 1
        self.stat_days.add(rec.verified_at[:10])
        image = self.plan.exp.image(rec.sop)
        if image is not None:  # the common case, placed directly
            self.tally.place(
                Seen(rel, rec.sop, image.series_uid, rec.md5, HOW_STAT, rec.verified_at)
            )
        else:
            self._place(Seen(rel, rec.sop, rec.series, rec.md5, HOW_STAT, rec.verified_at))

    # -- settling -------------------------------------------------------------------------

    def settle(self, entry: FileEntry, found: Examined) -> None:
        """Take a worker's result for ``entry`` into the tally."""
        rec = self.record(entry.rel)
        self.counts["bytes_read"] += found.bytes_read
        if found.error:
            self.blocked(entry.rel, f"cannot be read: {found.error}", True)
        elif not found.stable:
            self.blocked(entry.rel, "changed while it was being read; verify again later", True)
        elif found.xxh3_matched and rec is not None:
            self.counts["proven_xxh3"] += 1
            self.xxh3_days.add(rec.verified_at[:10])
            seen = Seen(entry.rel, rec.sop, rec.series, rec.md5, HOW_XXH3, rec.verified_at)
            self._place(seen)
            if found.key != rec.key:  # same bytes, new stat key (touched, copied back)
                self._remember(seen, found)
        else:
            self._settle_read(entry, found)

    def _settle_read(self, entry: FileEntry, found: Examined) -> None:
        identity = found.identity
        sop = identity.sop_uid if identity else ""
        series = identity.series_uid if identity else ""
        if not found.md5:
            self._place(Seen(entry.rel, sop, series, "", HOW_PRESENT), reason=found.not_dicom)
            return
        self.counts["hashed_md5"] += 1
        seen = Seen(entry.rel, sop, series, found.md5, HOW_MD5, self.plan.stamp)
        sop, series = self._place(seen, reason=found.not_dicom)
        if sop or self._held(entry.rel) is None:
            # A file that held a locked image and no longer reads as one keeps its record,
            # so the next pass names the image again rather than calling it missing.
            self._remember(seen._replace(sop=sop, series=series), found)

    def _place(self, seen: Seen, reason: str = "") -> tuple[str, str]:
        """Place a file's content in the tally; return the (SOP, series) it was taken for.

        ``seen`` is what the file's header (or record) claims; ``reason``, why it is not
        DICOM when it is not.
        """
        rel, sop, series, md5, how, since = seen
        exp = self.plan.exp
        pinned_in: str | None = None  # the locked series of the image, when it is pinned
        if not sop and md5:
            # A header we cannot read: match by content (which names the image's series too).
            sop, pinned_in = exp.identify_by_md5(md5) or ("", None)
        if sop:
            if pinned_in is None:
                image = exp.image(sop)
                pinned_in = image.series_uid if image is not None else None
            locked = exp.series.get(pinned_in or series)
            if pinned_in is not None or (locked is not None and not locked.images_pinned):
                series = pinned_in or series
                if how == HOW_PRESENT:
                    self.counts["present_only"] += 1
                self.tally.place(Seen(rel, sop, series, md5, how, since))
                return sop, series
            detail = "DICOM image not in the lock"
            if locked is not None:
                detail = "DICOM image of a locked series, not in the lock"
            self.tally.strays.append(Finding(FindingKind.UNEXPECTED, series, sop, rel, detail))
            return sop, series
        held = self._held(rel)
        if held is not None:
            # The file the last pass recorded as this image no longer reads as DICOM (cut
            # inside its header, overwritten): one tampering, one finding, named by image.
            sop, series = held
            self.tally.blocked_units.update(held)
            detail = f"not DICOM ({reason or 'no readable header'}); held image {sop} "
            detail += "when last verified"
            self.tally.strays.append(Finding(FindingKind.UNREADABLE, series, sop, rel, detail))
            return "", ""
        if dicom_expected(rel):
            detail = f"not DICOM where DICOM is expected ({reason or 'no readable header'})"
            self.tally.strays.append(Finding(FindingKind.UNREADABLE, path=rel, detail=detail))
        else:
            detail = "not DICOM and not a sidecar of any known tool"
            self.tally.strays.append(Finding(FindingKind.UNEXPECTED, path=rel, detail=detail))
        return "", ""

    def blocked(self, rel: str, detail: str, io_error: bool, directory: bool = False) -> None:
        """Report an entry that cannot be read, attributed to an image when the state knows."""
        self.seen_paths.add(rel)
        if io_error:
            self.tally.complete = False
        if directory:
            self.walk_complete = False
            detail += self._attribute_directory(rel)
            self.tally.strays.append(Finding(FindingKind.UNREADABLE, path=rel, detail=detail))
            return
        rec = self.record(rel)
        sop = rec.sop if rec else ""
        series = rec.series if rec else ""
        image = self.plan.exp.image(sop) if sop else None
        if image is not None:
            series = image.series_uid
        if sop:
            self.tally.blocked_units.update((sop, series))
            detail += f" (held image {sop} when last verified)"
        else:
            self.tally.unattributed_blocked += 1
        self.tally.strays.append(Finding(FindingKind.UNREADABLE, series, sop, rel, detail))

    def _held(self, rel: str) -> tuple[str, str] | None:
        """The locked image (SOP, series) the last pass recorded at ``rel``, if any."""
        rec = self.record(rel)
        if rec is None or not rec.sop:
            return None
        exp = self.plan.exp
        image = exp.image(rec.sop)
        if image is not None:
            return rec.sop, image.series_uid
        locked = exp.series.get(rec.series)
        if locked is not None and not locked.images_pinned:
            return rec.sop, rec.series
        return None

    def _attribute_directory(self, rel: str) -> str:
        # The images the state saw below an unlistable directory are not "missing": they
        # may well be there. Say how many, and keep them out of the missing list.
        held = 0
        images = self.plan.exp.images
        for sop, series in self._records.images_below(rel):
            image = images.get(sop)
            self.tally.blocked_units.update((sop, image.series_uid if image else series))
            held += 1
        if not held:
            self.tally.unattributed_blocked += 1
            return ""
        return f" ({held} images were below it when last verified)"

    # -- the local state ------------------------------------------------------------------

    def _remember(self, seen: Seen, found: Examined) -> None:
        """Record ``seen`` (its MD5 computed at ``seen.since``) with what reading it found."""
        rel = seen.rel
        if self.state is None or found.key is None or not (rel.isascii() or _storable(rel)):
            return
        k = found.key
        lock_root = self.plan.exp.header.root_digest
        self.pending.append(
            (rel, seen.sop, seen.series, k.fs, k.inode, k.size, k.mtime_ns, k.ctime_ns,
             seen.md5, found.xxh3, seen.since, self.plan.stamp, lock_root)
        )  # fmt: skip
        if len(self.pending) >= _FLUSH_EVERY:
            self._flush()

    def _flush(self) -> None:
        if self.state is not None and self.pending:
            write_records(self.state, self.pending)
            self.counts["recorded"] += len(self.pending)
        self.pending = []

    def finish_state(self) -> None:
        """Write what is pending; forget files that are gone (only after a complete walk)."""
        self._flush()
        if self.state is not None and self.walk_complete:
            gone = self._records.forget_unseen()  # in SQL, against the paths seen
            if gone:
                self.counts["forgotten"] = gone
        self._records.close()
