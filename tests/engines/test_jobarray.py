"""``cluster-script``: the generated script submits an array of shards and a merge after it.

The script is run for real with bash, against stand-ins for ``sbatch`` and ``qsub`` that record
what they were given (tests/support/scheduler.py); the job scripts they received are then run
as the scheduler would, with the array index in its own variable. Here nbia-audit itself is
replaced (``--nbia-audit``) by a program that prints its arguments, so the quoting of every
path is checked word for word; tests/engines/test_jobarray_run.py runs the real verbs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from nbia_audit.engines.jobarray import ArrayJob, JobArrayError, array_script
from tests.support.cli import run_cli
from tests.support.scheduler import run_array, run_job, submit

# Paths a shell would split, expand or run if they were not quoted.
AWKWARD = 'a dir/it\'s $HOME; `echo no` & "x" *'

_ECHO_ARGS = "import json, sys; print(json.dumps(sys.argv[1:]))"


def _echo_runner(folder: Path) -> str:
    script = folder / "echo args.py"
    script.write_text(_ECHO_ARGS)
    return f"{sys.executable} '{script}'"


def _script(tmp_path: Path, scheduler: str, verb: str, *extra: str, shards: int = 3) -> str:
    base = tmp_path / AWKWARD
    result = run_cli(
        "cluster-script", scheduler, "--verb", verb, "--shards", shards,
        base / "data set.lock", base / "copy", "--run-dir", base / "run",
        "--nbia-audit", _echo_runner(tmp_path), *extra,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize(
    ("scheduler", "variable"), [("slurm", "SLURM_ARRAY_TASK_ID"), ("pbs", "PBS_ARRAY_INDEX")]
)
def test_tasks_run_their_shard_and_the_merge_waits_for_all(
    tmp_path: Path, scheduler: str, variable: str
) -> None:
    text = _script(
        tmp_path, scheduler, "verify", "--level", "quick", "--time", "2:00:00",
        "--merge-option=--format=json", "--merge-option=--output", f"--merge-option={AWKWARD}",
    )  # fmt: skip
    array, merge = submit(text, tmp_path / "sched")
    base = tmp_path / AWKWARD
    assert (base / "run" / "logs").is_dir()  # the scheduler writes its logs there

    if scheduler == "slurm":
        assert array.argv[0] == "sbatch" and "--array=1-3" in array.argv
        assert "--time=2:00:00" in array.argv and "--time=2:00:00" in merge.argv
        # afterany: the merge runs even when a task failed, and then says what is missing.
        assert "--dependency=afterany:7001" in merge.argv
    else:
        assert array.argv[:3] == ["qsub", "-J", "1-3"]
        assert "walltime=2:00:00" in array.argv
        assert "depend=afterany:7001[].server" in merge.argv

    tasks = run_array(array.script, variable, [1, 2, 3])
    for index, done in tasks.items():
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == [
            "verify", str(base / "data set.lock"), str(base / "copy"), "--level", "quick",
            "--shard", f"{index}/3", "--shard-dir", str(base / "run"),
        ]  # fmt: skip
    merged = run_job(merge.script)
    assert json.loads(merged.stdout) == [
        "verify", str(base / "data set.lock"), str(base / "copy"), "--merge", str(base / "run"),
        "--format=json", "--output", AWKWARD,
    ]  # fmt: skip


def test_a_task_run_outside_an_array_refuses(tmp_path: Path) -> None:
    array, _ = submit(_script(tmp_path, "slurm", "verify"), tmp_path / "sched")
    done = run_job(array.script, {"SLURM_ARRAY_TASK_ID": ""})
    assert done.returncode != 0 and "not an array task" in done.stderr
    assert done.stdout == ""


def test_fetch_tasks_take_the_destination_and_the_verb_options(tmp_path: Path) -> None:
    text = _script(
        tmp_path, "slurm", "fetch", "--layout", "flat", "--cpus", "4", "--mem", "8G",
        "--partition", "long", "--scheduler-option=--account=proj x", shards=2,
    )  # fmt: skip
    array, merge = submit(text, tmp_path / "sched")
    base = tmp_path / AWKWARD
    assert {"--cpus-per-task=4", "--mem=8G", "--partition=long", "--account=proj x"} <= set(
        array.argv
    )
    assert "--cpus-per-task=4" not in merge.argv  # the merge is one process
    assert "--account=proj x" in merge.argv
    done = run_array(array.script, "SLURM_ARRAY_TASK_ID", [2])[2]
    assert json.loads(done.stdout) == [
        "fetch", str(base / "data set.lock"), "--dest", str(base / "copy"),
        "--layout", "flat", "--workers", "4", "--shard", "2/2", "--shard-dir", str(base / "run"),
    ]  # fmt: skip
    assert json.loads(run_job(merge.script).stdout)[-2:] == ["--merge", str(base / "run")]


def test_the_default_command_is_the_python_that_made_the_script(tmp_path: Path) -> None:
    result = run_cli(
        "cluster-script", "slurm", "--verb", "verify", "--shards", "2", tmp_path / "l.lock",
        tmp_path / "c", "--run-dir", tmp_path / "r",
    )  # fmt: skip
    assert result.exit_code == 0
    assert f"exec {sys.executable} -m nbia_audit verify " in result.stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--verb", "verify", "--sample", "0.1"], "--sample in shards needs --seed"),
        (["--verb", "verify", "--seed", "4"], "--seed needs --sample"),
        (["--verb", "verify", "--layout", "flat"], "--layout is an option of fetch"),
        (["--verb", "fetch", "--level", "stat"], "--level is an option of verify"),
        (["--verb", "verify", "--nbia-audit", "'unclosed"], "No closing quotation"),
        (["--verb", "verify", "--shards", "0"], "--shards"),
    ],
)
def test_bad_requests_are_usage_errors(tmp_path: Path, args: list[str], said: str) -> None:
    shards = [] if "--shards" in args else ["--shards", "2"]
    result = run_cli(
        "cluster-script", "slurm", tmp_path / "l.lock", tmp_path / "c", "--run-dir",
        tmp_path / "r", *shards, *args,
    )  # fmt: skip
    assert result.exit_code == 2
    assert said in result.stderr
    assert result.stdout == ""


def test_pbs_refuses_an_array_of_one(tmp_path: Path) -> None:
    result = run_cli(
        "cluster-script", "pbs", "--verb", "verify", "--shards", "1", tmp_path / "l.lock",
        tmp_path / "c", "--run-dir", tmp_path / "r",
    )  # fmt: skip
    assert result.exit_code == 2 and "at least 2 tasks" in result.stderr


def test_a_path_with_a_newline_is_refused() -> None:
    job = ArrayJob(
        scheduler="slurm", verb="verify", shards=2, lock=Path("/l.lock"),
        directory=Path("/copy\nrm -rf ~"), run_dir=Path("/run"), command=("nbia-audit",),
    )  # fmt: skip
    with pytest.raises(JobArrayError, match="newline"):
        array_script(job)
