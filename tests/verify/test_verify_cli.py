"""`nbia-audit verify` on the command line: exit codes, formats, atomic --output, usage."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbia_audit.cli.common import ExitCode
from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.store.reader import read_lock
from nbia_audit.verify.sampling import in_sample
from tests.support.cli import run_cli
from tests.support.verify import (
    backdate,
    download_all,
    flip_bit_keep_mtime,
    image_files,
    make_lock,
    materialise,
)

SPEC = CorpusSpec(seed=9, collections=1, patients=1, studies=1, series=2, images=2)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    base = tmp_path_factory.mktemp("cli")
    with Emulator.from_spec(SPEC) as emu:
        lock = make_lock(base / "lock", emu)
        root = base / "copy"
        materialise(emu, download_all(emu, base / "zips"), root, "ours")
        backdate(root)
    yield lock, root


def run(*args: object) -> tuple[int, str, str]:
    result = run_cli("verify", *args)
    return result.exit_code, result.stdout, result.stderr


def test_clean_copy_exits_0_with_a_readable_summary(made: tuple[Path, Path]) -> None:
    lock, root = made
    code, out, _ = run(lock, root, "-q")
    assert code == ExitCode.CLEAN
    assert out.startswith(f"verify {lock}: CLEAN") and "series: 2 ok of 2" in out


def test_findings_exit_1_in_every_format(made: tuple[Path, Path], tmp_path: Path) -> None:
    lock, pristine = made
    root = tmp_path / "copy"
    materialise_copy(pristine, root)
    victim = next(image_files(root))
    flip_bit_keep_mtime(victim)
    code, out, _ = run(lock, root, "--format", "json")
    assert code == ExitCode.FINDINGS
    document = json.loads(out)
    assert document["clean"] is False and document["counts"] == {"modified": 1}
    assert document["facts"]["level"] == "full" and document["command"] == "verify"
    (finding,) = document["findings"]
    assert finding["path"] == victim.relative_to(root).as_posix()
    code, out, _ = run(lock, root, "--format", "junit", "--level", "quick")
    assert code == ExitCode.FINDINGS
    suite = ET.fromstring(out)
    assert suite.get("tests") == "2" and suite.get("failures") == "1"


def materialise_copy(pristine: Path, root: Path) -> None:
    shutil.copytree(pristine, root, ignore=shutil.ignore_patterns(".nbia-audit"))


def test_output_is_written_atomically(made: tuple[Path, Path], tmp_path: Path) -> None:
    lock, root = made
    target = tmp_path / "reports" / "verify.xml"
    target.parent.mkdir()
    target.write_text("old")
    code, out, _ = run(lock, root, "--format", "junit", "--output", target)
    assert code == ExitCode.CLEAN and "CLEAN" in out and str(target) in out
    assert ET.fromstring(target.read_text()).get("failures") == "0"
    assert sorted(p.name for p in target.parent.iterdir()) == ["verify.xml"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_sample_reports_its_seed_and_bound(made: tuple[Path, Path]) -> None:
    lock, root = made
    assert run(lock, root, "-q")[0] == ExitCode.CLEAN  # records every file: none is new
    code, out, _ = run(lock, root, "--sample", "50%", "--seed", "4", "--format", "json")
    facts = json.loads(out)["facts"]
    assert code == ExitCode.CLEAN
    assert facts["sample_seed"] == 4 and facts["sample_fraction"] == 0.5
    images = read_lock(lock).images
    n = sum(in_sample(i.sop_uid, 0.5, 4) for series in images.values() for i in series)
    assert n > 0  # each image is drawn alone (a keyed hash): the size is the draw's
    assert facts["sample_size"] == n and facts["hashed_md5"] == n
    assert facts["sample_upper_bound_95"] == pytest.approx(1 - 0.05 ** (1 / n), abs=1e-6)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--level", "slow"], "Invalid value for '--level'"),
        (["--sample", "0"], "must be more than 0"),
        (["--sample", "x"], "not a fraction"),
        (["--sample", "0.1", "--level", "stat"], "--level stat hashes none"),
        (["--seed", "3"], "--seed needs --sample"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_usage_errors_exit_2(made: tuple[Path, Path], args: list[str], message: str) -> None:
    lock, root = made
    code, _, err = run(lock, root, *args)
    assert code == ExitCode.USAGE and message in err


def test_environment_errors_exit_3(made: tuple[Path, Path], tmp_path: Path) -> None:
    lock, root = made
    code, _, err = run(lock, tmp_path / "no-such-dir")
    assert code == ExitCode.ENVIRONMENT and "no such directory" in err
    code, _, err = run(tmp_path / "absent.lock", root)
    assert code == ExitCode.ENVIRONMENT and "lock not found" in err
    code, _, err = run(lock, root, "--output", tmp_path / "no-dir" / "r.json")
    assert code == ExitCode.ENVIRONMENT and "cannot write the report" in err


def test_help_names_levels_and_exit_codes() -> None:
    code, out, _ = run("--help")
    assert code == 0 and "--level" in out and "Exit codes" in out and "--sample" in out


def test_images_nothing_can_prove_exit_3_never_0(tmp_path: Path) -> None:
    # The archive stores no MD5 for one image: present, but unprovable. No finding, yet the
    # check could not complete: 3 in every format, and never a clean verdict.
    with Emulator.from_spec(SPEC) as emu:
        emu.set_stored_md5(emu.corpus.images[0].sop_uid, None)
        lock = make_lock(tmp_path / "lock", emu)
        root = tmp_path / "copy"
        materialise(emu, download_all(emu, tmp_path / "zips"), root, "ours")
    for fmt in ("text", "json", "junit"):
        code, out, _ = run(lock, root, "--format", fmt, "-q")
        assert code == ExitCode.ENVIRONMENT, (fmt, out)
        assert "CLEAN" not in out and '"clean": true' not in out, fmt
