"""The Dask executor on a real LocalCluster: 2 worker processes, one thread each.

A verify through Dask gives the same verdict as one process; a worker killed while a shard runs
(it kills itself at a named crash point, the moment the shard reports progress or starts: no
sleep, no race) leaves a result that is exact and complete once Dask gives the task to another
worker, or a run that says it is incomplete (exit 3), never a clean report.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbia_audit.crashpoints import CRASHPOINT_ENV
from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.engines.daskexec import DaskTarget, fetch_with_dask, verify_with_dask
from nbia_audit.errors import ShardsIncomplete
from nbia_audit.fetch.run import fetch_dataset
from nbia_audit.findings import AuditReport
from nbia_audit.verify.run import verify_copy
from tests.support.cli import run_cli
from tests.support.fetch import FAST_SERIES, classic_paths, client_for, state_paths, tree
from tests.support.verify import (
    clone,
    kinds,
)

distributed = pytest.importorskip("distributed")

SPEC = CorpusSpec(seed=11, collections=2, patients=2, studies=1, series=2, images=3)


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.LocalCluster]:
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as running:
        yield running


def _worker_pids(client: distributed.Client) -> set[int]:
    return set(client.run(os.getpid).values())


def _arm(point: str) -> None:
    """Run on a worker: die at ``point`` (a restarted worker starts without it)."""
    os.environ[CRASHPOINT_ENV] = point


def _same_verdict(ours: AuditReport, one_process: AuditReport) -> None:
    assert kinds(ours) == kinds(one_process)
    assert ours.complete and one_process.complete
    assert [(s.series_uid, s.status) for s in ours.series] == [
        (s.series_uid, s.status) for s in one_process.series
    ]


# -- verify --------------------------------------------------------------------------------


def test_verify_through_dask_matches_one_process(
    cluster: distributed.LocalCluster, lock: Path, tampered: Path, tmp_path: Path
) -> None:
    one = verify_copy(lock, clone(tampered, tmp_path / "one"))
    ours = verify_with_dask(
        lock,
        clone(tampered, tmp_path / "dask"),
        target=DaskTarget(address=cluster.scheduler_address),
        shards=3,
        run_dir=tmp_path / "run",
    )
    assert one.findings  # the copy is tampered: a clean pair would prove little
    _same_verdict(ours, one)
    assert list((tmp_path / "run").iterdir()) == []  # merged, then tidied


def test_a_worker_killed_mid_run_still_gives_the_exact_verdict(
    cluster: distributed.LocalCluster, lock: Path, tampered: Path, tmp_path: Path
) -> None:
    one = verify_copy(lock, clone(tampered, tmp_path / "one"))
    with distributed.Client(cluster) as client:
        before = _worker_pids(client)
        # Each worker dies in the middle of its first shard, while it reads files.
        client.run(_arm, "engines:shard-progress")
        ours = verify_with_dask(
            lock,
            clone(tampered, tmp_path / "dask"),
            target=DaskTarget(address=cluster.scheduler_address),
            shards=4,
            run_dir=tmp_path / "run",
        )
        after = _worker_pids(client)
    assert not before & after  # both workers were killed and replaced by their nannies
    _same_verdict(ours, one)


def test_shards_that_keep_dying_make_the_run_incomplete(
    lock: Path, tampered: Path, tmp_path: Path
) -> None:
    dask_config = pytest.importorskip("dask").config
    # Every worker, restarted ones too, dies on every shard; Dask gives up on the first death.
    with (
        dask_config.set({"distributed.scheduler.allowed-failures": 0}),
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            env={CRASHPOINT_ENV: "engines:shard-started"},
        ) as doomed,
    ):
        target = DaskTarget(address=doomed.scheduler_address)
        with pytest.raises(ShardsIncomplete) as raised:
            verify_with_dask(lock, tampered, target=target, shards=2, run_dir=tmp_path / "r1")
        assert raised.value.missing == ("1/2", "2/2")
        assert any((tmp_path / "r1").iterdir())  # the run folder is kept for the record
        result = run_cli(
            "verify", lock, tampered, "--executor", "dask", "--scheduler",
            doomed.scheduler_address, "--shards", "2", "--run-dir", tmp_path / "r2",
        )  # fmt: skip
    assert result.exit_code == 3, result.output
    assert "did not complete" in result.stderr and "incomplete" in result.stderr
    assert result.stdout == ""  # no report: nothing was judged


def test_the_cli_default_starts_a_local_cluster(lock: Path, tampered: Path, tmp_path: Path) -> None:
    embedded = run_cli("verify", lock, clone(tampered, tmp_path / "one"))
    dask = run_cli("verify", lock, clone(tampered, tmp_path / "dask"), "--executor", "dask")
    assert embedded.exit_code == dask.exit_code == 1

    # The same verdict, series line and findings, line for line (facts may differ: the
    # merge says it was merged, and from how many shards).
    assert _verdict(dask.stdout, tmp_path / "dask") == _verdict(embedded.stdout, tmp_path / "one")


def _verdict(text: str, root: Path) -> list[str]:
    lines = text.replace(str(root), "COPY").splitlines()
    series = next(i for i, line in enumerate(lines) if line.startswith("  series:"))
    return [lines[0], *lines[series:]]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler needs --executor dask"),
        (["--shards", "3"], "--shards needs --executor dask"),
        (
            ["--executor", "dask", "--scheduler", "a", "--scheduler-file", "f"],
            "not both",
        ),
        (["--run-dir", "r"], "--run-dir needs --executor dask"),
        (["--executor", "dask", "--merge", "r"], "--merge is for one shard by hand"),
        (
            ["--executor", "dask", "--shard", "1/2", "--shard-dir", "r"],
            "--shard is for one shard by hand",
        ),
    ],
)
def test_executor_options_are_checked(
    lock: Path, tmp_path: Path, args: list[str], said: str
) -> None:
    result = run_cli("verify", lock, tmp_path, *args)
    assert result.exit_code == 2 and said in result.stderr


# -- fetch ---------------------------------------------------------------------------------


def test_fetch_through_dask_places_what_one_process_places(
    cluster: distributed.LocalCluster, emu: Emulator, lock: Path, tmp_path: Path
) -> None:
    with distributed.Client(cluster) as client:
        before = _worker_pids(client)
        client.run(_arm, "fetch:placed")  # a worker dies after placing a series, mid-shard
        report = fetch_with_dask(
            lock,
            tmp_path / "dask",
            target=DaskTarget(address=cluster.scheduler_address),
            shards=3,
            run_dir=tmp_path / "run",
            retry=FAST_SERIES,
        )
        after = _worker_pids(client)
    assert before - after  # a worker was killed mid-shard and its task ran again elsewhere
    with client_for(emu.base_url) as archive:
        one = fetch_dataset(lock, tmp_path / "one", archive, retry=FAST_SERIES)  # type: ignore[arg-type]
    assert not report.failed and not one.failed
    assert tree(tmp_path / "dask") == tree(tmp_path / "one") == classic_paths(emu)
    assert state_paths(tmp_path / "dask") == state_paths(tmp_path / "one")
    assert verify_copy(lock, tmp_path / "dask").clean


def test_fetch_through_dask_from_the_command_line(
    cluster: distributed.LocalCluster, emu: Emulator, lock: Path, tmp_path: Path
) -> None:
    result = run_cli(
        "fetch", lock, "--dest", tmp_path / "dest", "--executor", "dask", "--scheduler",
        cluster.scheduler_address, "--shards", "2", "--run-dir", tmp_path / "run", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"Fetched {len(emu.corpus.series)} series" in result.stdout
    assert tree(tmp_path / "dest") == classic_paths(emu)
    again = run_cli("fetch", lock, "--dest", tmp_path / "dest", "--executor", "dask",
                    "--series", emu.corpus.series[0].series_uid)  # fmt: skip
    assert again.exit_code == 2 and "--series is not for --executor dask" in again.stderr
