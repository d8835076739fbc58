"""Job-array scripts for SLURM and PBS: one array task per shard, then a dependent merge.

``array_script`` is a pure function from what the user asked (``ArrayJob``) to the text of a
bash script meant to be run once on a login node. It submits two jobs, each script fed to the
scheduler on standard input:

- an array of N tasks; task K runs ``nbia-audit VERB ... --shard K/N --shard-dir RUN``, K taken
  from the scheduler's own variable (``SLURM_ARRAY_TASK_ID``, ``PBS_ARRAY_INDEX``) when the task
  runs, 1-based like the shards;
- the merge, held until every task has ended in any state (``afterany``): a task that failed or
  was killed leaves no shard file, and the merge then says so and exits 3 (incomplete), which a
  dependency on success (``afterok``) would never let it say.

Every value the user gave reaches the shell through ``shlex.quote`` exactly once: the job
scripts sit in quoted here-documents (nothing in them is expanded at submission), and the
scheduler options are arguments of ``sbatch``/``qsub`` on the driver's command line.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath

__all__ = ["SCHEDULERS", "VERBS", "ArrayJob", "JobArrayError", "array_script", "task_variable"]

SCHEDULERS = ("slurm", "pbs")
VERBS = ("verify", "fetch")

# The variable each scheduler sets to the index of an array task.
_TASK_VARIABLE = {"slurm": "SLURM_ARRAY_TASK_ID", "pbs": "PBS_ARRAY_INDEX"}
_TASKS_END = "NBIA_AUDIT_TASKS"
_MERGE_END = "NBIA_AUDIT_MERGE"


class JobArrayError(ValueError):
    """What was asked cannot make a correct script (the message says which option and why)."""


@dataclass(frozen=True, slots=True)
class ArrayJob:
    """A sharded run as a job array: what to run, where, and what to ask the scheduler for.

    ``directory`` is the copy for ``verify`` and the destination for ``fetch``. Paths should be
    absolute: a PBS job starts in the user's home folder, not where it was submitted.
    ``command`` is how a compute node runs nbia-audit (for example the same Python
    interpreter: ``(sys.executable, "-m", "nbia_audit")``). ``verb_options`` go to every task
    (not the merge, which reads them back from the shard files); ``merge_options`` to the merge
    only (``--format json --output FILE``); ``scheduler_options`` are passed verbatim to both
    submissions.
    """

    scheduler: str
    verb: str
    shards: int
    lock: PurePath
    directory: PurePath
    run_dir: PurePath
    command: tuple[str, ...]
    verb_options: tuple[str, ...] = ()
    merge_options: tuple[str, ...] = ()
    time: str | None = None
    mem: str | None = None
    cpus: int | None = None
    partition: str | None = None
    scheduler_options: tuple[str, ...] = field(default=())
    name: str = "nbia-audit"


def task_variable(scheduler: str) -> str:
    """The environment variable holding an array task's index under ``scheduler``."""
    return _TASK_VARIABLE[scheduler]


def array_script(job: ArrayJob) -> str:
    """The bash script that submits ``job``'s array and its dependent merge."""
    _check(job)
    task = _verb_line(job, shard=f'"${{{task_variable(job.scheduler)}:?not an array task}}"')
    merge = _verb_line(job, shard=None)
    logs = job.run_dir / "logs"
    if job.scheduler == "slurm":
        array_submit = _join(
            ["sbatch", "--parsable", f"--array=1-{job.shards}", f"--job-name={job.name}-{job.verb}"]
            + _slurm_resources(job)
            + [f"--output={logs / '%x-%A_%a.out'}"]
            + list(job.scheduler_options)
        )
        merge_submit = _join(
            ["sbatch", "--parsable", f"--job-name={job.name}-{job.verb}-merge"]
            + _slurm_resources(job, merge=True)
            + [f"--output={logs / '%x-%j.out'}"]
            + list(job.scheduler_options)
        )
        # --parsable prints "jobid" or "jobid;cluster"; the dependency wants the id.
        dependency = '--dependency="afterany:${array_job%%;*}"'
    else:
        array_submit = _join(
            ["qsub", "-J", f"1-{job.shards}", "-N", f"{job.name}-{job.verb}", "-S", "/bin/bash"]
            + _pbs_resources(job)
            + ["-o", f"{logs}/", "-j", "oe"]
            + list(job.scheduler_options)
        )
        merge_submit = _join(
            ["qsub", "-N", f"{job.name}-{job.verb}-merge", "-S", "/bin/bash"]
            + _pbs_resources(job, merge=True)
            + ["-o", f"{logs}/", "-j", "oe"]
            + list(job.scheduler_options)
        )
        # qsub prints the array's id ("1234[].server"), which is what the dependency names.
        dependency = '-W depend="afterany:${array_job}"'
    lines = [
        "#!/usr/bin/env bash",
        f"# nbia-audit {job.verb} in {job.shards} shards as a {job.scheduler.upper()} job array,",
        "# then one merge job that runs once every task has ended (afterany: a failed task",
        "# leaves its shard missing, and the merge then reports the run incomplete, exit 3).",
        "# Run this once on a login node: bash THIS-FILE",
        "set -euo pipefail",
        _join(["mkdir", "-p", str(logs)]),
        f"array_job=$({array_submit} <<'{_TASKS_END}'",
        "#!/usr/bin/env bash",
        "set -eu",
        f"exec {task}",
        _TASKS_END,
        ")",
        'echo "submitted the shards: ${array_job}"',
        f"merge_job=$({merge_submit} {dependency} <<'{_MERGE_END}'",
        "#!/usr/bin/env bash",
        "set -eu",
        f"exec {merge}",
        _MERGE_END,
        ")",
        f'echo "submitted the merge: ${{merge_job}}; logs in" {_quoted(str(logs))}',
    ]
    return "\n".join(lines) + "\n"


