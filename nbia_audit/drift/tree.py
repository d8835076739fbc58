"""The descent of NBIA's hash tree: ask the largest covered nodes, go down where they differ.

The lock database knows, for every study and patient (and whole collection), the hash the
lock implies and whether the lock covers the node completely (protocol §1.3: study and
patient hashes are over *all* visible series, so only a completely covered node can be
compared). :func:`build_probes` turns that into a forest of probes; :func:`descend` asks one
``getMD5Hierarchy`` per probe, level by level and concurrently, and only asks the children of
a probe whose answer differs. Answers are compared verbatim: the lock's hashes are built from
the archive's MD5 strings as stored, short ones included (protocol §3).

Patient, study and series hashes are computed by the archive on request, so a match proves the
node unchanged *now*. A collection hash is a nightly cache (§1.3): it is used only in fast
mode, where a match proves the collection unchanged as of the archive's last refresh, and a
difference proves nothing until the patients below it are asked.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from nbia_audit.archive.calls import CallRunner
from nbia_audit.archive.protocol import Archive, HashLevel
from nbia_audit.errors import ApiError
from nbia_audit.models import HashNode, LockedSeries

__all__ = ["Descent", "LevelTally", "Probe", "Proof", "build_probes", "descend"]

LEVELS = ("collection", "patient", "study", "series")


@dataclass(frozen=True, slots=True)
class Probe:
    """One node to ask: the hash the lock implies for it and the locked series below it."""

    level: str  # collection | patient | study | series
    key: str  # collection, "<collection>/<patient id>", study UID or series UID
    expected: str
    ask: HashLevel  # which node md5_hierarchy is asked for
    series: tuple[str, ...]
    children: tuple[Probe, ...] = ()


def build_probes(
    series: Iterable[LockedSeries], nodes: Iterable[HashNode], *, fast: bool
) -> tuple[Probe, ...]:
    """The roots of the descent: the largest completely covered nodes, down to series.

    Normal mode starts at patients (the largest level the archive computes live); fast mode
    starts at whole collections, whose hash the archive caches nightly.
    """
    covered = {(n.level, n.key): n.computed_hash for n in nodes if n.covers_whole_node}
    by_patient = _study_probes(series, covered)
    by_collection: defaultdict[str, list[Probe]] = defaultdict(list)
    for (collection, patient), children in by_patient.items():
        key = f"{collection}/{patient}"
        expected = covered.get(("patient", key))
        if expected is None:
            by_collection[collection] += children
        else:
            ask = HashLevel(collection=collection, patient_id=patient)
            by_collection[collection].append(_parent("patient", key, expected, ask, children))
    roots: list[Probe] = []
    for collection, children in by_collection.items():
        expected = covered.get(("collection", collection)) if fast else None
        if expected is None:
            roots += children
        else:
            ask = HashLevel(collection=collection)
            roots.append(_parent("collection", collection, expected, ask, children))
    return tuple(roots)


def _study_probes(
    series: Iterable[LockedSeries], covered: Mapping[tuple[str, str], str]
) -> dict[tuple[str, str], list[Probe]]:
    """Per (collection, patient): a probe per covered study, else one per series."""
    by_study: defaultdict[str, list[LockedSeries]] = defaultdict(list)
    for s in sorted(series, key=lambda s: (s.collection, s.patient_id, s.study_uid, s.series_uid)):
        by_study[s.study_uid].append(s)
    patients: defaultdict[tuple[str, str], list[Probe]] = defaultdict(list)
    for study_uid, members in by_study.items():
        leaves = [
            Probe(
                "series",
                s.series_uid,
                s.series_hash,
                HashLevel(series_uid=s.series_uid),
                (s.series_uid,),
            )
            for s in members
        ]
        place = (members[0].collection, members[0].patient_id)
        expected = covered.get(("study", study_uid))
        if expected is None:
            patients[place] += leaves
        else:
            ask = HashLevel(study_uid=study_uid)
            patients[place].append(_parent("study", study_uid, expected, ask, leaves))
    return dict(patients)


def _parent(
    level: str, key: str, expected: str, ask: HashLevel, children: Sequence[Probe]
) -> Probe:
    below = tuple(uid for child in children for uid in child.series)
    return Probe(level, key, expected, ask, below, tuple(children))


@dataclass(frozen=True, slots=True)
class Proof:
    """Why a series is known to be unchanged: which node matched, and when it was asked."""

    level: str
    key: str
    at: str  # ISO 8601 UTC of the answer
    cached: bool  # True for a collection hash (as of the archive's last nightly refresh)


@dataclass(slots=True)
class LevelTally:
    """Per level: nodes asked, how many matched, failed, and when the last answer came."""

    asked: int = 0
    matched: int = 0
    failed: int = 0
    at: str = ""


@dataclass(slots=True)
class Descent:
    """What the descent established about every locked series it reached."""

    unchanged: dict[str, Proof] = field(default_factory=dict)
    series_answers: dict[str, str] = field(default_factory=dict)  # series-level, verbatim
    failed: dict[str, str] = field(default_factory=dict)  # series UID -> why not checked
    levels: dict[str, LevelTally] = field(default_factory=dict)
    differing_collections: list[str] = field(default_factory=list)

    def changed(self) -> dict[str, str]:
        """Series whose own hash was asked and differs: series UID -> current hash."""
        return {u: h for u, h in self.series_answers.items() if u not in self.unchanged}


def descend(
    roots: Sequence[Probe],
    archive: Archive,
    runner: CallRunner,
    *,
    now: Callable[[], str],
    suspects: frozenset[str] = frozenset(),
) -> Descent:
    """Ask ``roots``, then the children of every probe that differs, until series level.

    ``suspects`` (fast mode) are series with live evidence of change (the change feed, a
    listing whose image count or size moved): a matching *cached* collection hash does not
    clear them; their patients are asked live instead.
    """
    result = Descent()
    frontier = list(roots)
    depth = 0
    while frontier:
        depth += 1
        calls = [_asker(archive, probe) for probe in frontier]
        answers = runner.run_keeping_errors(f"hash tree, round {depth}", calls)
        at = now()
        following: list[Probe] = []
        for probe, answer in zip(frontier, answers, strict=True):
            following += _judge(probe, answer, at, result, suspects)
        frontier = following
    return result


def _asker(archive: Archive, probe: Probe) -> Callable[[], str]:
    ask = probe.ask
    return lambda: archive.md5_hierarchy(**ask)


def _judge(
    probe: Probe, answer: str | ApiError, at: str, result: Descent, suspects: frozenset[str]
) -> list[Probe]:
    """Record one answer; return the probes to ask next."""
    tally = result.levels.setdefault(probe.level, LevelTally())
    tally.asked += 1
    tally.at = at
    if isinstance(answer, ApiError):
        tally.failed += 1
        for uid in probe.series:
            result.failed[uid] = f"{probe.level} hash could not be asked: {answer}"
        return []
    if probe.level == "series":
        result.series_answers[probe.key] = answer
    cached = probe.level == "collection"
    if answer == probe.expected:
        tally.matched += 1
        live = [c for c in probe.children if suspects.intersection(c.series)] if cached else []
        cleared = set(probe.series).difference(uid for c in live for uid in c.series)
        for uid in cleared:
            result.unchanged[uid] = Proof(probe.level, probe.key, at, cached)
        return live
    if cached:
        # Possibly stale (protocol §1.3): confirm below before calling anything drift.
        result.differing_collections.append(probe.key)
    return list(probe.children)
