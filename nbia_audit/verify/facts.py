"""The ``facts`` of a verify report: what was checked, at which level, and what that proves.

Keys are stable and documented in docs/report-schema.md; the text renderer prints them one
per line, so values are numbers or short sentences.
"""

from __future__ import annotations

from nbia_audit.store.statefolder import STATE_DB, STATE_DIR
from nbia_audit.verify.judge import Verdict
from nbia_audit.verify.plan import Run
from nbia_audit.verify.sampling import sample_statement, upper_bound_95

__all__ = ["build_facts"]

SERIES_HASH_NOTE = (
    "series without per-image MD5s in the lock were checked by recomputing NBIA's series "
    "hash from the files' MD5s; this is exact when the archive stored full 32-character "
    "lowercase MD5 strings, and CTP-style strings without leading zeros are recognised "
    "too (protocol §3); it cannot name which image of a failing series is wrong"
)


def _proof(run: Run) -> str:
    c = run.counts
    level = run.plan.level
    rest = f"{c['hashed_md5']} new or changed files hashed in full (MD5)"
    if level == "stat":
        text = (
            f"stat: {run.unchanged_stat} files unchanged since they were verified (device, "
            "inode, size, mtime and ctime equal to their last full pass; not re-read, so "
            f"corruption that leaves all of these unchanged is not detected); {rest}"
        )
    elif level == "quick":
        text = (
            f"quick: {c['proven_xxh3']} files proven unchanged by xxh3-128 against the "
            f"fingerprint recorded at their last full pass; {rest}"
        )
    else:
        text = f"full: {c['hashed_md5']} files hashed (MD5) and compared with the lock"
    if run.plan.sample is not None:
        text += (
            "; only the sample and files new or changed since their last pass were hashed "
            f"({c['present_only']} unchanged locked files outside it were identified from "
            "their records and counted present)"
        )
    return text


def _state(run: Run) -> str:
    if run.state is None:
        note = run.state_note or "not used"
        known = run.records()
        if known:
            note += f"; {len(known)} earlier file records were read, none written"
        return note
    where = f"{run.root.rstrip('/')}/{STATE_DIR}/{STATE_DB}"
    return f"{run.counts['recorded']} file records written to {where}"


def _sample(run: Run, verdict: Verdict) -> dict[str, object]:
    plan = run.plan
    assert plan.sample is not None
    pinned = plan.exp.has_pinned_images
    hash_only = any(not s.images_pinned for s in plan.exp.series.values())
    unit = "image" if not hash_only else ("series" if not pinned else "image or series")
    population = plan.exp.pinned_image_count() + sum(
        1 for s in plan.exp.series.values() if not s.images_pinned
    )
    checked, failures = verdict.sample_checked, verdict.sample_failures
    return {
        "sample_fraction": plan.fraction,
        "sample_seed": plan.seed,
        "sample_unit": unit,
        "sample_size": verdict.sample_size,
        "sample_checked": checked,
        "sample_failures": failures,
        "sample_upper_bound_95": round(upper_bound_95(checked, failures), 6),
        "sample_statement": sample_statement(unit, checked, population, failures),
    }


def build_facts(run: Run, verdict: Verdict, root: str, workers: int) -> dict[str, object]:
    """The facts of one finished run."""
    exp = run.plan.exp
    c = run.counts
    by_hash = sum(1 for s in exp.series.values() if not s.images_pinned)
    facts: dict[str, object] = {
        "level": run.plan.level,
        "proof": _proof(run),
        "root": root,
        "lock_source": exp.source,
        "series_locked": len(exp.series),
        "images_locked": sum(s.image_count for s in exp.series.values()),
        "series_by_image_md5": len(exp.series) - by_hash,
        "series_by_series_hash": by_hash,
        "files": run.files,
        "sidecars": c["sidecars"],
        "hashed_md5": c["hashed_md5"],
        "proven_xxh3": c["proven_xxh3"],
        "unchanged_stat": run.unchanged_stat,
        "present_only": c["present_only"],
        "bytes_read": c["bytes_read"],
        "short_archive_md5": verdict.short_md5,
        "unprovable_images": verdict.unprovable,
        "state": _state(run),
        "workers": workers,
    }
    if run.stat_days:
        oldest, newest = min(run.stat_days), max(run.stat_days)
        facts["stat_verified_between"] = oldest if oldest == newest else f"{oldest} .. {newest}"
    if by_hash:
        facts["series_hash_note"] = SERIES_HASH_NOTE
    if run.ignored:
        facts["ignored"] = list(run.ignored)
    if run.plan.sample is not None:
        facts.update(_sample(run, verdict))
    return facts
