"""A generated job-array script, run for real: its tasks as local processes, then its merge.

The script from ``cluster-script`` is run with bash against stand-ins for ``sbatch``/``qsub``
(tests/support/scheduler.py), which keep the job scripts; the array's tasks then run two at a
time with ``SLURM_ARRAY_TASK_ID`` (``PBS_ARRAY_INDEX``) set, as nodes would run them, each a
real ``python -m nbia_audit`` process, and the merge job after them. Its verdict must be the
one a single process gives; a task that never ran must make the merge say incomplete.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.verify.run import verify_copy
from tests.support.cli import run_cli
from tests.support.fetch import classic_paths, state_paths, tree
from tests.support.scheduler import Submission, run_array, run_job, submit
from tests.support.verify import clone, kinds

SPEC = CorpusSpec(seed=12, collections=2, patients=2, studies=1, series=3, images=3)
VARIABLE = {"slurm": "SLURM_ARRAY_TASK_ID", "pbs": "PBS_ARRAY_INDEX"}


def _verdict(text: str, root: Path) -> list[str]:
    """The verdict line, the series line and the findings of a text report (facts aside)."""
    lines = text.replace(str(root), "COPY").splitlines()
    series = next(i for i, line in enumerate(lines) if line.startswith("  series:"))
    return [lines[0], *lines[series:]]


def _one_process(lock: Path, root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbia_audit", "verify", str(lock), str(root)],
        capture_output=True,
        text=True,
        check=False,
    )


def _jobs(
    tmp_path: Path, scheduler: str, verb: str, lock: Path, target: Path, shards: int
) -> list[Submission]:
    result = run_cli(
        "cluster-script", scheduler, "--verb", verb, "--shards", shards, lock, target,
        "--run-dir", tmp_path / "run",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return submit(result.stdout, tmp_path / "scheduler")


@pytest.mark.parametrize("scheduler", ["slurm", "pbs"])
def test_a_verify_array_and_its_merge_give_the_one_process_verdict(
    tmp_path: Path, lock: Path, tampered: Path, scheduler: str
) -> None:
    one = _one_process(lock, clone(tampered, tmp_path / "one"))
    root = clone(tampered, tmp_path / "copy")
    array, merge = _jobs(tmp_path, scheduler, "verify", lock, root, 3)
    tasks = run_array(array.script, VARIABLE[scheduler], [1, 2, 3], at_once=2)
    assert all(done.returncode == 0 for done in tasks.values()), tasks
    merged = run_job(merge.script)
    assert one.returncode == merged.returncode == 1, merged.stderr
    assert _verdict(merged.stdout, root) == _verdict(one.stdout, tmp_path / "one")
    assert kinds(verify_copy(lock, root)) == kinds(verify_copy(lock, tmp_path / "one"))


def test_a_task_that_never_ran_makes_the_merge_incomplete(
    tmp_path: Path, lock: Path, tampered: Path
) -> None:
    root = clone(tampered, tmp_path / "copy")
    array, merge = _jobs(tmp_path, "slurm", "verify", lock, root, 3)
    run_array(array.script, "SLURM_ARRAY_TASK_ID", [1, 3])  # task 2 lost with its node
    merged = run_job(merge.script)
    assert merged.returncode == 3, merged.stdout + merged.stderr
    assert "2/3" in merged.stderr
    assert "clean" not in merged.stdout.lower()


def test_a_fetch_array_places_what_one_process_places(
    tmp_path: Path, emu: Emulator, lock: Path
) -> None:
    dest = tmp_path / "dest"
    array, merge = _jobs(tmp_path, "slurm", "fetch", lock, dest, 3)
    tasks = run_array(array.script, "SLURM_ARRAY_TASK_ID", [1, 2, 3], at_once=2)
    assert all(done.returncode == 0 for done in tasks.values()), tasks
    merged = run_job(merge.script)
    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert tree(dest) == classic_paths(emu)
    assert state_paths(dest) == classic_paths(emu)  # the merge recorded every placed file
    assert verify_copy(lock, dest).clean
