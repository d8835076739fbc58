"""A stand-in for a batch scheduler's submit command, to run generated job-array scripts locally.

``fake_scheduler(folder)`` puts an ``sbatch`` and a ``qsub`` on a PATH folder. Each records the
script it was fed on standard input and its arguments, and prints a job id the way the real one
does (``sbatch --parsable``: ``7001;cluster``, ``qsub`` of an array: ``7001[].server``).
``Submission`` reads them back; ``run_array`` then runs the array's tasks as the scheduler
would (the task index in its variable), a few at a time, and ``run_job`` runs one job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_SUBMIT = """#!{python}
import json, os, pathlib, sys
jobs = pathlib.Path({jobs!r})
number = 7001 + len(list(jobs.glob("*.sh")))
(jobs / f"{{number}}.sh").write_text(sys.stdin.read())
(jobs / f"{{number}}.json").write_text(json.dumps(sys.argv))
array = "-J" in sys.argv or any(a.startswith("--array") for a in sys.argv)
if {name!r} == "sbatch":
    print(f"{{number}};cluster")
else:
    print(f"{{number}}[].server" if array else f"{{number}}.server")
"""


@dataclass(frozen=True)
class Submission:
    """One job the script submitted: its argv (``sbatch``/``qsub`` first) and its script."""

    argv: list[str]
    script: Path


def fake_scheduler(folder: Path) -> tuple[Path, Path]:
    """Install fake ``sbatch`` and ``qsub`` in ``folder/bin``; jobs are kept in ``folder/jobs``."""
    bin_dir, jobs = folder / "bin", folder / "jobs"
    bin_dir.mkdir(parents=True)
    jobs.mkdir()
    for name in ("sbatch", "qsub"):
        tool = bin_dir / name
        tool.write_text(_SUBMIT.format(python=sys.executable, jobs=str(jobs), name=name))
        tool.chmod(0o755)
    return bin_dir, jobs


def submit(script_text: str, folder: Path) -> list[Submission]:
    """Run a generated driver script with the fake scheduler; the jobs it submitted, in order."""
    bin_dir, jobs = fake_scheduler(folder)
    driver = folder / "submit.sh"
    driver.write_text(script_text)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", str(driver)], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    found = []
    for script in sorted(jobs.glob("*.sh")):
        argv = json.loads(script.with_suffix(".json").read_text())
        found.append(Submission([Path(argv[0]).name, *argv[1:]], script))
    return found


def run_job(script: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run one job's script as a compute node would (bash, the given environment)."""
    return subprocess.run(
        ["bash", str(script)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


def run_array(
    script: Path, variable: str, indices: Iterable[int], at_once: int = 2
) -> dict[int, subprocess.CompletedProcess[str]]:
    """Run an array's tasks as local processes, ``at_once`` at a time, index in ``variable``."""
    results: dict[int, subprocess.CompletedProcess[str]] = {}
    pending = list(indices)
    while pending:
        batch, pending = pending[:at_once], pending[at_once:]
        running = {
            index: subprocess.Popen(
                ["bash", str(script)],
                env={**os.environ, variable: str(index)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for index in batch
        }
        for index, process in running.items():
            out, err = process.communicate()
            results[index] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return results
