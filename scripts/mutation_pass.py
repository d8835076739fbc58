"""Scripted wrong changes (mutants) to the code that must never report unproven data clean.

Each mutant is one textual edit of one source file: the kind of mistake a hurried change
makes (a boundary moved, a check skipped, a sort made plain). For each, this script copies the
project to a temporary folder, applies the edit there, runs the tests that cover that code,
and reports whether they caught it (``killed``, and by which test) or not (``survived``).
The working tree is never modified, so Ctrl-C or a crash leaves nothing to restore; the
temporary copy is removed on every exit.

    .venv/bin/python scripts/mutation_pass.py               # every mutant
    .venv/bin/python scripts/mutation_pass.py -k resume     # mutants whose name has "resume"
    .venv/bin/python scripts/mutation_pass.py --list        # the mutants, without running
    .venv/bin/python scripts/mutation_pass.py --markdown out.md

Exit status: 0 when every mutant was killed, 1 when any survived, 2 when a mutant's text is
no longer in its file (the source changed: update the mutant) or the unmutated tests fail.
docs/testing.md records the last run and why each survivor is harmless.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(
    ".venv", ".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
    ".hypothesis", "*.egg-info", "scripts",
)  # fmt: skip
TIMEOUT = 900  # seconds for one mutant's tests; a mutant that hangs them counts as killed

# The tests that cover each area (files under tests/). Slow kill-loop tests are left out:
# they cover crash safety, which the crash-point tests below cover deterministically.
HASH = ("test_merkle.py", "verify/test_verify_units.py", "store/test_lockproof.py")
LOCK = (
    "store/test_lockfile.py", "store/test_lockproof.py", "store/test_lock_strings.py",
    "lock/test_locking.py",
)  # fmt: skip
JUDGE = (
    "verify/test_verify.py", "verify/test_verify_units.py", "verify/test_verify_lockmodes.py",
    "verify/test_verify_sample.py", "verify/test_verify_cli.py", "verify/test_verify_layouts.py",
    "verify/test_verify_memo.py", "verify/test_verify_property.py", "report/test_report_cli.py",
    "store/test_statkey.py",
)  # fmt: skip
FETCH = (
    "fetch/test_fetch.py", "fetch/test_fetch_layouts.py", "fetch/test_fetch_ziptools.py",
    "fetch/test_fetch_cli.py",
)  # fmt: skip
EXIT = (
    "cli/test_cli.py", "verify/test_verify_cli.py", "drift/test_drift_cli.py",
    "fetch/test_fetch_cli.py", "report/test_report_cli.py", "store/test_lockproof.py",
    "cli/test_docs.py",
)  # fmt: skip
DRIFT = ("drift/test_drift.py", "drift/test_drift_cli.py", "drift/test_drift_faults.py")
CLIENT = (
    "client/test_client_auth.py", "client/test_client_faults.py", "client/test_client_units.py",
)  # fmt: skip
OWN = ("verify/test_verify_own_files.py", "report/test_report_output.py")


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # under nbia_audit/
    old: str  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]


def _m(name: str, path: str, old: str, new: str, tests: tuple[str, ...]) -> Mutant:
    return Mutant(name, path, old, new, tests)


MUTANTS: tuple[Mutant, ...] = (
    # --- the hash tree (hashing.py) -------------------------------------------------------
    _m("hash:nulls-sorted-last", "merkle.py",
       'joined = "".join(nulls + present)', 'joined = "".join(present + nulls)', HASH),
    _m("hash:hex-not-sorted", "merkle.py",
       "pattern.\n        present.sort()\n", "pattern.\n        present.reverse()\n", HASH),
    _m("hash:collation-plain-sort", "merkle.py",
       "present.sort(key=_mysql_order_key)", "present.sort()", HASH),
    _m("hash:collation-case-sensitive", "merkle.py",
       'return value.lower().rstrip(" ")', 'return value.rstrip(" ")', HASH),
    _m("hash:collation-trailing-space-kept", "merkle.py",
       'return value.lower().rstrip(" ")', "return value.lower()", HASH),
    _m("hash:plain-sort-for-any-alphanumeric", "merkle.py",
       'if " " not in together and together.lower() == together:',
       'if " " not in together:', HASH),
    _m("hash:empty-series-is-md5-of-nothing", "merkle.py",
       'joined = "".join(nulls + present)\n    return _md5_text(joined) if joined else ""',
       'joined = "".join(nulls + present)\n    return _md5_text(joined)', HASH),
    _m("hash:empty-level-is-md5-of-nothing", "merkle.py",
       'if c is not None))\n    return _md5_text(joined) if joined else ""',
       "if c is not None))\n    return _md5_text(joined)", HASH),
    _m("hash:children-not-sorted", "merkle.py",
       '"".join(sorted(c for c in child_hashes if c is not None))',
       '"".join([c for c in child_hashes if c is not None])', HASH),
    _m("hash:null-spelled-upper", "merkle.py",
       'nulls = ["null"] *', 'nulls = ["NULL"] *', HASH),
    _m("hash:utf8-not-latin1", "merkle.py",
       'text.encode("latin-1", errors="replace")', 'text.encode("utf-8", errors="replace")',
       HASH),
    _m("hash:patient-not-keyed-by-collection", "merkle.py",
       "studies_by_patient[(collection, patient_id)].add(study_uid)",
       'studies_by_patient[("", patient_id)].add(study_uid)', HASH),
    _m("hash:short-md5-boundary-31", "merkle.py",
       "if len(stored.strip()) < 32:", "if len(stored.strip()) < 31:", HASH),
    _m("hash:malformed-boundary-33", "merkle.py",
       "len(text) > 32 or", "len(text) > 33 or", HASH),
    _m("hash:short-md5-not-padded", "merkle.py",
       "return text.zfill(32)", "return text", HASH),
    _m("hash:noncanonical-called-exact", "merkle.py",
       "if stored != normalised:", "if False:", HASH),
    _m("hash:missing-counts-as-match", "merkle.py",
       "{ArchiveMd5Check.MATCH, ArchiveMd5Check.MATCH_SHORT,",
       "{ArchiveMd5Check.ARCHIVE_MISSING, ArchiveMd5Check.MATCH, ArchiveMd5Check.MATCH_SHORT,",
       HASH),
    _m("hash:blank-not-missing", "merkle.py",
       "if stored is None or not stored.strip():", "if stored is None:", HASH),
    _m("hash:computed-case-sensitive", "merkle.py",
       "if normalised != computed_hexdigest.lower():", "if normalised != computed_hexdigest:",
       HASH),
    # --- the text lock (lockfile.py) ------------------------------------------------------
    _m("lockfile:root-digest-without-count", "store/textlock.py",
       '{s.series_hash} {s.image_count}\\n"', '{s.series_hash}\\n"', LOCK),
    _m("lockfile:root-digest-unchecked", "store/textlock.py",
       "if digest != header.root_digest:", "if False:", LOCK),
    _m("lockfile:totals-unchecked", "store/textlock.py",
       "if said != counted:", "if False:", LOCK),
    _m("lockfile:duplicate-series-accepted", "store/textlock.py",
       "if series.series_uid in seen:", "if False:", LOCK),
    _m("lockfile:any-series-hash-accepted", "store/textlock.py",
       "if not is_series_hash(series.series_hash):", "if False:", LOCK),
    _m("lockfile:unknown-header-key-accepted", "store/textlock.py",
       "    if unknown:\n        raise StoreError(f\"{path}: [lock] has a key",
       "    if False:\n        raise StoreError(f\"{path}: [lock] has a key", LOCK),
    _m("lockfile:newer-format-read", "store/textlock.py",
       "if fmt > LOCK_FORMAT:", "if fmt > LOCK_FORMAT + 1:", LOCK),
    _m("lockfile:negative-count-accepted", "store/textlock.py",
       "not isinstance(value, bool) and value >= 0:", "not isinstance(value, bool):", LOCK),
    _m("lockfile:surrogate-escape-accepted", "store/textlock.py",
       "if 0xD800 <= value <= 0xDFFF or value > 0x10FFFF:", "if value > 0x10FFFF:", LOCK),
    _m("lockfile:extra-series-field-accepted", "store/textlock.py",
       "or set(row) != keys:", "or not keys <= set(row):", LOCK),
    _m("lockfile:recovery-rolls-back-a-landed-commit", "store/textlock.py",
       "old_db.unlink()  # the new text lock landed",
       "os.replace(old_db, db_path)  # the new text lock landed", LOCK),
    _m("lockfile:commit-keeps-no-old-database", "store/textlock.py",
       "os.link(db_path, old_db)  # keep", "pass  # keep", LOCK),
    _m("lockfile:text-renamed-before-database", "store/textlock.py",
       "os.replace(new_db, db_path)\n                _fsync_dir(lock_path.parent)\n"
       '                crashpoint("lock:database-renamed")\n'
       "                os.replace(new_text, lock_path)  # the commit point",
       "os.replace(new_text, lock_path)\n                _fsync_dir(lock_path.parent)\n"
       '                crashpoint("lock:database-renamed")\n'
       "                os.replace(new_db, db_path)  # the commit point", LOCK),
    # --- the lock reader (lockproof.py) ---------------------------------------------------
    _m("lockproof:missing-stamp-accepted", "store/reader.py",
       "if stamp != self.text.sha256:", "if stamp and stamp != self.text.sha256:", LOCK),
    _m("lockproof:header-unchecked", "store/reader.py",
       "if header != self.text.header:", "if False:", LOCK),
    _m("lockproof:spec-unchecked", "store/reader.py",
       'if meta.get("spec") != self.text.spec_json:', "if False:", LOCK),
    _m("lockproof:missing-series-accepted", "store/reader.py",
       "        if missing:\n", "        if False:\n", LOCK),
    _m("lockproof:extra-series-accepted", "store/reader.py",
       "        if extra:\n", "        if False:\n", LOCK),
    _m("lockproof:only-first-field-compared", "store/reader.py",
       "for name in _TEXT_FIELDS:", "for name in _TEXT_FIELDS[:1]:", LOCK),
    _m("lockproof:series-hash-field-not-compared", "store/reader.py",
       '_TEXT_FIELDS = (\n    "series_hash",\n', "_TEXT_FIELDS = (\n", LOCK),
    _m("lockproof:images-not-recomputed", "store/reader.py",
       "if recomputed != locked.series_hash:", "if False:", LOCK),
    _m("lockproof:images-of-series-only-accepted", "store/reader.py",
       "        if not locked.images_pinned:\n            raise",
       "        if False:\n            raise", LOCK),
    _m("lockproof:pinned-series-without-images-accepted", "store/reader.py",
       "if s.images_pinned and s.series_uid not in self.seen and s.series_hash:", "if False:",
       LOCK),
    _m("lockproof:metadata-digest-unchecked", "store/reader.py",
       "if found != header.metadata_digest:", "if False:", LOCK),
    _m("lockproof:null-md5s-dropped", "store/reader.py",
       "[None] * (rows - non_null)", "[None] * 0", LOCK),
    _m("lockproof:comma-split-trusted", "store/reader.py",
       "if len(parts) == non_null:", "if True:", LOCK),
    _m("lockproof:escaped-md5s-split-raw", "store/reader.py",
       "if joined.isascii():", "if True:", LOCK),
    _m("lockproof:fallback-hides-reason", "store/reader.py",
       "read_text_lock(lock_path), str(error))", 'read_text_lock(lock_path), "")', LOCK),
    _m("lockproof:no-second-read-after-a-race", "store/reader.py",
       "if again.sha256 == text.sha256:", "if True:", LOCK),
    # --- the verify judge (verify_judge.py and friends) ------------------------------------
    _m("judge:fast-path-ignores-md5", "verify/judge.py",
       "if seen is not None and archive == seen.md5 and sop not in extra",
       "if seen is not None and sop not in extra", JUDGE),
    _m("judge:duplicate-not-reported", "verify/judge.py",
       "        return False\n    if len(copies) > 1:",
       "        return False\n    if False:", JUDGE),
    _m("judge:series-only-duplicate-not-reported", "verify/judge.py",
       "        if len(copies) > 1:", "        if False:", JUDGE),
    _m("judge:missing-not-reported", "verify/judge.py",
       "if sop not in tally.blocked_units:", "if False:", JUDGE),
    _m("judge:known-bad-unsampled-file-passes", "verify/judge.py",
       "if copy.md5 and check is ArchiveMd5Check.MISMATCH:", "if False:", JUDGE),
    _m("judge:unprovable-counts-as-good", "verify/judge.py",
       "if check in MATCHES:", "if check in MATCHES or check is ArchiveMd5Check.ARCHIVE_MISSING:",
       JUDGE),
    _m("judge:unprovable-not-counted", "verify/judge.py",
       "acc.unprovable += 1", "pass", JUDGE),
    _m("judge:unprovable-series-ok", "verify/judge.py",
       "if unprovable and not problem:", "if False:", JUDGE),
    _m("judge:short-md5-not-counted", "verify/judge.py",
       "acc.short_md5 += check is ArchiveMd5Check.MATCH_SHORT", "acc.short_md5 += 0", JUDGE),
    _m("judge:problem-series-ok", "verify/judge.py",
       "problem = len(acc.findings) > before", "problem = False", JUDGE),
    _m("judge:stray-series-ok", "verify/judge.py",
       "if st.series_uid in stray_series", "if False", JUDGE),
    _m("judge:series-hash-not-compared", "verify/judge.py",
       "matches = known and s.series_hash in (padded, unpadded)", "matches = known", JUDGE),
    _m("judge:unpadded-form-not-tried", "verify/judge.py",
       'unpadded = series_hash((m.lstrip("0") or "0") for m in md5s) if known else ""',
       "unpadded = padded", JUDGE),
    _m("judge:count-only-ignores-count", "verify/judge.py",
       "ok = len(sops) == s.image_count and not attributed", "ok = not attributed", JUDGE),
    _m("judge:unknown-md5s-judged", "verify/judge.py",
       "known = len(md5s) == len(sops)", "known = True", JUDGE),
    _m("judge:mismatch-unexplained", "verify/judge.py",
       "    if not explained:\n", "    if False:\n", JUDGE),
    _m("judge:too-few-called-modified", "verify/judge.py",
       "if found < s.image_count:", "if found < 0:", JUDGE),
    _m("judge:sample-failure-not-counted", "verify/judge.py",
       "acc.sample_failures += bad is not None", "acc.sample_failures += 0", JUDGE),
    _m("judge:every-image-counts-as-hashed", "verify/judge.py",
       "return good is not None or bad is not None", "return True", JUDGE),
    _m("verify:complete-despite-unprovable", "verify/run.py",
       "complete=run.tally.complete and not verdict.unprovable,",
       "complete=run.tally.complete,", JUDGE),
    _m("verify:coarse-racy-window-dropped", "store/statkey.py",
       "window = COARSE_RACY_NS if mtime_ns % 1_000_000_000 == 0 else FINE_RACY_NS",
       "window = FINE_RACY_NS", JUDGE),
    _m("verify:racy-window-dropped", "store/statkey.py",
       "return mtime_ns >= taken_ns - window", "return mtime_ns > taken_ns", JUDGE),
    _m("verify:memo-racy-window-dropped", "verify/memo.py",
       "or not racily_clean(e.key.mtime_ns, taken)", "or True", JUDGE),
    # --- fetch's resume and checks (resume.py, fetchseries.py, placement.py) ---------------
    _m("resume:changed-file-not-rehashed", "fetch/resume.py",
       "    if digest.md5 != record.md5:\n        return None",
       "    if False:\n        return None", FETCH),
    _m("resume:stat-key-not-compared", "fetch/resume.py",
       "if key == record.stat:", "if True:", FETCH),
    _m("resume:new-pin-not-compared", "fetch/resume.py",
       "if check_archive_md5(image.archive_md5, record.md5) not in MATCHES:", "if False:", FETCH),
    _m("resume:non-file-accepted", "fetch/resume.py",
       "if not stat.S_ISREG(os.lstat(path).st_mode):", "if not os.path.lexists(path):", FETCH),
    _m("resume:layout-path-not-compared", "fetch/resume.py",
       "if str(wanted) != record.path:", "if False:", FETCH),
    _m("resume:other-series-record-accepted", "fetch/resume.py",
       "        if record.series_uid != image.series_uid:\n            continue",
       "        if False:\n            continue", FETCH),
    _m("resume:image-count-not-compared", "fetch/resume.py",
       "if not series.images_pinned or len(images) != series.image_count:",
       "if not series.images_pinned:", FETCH),
    _m("resume:refreshed-records-not-saved", "fetch/resume.py",
       "if found != _original(found, known):", "if False:", FETCH),
    _m("resume:colliding-paths-in-series-accepted", "fetch/resume.py",
       "            if key in mine:", "            if False:", FETCH),
    _m("resume:overwrite-of-another-image-accepted", "fetch/resume.py",
       "if owner and owner[0] != sop and os.path.lexists(self.dest / owner[1]):", "if False:",
       FETCH),
    _m("resume:paths-compared-case-sensitively", "fetch/resume.py",
       "key = str(path).casefold()", "key = str(path)", FETCH),
    _m("fetch:collisions-placed", "fetch/series.py",
       "    if collisions:\n", "    if False:\n", FETCH),
    _m("fetch:failed-zip-check-placed", "fetch/series.py",
       "        if not check.ok:\n", "        if False:\n", FETCH),
    _m("fetch:download-not-capped", "fetch/series.py",
       "if received > expectation.max_bytes:", "if False:", FETCH),
    _m("fetch:pins-not-checked", "fetch/series.py",
       "pinned = {i.sop_uid: i.archive_md5 for i in images} if series.images_pinned else None",
       "pinned = None", FETCH),
    _m("fetch:series-only-not-filled", "fetch/series.py",
       "filled = not series.images_pinned and _fill_lock(run, series, images)", "filled = False",
       FETCH),
    _m("fetch:image-count-not-expected", "fetch/series.py",
       "image_count=series.image_count,", "image_count=0,", FETCH),
    _m("fetch:refused-series-retried", "fetch/series.py",
       'refused to serve it: {exc}",), final=True)', 'refused to serve it: {exc}",))', FETCH),
    _m("placement:bytes-not-synced-before-rename", "fetch/placement.py",
       "list(self._syncer.map(fsync_path, [temp for temp, _ in moves]))", "pass", FETCH),
    _m("placement:link-folder-followed", "fetch/placement.py",
       "if not stat.S_ISDIR(mode):", "if False:", FETCH),
    _m("placement:leftovers-kept", "fetch/placement.py",
       "        self._clear_tmp()\n        return self",
       "        self.tmp.mkdir(exist_ok=True)\n        return self", FETCH),
    _m("placement:no-fetch-lock", "fetch/placement.py",
       "fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)",
       "self._lock_file.fileno()", FETCH),
    # --- the exit-code rule (cli_common.exit_code) and its callers ---------------------------
    _m("exit:incomplete-findings-exit-3", "cli/common.py",
       "    if findings:\n        return ExitCode.FINDINGS",
       "    if findings and complete:\n        return ExitCode.FINDINGS", EXIT),
    _m("exit:incomplete-exits-0", "cli/common.py",
       "    if not complete:\n        return ExitCode.ENVIRONMENT",
       "    if False:\n        return ExitCode.ENVIRONMENT", EXIT),
    _m("exit:incomplete-exits-1", "cli/common.py",
       "    if not complete:\n        return ExitCode.ENVIRONMENT",
       "    if not complete:\n        return ExitCode.FINDINGS", EXIT),
    _m("exit:bad-spec-exits-3", "cli/common.py",
       "    if isinstance(error, SpecError):\n        return ExitCode.USAGE",
       "    if False:\n        return ExitCode.USAGE", EXIT),
    # verify, drift and report all leave through finish_report: one mutant covers the three.
    _m("exit:reports-ignore-incomplete", "cli/common.py",
       "finish(findings=bool(report.findings), complete=report.complete)",
       "finish(findings=bool(report.findings), complete=True)", EXIT),
    _m("exit:fetch-ignores-failures", "cli/fetch.py",
       "finish(findings=bool(report.failed))", "finish(findings=False)", EXIT),
    # --- named in issue 10: the change feed and the token refresh ---------------------------
    _m("drift:feed-extra-day-dropped", "drift/run.py",
       "since -= dt.timedelta(days=1)", "since -= dt.timedelta(days=0)", DRIFT),
    _m("client:token-refresh-retried", "client/auth.py",
       'endpoint="oauth/token", data=form, idempotent=False',
       'endpoint="oauth/token", data=form, idempotent=True', CLIENT),
    _m("client:non-idempotent-retried-on-any-error", "client/transport.py",
       "return isinstance(exc, requests.ConnectTimeout)", "return isinstance(exc, _TRANSIENT)",
       CLIENT),
    _m("client:non-idempotent-retried-on-5xx", "client/transport.py",
       "if status != 429 and (status < 500 or not idempotent):",
       "if status != 429 and status < 500:", CLIENT),
    # What the adversarial pass over the merged work found (issue 10's promise, kept):
    _m("lockproof:schema-shape-unchecked", "store/reader.py",
       "        if odd:\n", "        if False:\n", LOCK),
    _m("read:growth-ignored", "verify/read.py",
       "return bool(os.read(fd, 1))", "return False", OWN),
    _m("read:own-files-skipped-even-if-dicom", "verify/plan.py",
       "return not has_dicom_marker(path)", "return True", OWN),
    _m("output:lock-overwritable", "cli/common.py",
       "if target == os.path.realpath(path):", "if False:", OWN),
    _m("output:undelivered-findings-exit-3", "cli/common.py",
       "finish(findings=findings, complete=False)",
       "finish(findings=False, complete=False)", OWN),
)  # fmt: skip


@dataclass(frozen=True)
class Result:
    mutant: Mutant
    outcome: str  # killed, survived, timeout, stale
    by: str  # the first failing test, or ""
    seconds: float


_FAILED = re.compile(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", re.MULTILINE)


def run_tests(copy: Path, tests: tuple[str, ...]) -> tuple[int | None, str]:
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("NBIA_AUDIT_CRASHPOINT", None)
    command = [
        sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-rfE",
        *(f"tests/{t}" for t in tests),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, cwd=copy, env=env, capture_output=True, text=True, timeout=TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return None, ""
    return done.returncode, done.stdout + done.stderr


def run_mutant(copy: Path, mutant: Mutant) -> Result:
    source = copy / "nbia_audit" / mutant.path
    original = source.read_text(encoding="utf-8")
    if original.count(mutant.old) != 1:
        return Result(mutant, "stale", f"text found {original.count(mutant.old)} times", 0.0)
    started = time.monotonic()
    source.write_text(original.replace(mutant.old, mutant.new), encoding="utf-8")
    try:
        code, output = run_tests(copy, mutant.tests)
    finally:
        source.write_text(original, encoding="utf-8")
    seconds = time.monotonic() - started
    if code is None:
        return Result(mutant, "killed", f"(tests hung past {TIMEOUT} s)", seconds)
    if code == 0:
        return Result(mutant, "survived", "", seconds)
    failed = _FAILED.search(output)
    by = failed.group(1) if failed else f"(pytest exit {code})"
    return Result(mutant, "killed", by, seconds)


def markdown(results: list[Result], command: str) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    killed = sum(r.outcome == "killed" for r in results)
    lines = [
        f"Run `{command}` on {when}: {killed} of {len(results)} mutants killed.",
        "",
        "| mutant | file | result | killed by |",
        "|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r.mutant.name} | {r.mutant.path} | {r.outcome} | {r.by} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default="", help="only mutants whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--markdown", type=Path, help="also write the table here (Markdown)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if args.k in m.name]
    if args.list:
        for m in chosen:
            print(f"{m.name:50} {m.path}")
        return 0
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="nbia-mutants-") as folder:
        copy = Path(folder) / "tree"
        shutil.copytree(ROOT, copy, ignore=SKIP)
        for group in sorted({m.tests for m in chosen}):
            code, output = run_tests(copy, group)
            if code != 0:
                print(f"the unmutated tests fail ({' '.join(group)}):\n{output[-3000:]}")
                return 2
        for m in chosen:
            result = run_mutant(copy, m)
            results.append(result)
            print(f"{m.name:50} {result.outcome:9} {result.by}  ({result.seconds:.0f} s)",
                  flush=True)  # fmt: skip
    if args.markdown:
        command = "python scripts/mutation_pass.py" + (f" -k {args.k}" if args.k else "")
        args.markdown.write_text(markdown(results, command), encoding="utf-8")
    if any(r.outcome == "stale" for r in results):
        return 2
    return 1 if any(r.outcome == "survived" for r in results) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the temporary copy is already gone; the tree was never touched
        print("interrupted", file=sys.stderr)
        sys.exit(130)
