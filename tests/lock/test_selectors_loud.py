"""Every selector that names series fails loud: a manifest, a DOI or a cart naming a series
the archive does not serve exits 2 at lock time, naming the file, the line and the UID,
exactly like ``series:`` (issue 10 #4). Real emulator over loopback, real CLI."""

from __future__ import annotations

from pathlib import Path

from nbia_audit.cli.common import ExitCode
from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.store.textlock import read_text_lock
from tests.support.cli import run_cli

SPEC = CorpusSpec(seed=23, collections=1, patients=2, studies=1, series=2, images=2)
UNKNOWN = "1.2.826.0.1.3680043.99.424242"


def lock(spec: Path) -> tuple[int, str]:
    result = run_cli("lock", spec, "--quiet")
    return result.exit_code, result.stderr


def write_spec(tmp_path: Path, emu: Emulator, select: str, extra: str = "") -> Path:
    path = tmp_path / "dataset.yaml"
    path.write_text(f"name: t\nserver: {emu.base_url}\nselect:\n{select}{extra}", encoding="utf-8")
    return path


def served(emu: Emulator) -> list[str]:
    return sorted(s.series_uid for s in emu.corpus.series)


def test_manifest_uid_the_archive_does_not_serve_exits_2_naming_file_line_uid(
    tmp_path: Path, emu: Emulator
) -> None:
    known = served(emu)
    manifest = tmp_path / "picked.tcia"
    manifest.write_text(
        "downloadServerUrl=x\nmanifestVersion=3.0\nListOfSeriesToDownload=\n"
        f"{known[0]}\n{UNKNOWN}\n{known[1]}\n",
        encoding="utf-8",
    )
    spec = write_spec(tmp_path, emu, "  - manifest: picked.tcia\n")
    code, err = lock(spec)
    assert code == ExitCode.USAGE, err
    # The spec's file and line, the manifest's file and line (5), and the UID.
    assert f"{spec}:4: select[0].manifest:" in err
    assert f"picked.tcia:5 names {UNKNOWN}, which the archive does not serve" in err
    assert not (tmp_path / "dataset.lock").exists()


def test_excluding_the_unserved_uid_locks_the_rest(tmp_path: Path, emu: Emulator) -> None:
    known = served(emu)
    (tmp_path / "picked.tcia").write_text(
        f"manifestVersion=3.0\nListOfSeriesToDownload=\n{known[0]}\n{UNKNOWN}\n",
        encoding="utf-8",
    )
    spec = write_spec(
        tmp_path, emu, "  - manifest: picked.tcia\n", f"exclude:\n  - series: ['{UNKNOWN}']\n"
    )
    code, err = lock(spec)
    assert code == ExitCode.CLEAN, err
    locked = {s.series_uid for s in read_text_lock(tmp_path / "dataset.lock").series}
    assert locked == {known[0]}


def test_doi_listing_a_series_the_archive_no_longer_serves_exits_2(
    tmp_path: Path, emu: Emulator
) -> None:
    # getCollectionOrSeriesForDOI applies no visibility filter (NBIA's and the emulator's),
    # so a hidden series is still listed under its DOI but never comes back as metadata.
    target = emu.corpus.series[0]
    emu.hide_series(target.series_uid)
    spec = write_spec(tmp_path, emu, f"  - doi: '{target.doi}'\n")
    code, err = lock(spec)
    assert code == ExitCode.USAGE, err
    assert f"{spec}:4: select[0].doi: DOI {target.doi} lists {target.series_uid}" in err
    assert "which the archive does not serve" in err


def test_series_selector_still_exits_2(tmp_path: Path, emu: Emulator) -> None:
    spec = write_spec(tmp_path, emu, f"  - series: ['{UNKNOWN}']\n")
    code, err = lock(spec)
    assert code == ExitCode.USAGE
    assert f"{spec}:4: select[0].series: the archive does not serve {UNKNOWN}" in err
