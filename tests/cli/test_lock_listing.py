"""`lock` lists at most 20 series per kind of change, then says how many more."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from nbia_audit.cli.common import ExitCode
from nbia_audit.cli.main import cli
from nbia_audit.emulator import CorpusSpec, Emulator

# Two collections of 22 series each: adding the second to a lock adds more than 20.
SPEC = CorpusSpec(seed=7, collections=2, patients=11, studies=1, series=2, images=1)


def test_a_long_list_of_changes_shows_twenty_and_counts_the_rest(tmp_path: Path) -> None:
    spec = tmp_path / "dataset.yaml"
    with Emulator.from_spec(SPEC) as emu:
        first, second = (c.name for c in emu.corpus.collections)
        head = f"name: t\nserver: {emu.base_url}\nselect:\n  - collection: {first}\n"
        spec.write_text(head)
        assert CliRunner().invoke(cli, ["lock", str(spec), "-q"]).exit_code == ExitCode.CLEAN
        spec.write_text(head + f"  - collection: {second}\n")
        result = CliRunner().invoke(cli, ["lock", str(spec), "-q"])
    added = sorted(s.series_uid for s in emu.corpus.series if s.collection == second)
    assert result.exit_code == ExitCode.CLEAN, result.output
    shown = [line for line in result.stdout.splitlines() if line.startswith("  + ")]
    assert shown == [f"  + series {uid}" for uid in added[:20]] + [
        f"  + ... and {len(added) - 20} more series"
    ]