def _check(job: ArrayJob) -> None:
    if job.scheduler not in SCHEDULERS:
        raise JobArrayError(f"scheduler {job.scheduler!r}: use one of {', '.join(SCHEDULERS)}")
    if job.verb not in VERBS:
        raise JobArrayError(f"verb {job.verb!r}: use one of {', '.join(VERBS)}")
    if job.shards < 1:
        raise JobArrayError(f"--shards {job.shards}: a run needs at least one shard")
    if job.scheduler == "pbs" and job.shards < 2:
        # PBS refuses an array of one subjob; one shard is one plain job (or no shards at all).
        raise JobArrayError("--shards 1: a PBS job array needs at least 2 tasks")
    if not job.command:
        raise JobArrayError("the command that runs nbia-audit is empty")
    if job.cpus is not None and job.cpus < 1:
        raise JobArrayError(f"--cpus {job.cpus}: a task needs at least one")
    for text in (job.lock, job.directory, job.run_dir):
        if "\n" in str(text) or "\0" in str(text):
            # A here-document line cannot hold a newline; no path of ours should.
            raise JobArrayError(f"{str(text)!r}: a path with a newline cannot go in a job script")
    for word in (*job.command, *job.verb_options, *job.merge_options, *job.scheduler_options):
        if "\n" in word or "\0" in word:
            raise JobArrayError(f"{word!r}: an option with a newline cannot go in a job script")


def _verb_line(job: ArrayJob, *, shard: str | None) -> str:
    """One task's (``shard`` set, already shell text) or the merge's command line."""
    words: list[str] = [*job.command, job.verb, str(job.lock)]
    if job.verb == "verify":
        words.append(str(job.directory))
    else:
        words += ["--dest", str(job.directory)]
    if shard is None:
        return _join([*words, "--merge", str(job.run_dir), *job.merge_options])
    line = _join([*words, *job.verb_options])
    return f"{line} --shard {shard}/{job.shards} --shard-dir {_quoted(str(job.run_dir))}"


def _slurm_resources(job: ArrayJob, *, merge: bool = False) -> list[str]:
    options = []
    if job.time:
        options.append(f"--time={job.time}")
    if job.partition:
        options.append(f"--partition={job.partition}")
    if job.mem:
        options.append(f"--mem={job.mem}")
    if job.cpus and not merge:
        options.append(f"--cpus-per-task={job.cpus}")
    return options


def _pbs_resources(job: ArrayJob, *, merge: bool = False) -> list[str]:
    options = []
    if job.time:
        options += ["-l", f"walltime={job.time}"]
    if job.partition:
        options += ["-q", job.partition]
    chunk = [f"ncpus={job.cpus}"] if job.cpus and not merge else []
    if job.mem:
        chunk.append(f"mem={job.mem}")
    if chunk:
        options += ["-l", ":".join(["select=1", *chunk])]
    return options


def _quoted(word: str) -> str:
    return shlex.quote(word)


def _join(words: Sequence[str]) -> str:
    return " ".join(_quoted(word) for word in words)
