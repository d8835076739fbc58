"""`nbia-audit fetch --shard K/N --shard-dir RUN` and `--merge RUN`: each shard fetches only
its own series and writes no shared state; the merge records everything and reports the
union, or exits 3 naming missing or foreign shards."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbia_audit.cli.common import ExitCode
from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.shards import assign_series
from nbia_audit.store.statefolder import STATE_DIR
from nbia_audit.store.textlock import read_text_lock
from nbia_audit.verify.run import verify_copy
from tests.support.cli import run_cli
from tests.support.fetch import classic_paths, make_lock, read_lock, state_paths, tree

SPEC = CorpusSpec(seed=21, collections=1, patients=3, studies=1, series=2, images=2)


def run(*args: object) -> tuple[int, str, str]:
    result = run_cli("fetch", *args)
    return result.exit_code, result.stdout, result.stderr


def owners(lock: Path, count: int) -> dict[str, int]:
    series = read_text_lock(lock).series
    return assign_series(((s.series_uid, s.bytes) for s in series), count)


def test_each_shard_fetches_its_own_series_and_the_merge_records_them_all(
    tmp_path: Path, emu: Emulator
) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    dest, run_dir = tmp_path / "data", tmp_path / "run"
    owner = owners(lock, 3)
    done: set[int] = set()
    for index in (2, 1, 3):  # any order
        code, out, err = run(lock, "--dest", dest, "--shard", f"{index}/3", "--shard-dir",
                             run_dir, "-q")  # fmt: skip
        assert code == ExitCode.CLEAN, err
        assert f"fetch shard {index}/3:" in out
        done.add(index)
        assert tree(dest) == classic_paths(emu, {u for u, k in owner.items() if k in done})
        # No shard writes the destination's state: the merge does, as the one writer.
        assert not (dest / STATE_DIR / "state.db").exists()
    assert tree(dest) == classic_paths(emu)
    assert sorted(p.name for p in run_dir.iterdir()) == [f"fetch-{k}-of-3.db" for k in (1, 2, 3)]
    code, out, err = run(lock, "--dest", dest, "--merge", run_dir)
    assert code == ExitCode.CLEAN, err
    assert "Fetched 6 series (12 images," in out and "0 failed." in out
    assert state_paths(dest) == classic_paths(emu)  # recorded: verify and resume can use them
    assert verify_copy(lock, dest, level="stat").clean
    code, out, _ = run(lock, "--dest", dest, "-q")  # an unsharded fetch resumes from them
    assert code == ExitCode.CLEAN and "Fetched 0 series" in out and "6 already in place" in out


def test_a_shard_run_again_resumes_and_keeps_its_records(tmp_path: Path, emu: Emulator) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    dest, run_dir = tmp_path / "data", tmp_path / "run"
    for round_ in range(2):
        before = len(emu.requests)
        for index in (1, 2):
            code, _, err = run(lock, "--dest", dest, "--shard", f"{index}/2", "--shard-dir",
                               run_dir, "-q")  # fmt: skip
            assert code == ExitCode.CLEAN, err
        downloads = [r for r in emu.requests[before:] if r.endpoint.startswith("getImage")]
        assert len(downloads) == (6 if round_ == 0 else 0)  # the second round fetches nothing
    code, out, _ = run(lock, "--dest", dest, "--merge", run_dir)
    assert code == ExitCode.CLEAN
    assert "Fetched 0 series" in out and "6 already in place" in out
    assert state_paths(dest) == classic_paths(emu)


def test_series_only_pins_go_into_the_lock_at_the_merge(tmp_path: Path, emu: Emulator) -> None:
    lock = make_lock(tmp_path / "lock", emu, series_only=True)
    dest, run_dir = tmp_path / "data", tmp_path / "run"
    for index in (1, 2):
        assert run(lock, "--dest", dest, "--shard", f"{index}/2", "--shard-dir", run_dir)[0] == 0
        assert read_lock(lock).images == ()  # the lock database has one writer: the merge
    code, out, _ = run(lock, "--dest", dest, "--merge", run_dir)
    assert code == ExitCode.CLEAN
    assert "Pinned the images of 6 series-only series" in out
    assert len(read_lock(lock).images) == 12
    assert verify_copy(lock, dest).clean


@pytest.mark.parametrize("problem", ["missing", "other N", "other dest"])
def test_the_merge_exits_3_on_missing_or_foreign_shards(
    tmp_path: Path, emu: Emulator, problem: str
) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    dest, run_dir = tmp_path / "data", tmp_path / "run"
    for index in (1, 2):
        assert run(lock, "--dest", dest, "--shard", f"{index}/2", "--shard-dir", run_dir)[0] == 0
    if problem == "missing":
        (run_dir / "fetch-2-of-2.db").unlink()
        words = "missing shard(s) 2/2"
    elif problem == "other N":
        other = tmp_path / "other"
        assert run(lock, "--dest", dest, "--shard", "1/3", "--shard-dir", other)[0] == 0
        (other / "fetch-1-of-3.db").rename(run_dir / "fetch-1-of-3.db")
        words = "refused (not of this run)"
    else:
        other = tmp_path / "other"
        assert run(lock, "--dest", tmp_path / "d2", "--shard", "2/2", "--shard-dir", other)[0] == 0
        (other / "fetch-2-of-2.db").replace(run_dir / "fetch-2-of-2.db")
        words = "it fetched into another folder"
    code, out, err = run(lock, "--dest", dest, "--merge", run_dir)
    assert code == ExitCode.ENVIRONMENT, err
    assert words in err and "Fetched" not in out
    assert not (dest / STATE_DIR / "state.db").exists()  # nothing recorded from a partial set


def test_shard_usage_errors_exit_2(tmp_path: Path, emu: Emulator) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    dest, run_dir = tmp_path / "data", tmp_path / "run"
    for args, words in [
        (("--shard", "1/2"), "--shard needs --shard-dir"),
        (("--shard", "2/1", "--shard-dir", run_dir), "K runs from 1 to N"),
        (("--merge", run_dir, "--series", "1.2"), "--series is not for shards"),
    ]:
        code, _, err = run(lock, "--dest", dest, *args)
        assert code == ExitCode.USAGE and words in err, (args, err)
