"""fetch's work folders on a destination other runs may share (several shards, several
nodes): a run never deletes another run's work, removes only what provably dead runs left,
and refuses clearly where it cannot lock."""

from __future__ import annotations

import errno
import fcntl
import subprocess
import sys
from pathlib import Path

import pytest

from nbia_audit.errors import DownloadError
from nbia_audit.fetch.placement import RunId, Workspace, _lock_refusal, filesystem_of


def work_file(workspace: Workspace, text: str) -> Path:
    path = workspace.workdir("series") / "000001.dcm"
    path.write_text(text)
    return path


def test_two_shards_on_one_destination_never_delete_each_others_work(tmp_path: Path) -> None:
    with Workspace(tmp_path, lock_name="fetch-1-of-2") as first:
        mine = work_file(first, "first")
        with Workspace(tmp_path, lock_name="fetch-2-of-2") as second:
            theirs = work_file(second, "second")
            assert mine.read_text() == "first"  # the second's start cleared nothing of it
            assert first.run_dir != second.run_dir
        assert mine.read_text() == "first" and not theirs.exists()  # each removes its own
        assert not second.run_dir.exists()
    assert not first.run_dir.exists() and first.tmp.is_dir()


def test_a_shard_excludes_the_same_shard_and_a_whole_fetch(tmp_path: Path) -> None:
    with Workspace(tmp_path, lock_name="fetch-1-of-2") as shard:
        kept = work_file(shard, "kept")
        with pytest.raises(DownloadError, match="another nbia-audit fetch.*fetch-1-of-2.lock"):
            Workspace(tmp_path, lock_name="fetch-1-of-2").__enter__()
        with pytest.raises(DownloadError, match="another nbia-audit fetch.*fetch.lock"):
            Workspace(tmp_path).__enter__()
        assert kept.read_text() == "kept"
    with Workspace(tmp_path) as whole:  # the shard is done: the whole destination is free
        assert whole.run_dir.is_dir()


def gone_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_provably_dead_runs_folders_are_removed(tmp_path: Path) -> None:
    me = RunId.mine()
    tmp = tmp_path / ".nbia-audit" / "tmp"
    folders = {
        "dead here": RunId(me.host, me.boot, gone_pid(), "aaaa0001"),
        "earlier boot here": RunId(me.host, "0badb007", 1, "aaaa0002"),
        "alive here": RunId(me.host, me.boot, me.pid, "aaaa0003"),  # this very process
        "another host": RunId("node-17", me.boot, gone_pid(), "aaaa0004"),
        "dead pid, lock held": RunId(me.host, me.boot, gone_pid(), "aaaa0005"),
    }
    for run in folders.values():
        (tmp / str(run)).mkdir(parents=True)
        (tmp / str(run) / "000001.dcm").write_text("half an image")
        (tmp / str(run) / "owner.lock").touch()
    legacy = tmp / "series-abc"  # an older release's layout
    legacy.mkdir()
    # Someone holds the last one's flock (a run whose pid this host cannot see).
    with open(tmp / str(folders["dead pid, lock held"]) / "owner.lock", "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with Workspace(tmp_path, lock_name="fetch-1-of-1") as shard:
            left = {p.name for p in tmp.iterdir()} - {shard.run_dir.name}
            assert shard.foreign_runs == (str(folders["another host"]),)
    assert left == {
        str(folders["alive here"]), str(folders["another host"]),
        str(folders["dead pid, lock held"]), legacy.name,  # a shard leaves the old layout
    }  # fmt: skip
    with Workspace(tmp_path):  # the whole destination's lock: the old layout goes too
        assert not legacy.exists()
    assert (tmp / str(folders["another host"]) / "000001.dcm").read_text() == "half an image"


def test_a_run_id_round_trips_and_other_names_are_not_runs() -> None:
    me = RunId.mine()
    assert RunId.parse(str(me)) == me and "_" not in me.host
    assert RunId.parse("series-abc") is None
    assert RunId.parse("a_b_notapid_c") is None


def test_no_flock_is_a_clear_refusal_naming_the_file_system(tmp_path: Path) -> None:
    for code in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
        error = _lock_refusal(tmp_path, tmp_path / "fetch.lock", OSError(code, "no locks"))
        text = str(error)
        assert "does not support file locks" in text and filesystem_of(tmp_path) in text
        assert "-o flock" in text and "docs/shared-filesystems.md" in text
    held = _lock_refusal(tmp_path, tmp_path / "fetch.lock", OSError(errno.EWOULDBLOCK, "busy"))
    assert "another nbia-audit fetch" in str(held)


def test_the_file_system_is_named_by_its_mount() -> None:
    assert filesystem_of(Path("/proc/self")).startswith("proc mounted at /proc")


def test_a_lock_name_is_a_plain_name(tmp_path: Path) -> None:
    for bad in ("", "../fetch", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="lock name"):
            Workspace(tmp_path, lock_name=bad)
