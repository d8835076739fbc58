"""Bounded input: a few hostile bytes, a device, a FIFO or a huge file as a spec or manifest
give a one-line error (exit 2) naming file, line and key, in bounded memory and time.

The CLI cases run the real ``nbia-audit`` in a child process whose address space is capped
at 1 GiB (so a regression fails here instead of eating the machine) and which reports its
own peak RSS; the issue's bar is 300 MB for any bad input.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from nbia_audit.errors import SpecError
from nbia_audit.manifest import MANIFEST_MAX_BYTES, parse_manifest, read_manifest
from nbia_audit.spec.load import SPEC_MAX_BYTES, load_spec, parse_spec
from nbia_audit.spec.yamlmarks import MAX_DEPTH, MAX_VALUES

PEAK_RSS_LIMIT_MB = 300
MESSAGE_LIMIT = 400  # characters of one error line, hint included
UID = "1.3.6.1.4.1.14519.5.2.1.7"

# The child prints its own peak RSS after the command, whatever the command did.
RUNNER = """\
import resource, sys
from nbia_audit.cli import cli
try:
    cli.main(args=sys.argv[1:], prog_name="nbia-audit")
finally:
    sys.stderr.write(f"\\npeak-rss-kb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n")
"""


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def run_cli(*args: str, runner: str = RUNNER) -> tuple[int, str, int]:
    """Run ``nbia-audit ARGS``; return (exit code, stderr without the RSS line, peak RSS MB)."""
    done = subprocess.run(
        [sys.executable, "-c", runner, *args],
        capture_output=True,
        text=True,
        timeout=120,  # a guard against a hang, not a measurement
        preexec_fn=_cap_memory,
        env={**os.environ, "NBIA_USER": "", "NBIA_PASSWORD": ""},
        cwd="/",  # import the installed package, not a copy in the working directory
    )
    found = re.search(r"peak-rss-kb=(\d+)", done.stderr)
    assert found, f"the child died before reporting: {done.stderr[-2000:]}"
    stderr = done.stderr[: found.start()].strip()
    return done.returncode, stderr, int(found.group(1)) // 1024


def billion_laughs() -> str:
    """About 420 bytes that expand to 9**9 strings through aliases."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(8):
        name, previous = chr(98 + level), chr(97 + level)
        lines.append(f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]")
    return "\n".join(lines) + "\nname: x\nselect: *i\n"


def assert_one_clear_line(stderr: str, *words: str) -> None:
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr[:3000]
    assert lines[0].startswith("nbia-audit: error: "), lines[0][:300]
    assert len(lines[0]) <= MESSAGE_LIMIT, f"{len(lines[0])} characters: {lines[0][:300]}"
    for word in words:
        assert word in lines[0], lines[0]


def test_billion_laughs_spec_is_refused_quickly_in_bounded_memory(tmp_path: Path) -> None:
    spec = tmp_path / "laughs.yaml"
    spec.write_text(billion_laughs(), encoding="utf-8")
    assert spec.stat().st_size < 500
    code, stderr, peak_mb = run_cli("lock", str(spec))
    assert code == 2
    assert_one_clear_line(stderr, f"{spec}:", "expands to more than", "through aliases")
    assert re.search(r"laughs\.yaml:\d+: \w+: ", stderr), "names the line and the key"
    assert peak_mb < PEAK_RSS_LIMIT_MB


def test_deeply_nested_spec_is_an_error_not_a_recursion_error(tmp_path: Path) -> None:
    spec = tmp_path / "deep.yaml"
    depth = 20_000
    spec.write_text(
        "name: x\nselect:\n  - collection: " + "[" * depth + "]" * depth + "\n", encoding="utf-8"
    )
    code, stderr, peak_mb = run_cli("lock", str(spec))
    assert code == 2
    assert_one_clear_line(stderr, f"{spec}:3:", "select[0].collection", "nested more than")
    assert peak_mb < PEAK_RSS_LIMIT_MB


@pytest.mark.parametrize(
    ("label", "body", "words"),
    [
        ("server", 'server: "' + "h" * 3_000_000 + '"\n', ["server:", "3,000,000 characters"]),
        ("api list", "api: [" + ", ".join(["v4"] * 60_000) + "]\n", ["api:", "not a list"]),
        ("unknown key", "? " + "k" * 2_000_000 + "\n: 1\n", ["unknown key"]),
        ("uid", "  - series: ['" + "9" * 2_000_000 + "x']\n", ["series[0]", "at most 1,024"]),
    ],
)
def test_errors_quote_a_short_excerpt_of_a_huge_value(
    tmp_path: Path, label: str, body: str, words: list[str]
) -> None:
    spec = tmp_path / "big.yaml"
    if body.startswith("  - "):
        text = "name: x\nselect:\n" + body
    else:
        text = "name: x\nselect:\n  - collection: A\n" + body
    spec.write_text(text, encoding="utf-8")
    assert spec.stat().st_size < SPEC_MAX_BYTES
    code, stderr, peak_mb = run_cli("lock", str(spec))
    assert code == 2
    if label == "api list":  # the message says what it got: a list, shown by its first items
        words = ["api:", "must be a string, not a list (['v4', 'v4', 'v4', 'v4', ...])"]
    assert_one_clear_line(stderr, f"{spec}:", *words)
    assert peak_mb < PEAK_RSS_LIMIT_MB


def test_spec_larger_than_the_cap_is_refused_without_parsing(tmp_path: Path) -> None:
    spec = tmp_path / "huge.yaml"
    with spec.open("w", encoding="utf-8") as out:
        out.write("name: x\nselect:\n  - collection: A\n")
        out.write("# " + "x" * (SPEC_MAX_BYTES + 10) + "\n")
    code, stderr, peak_mb = run_cli("lock", str(spec))
    assert code == 2
    assert_one_clear_line(stderr, f"{spec}:", "larger than 4 MiB")
    assert peak_mb < PEAK_RSS_LIMIT_MB


def test_dev_zero_as_spec_is_an_error_not_a_hang(tmp_path: Path) -> None:
    code, stderr, peak_mb = run_cli("lock", "/dev/zero", "--lock", str(tmp_path / "x.lock"))
    assert code == 2
    assert_one_clear_line(stderr, "/dev/zero:", "is a device, not a spec file")
    assert peak_mb < PEAK_RSS_LIMIT_MB


def test_fifo_as_spec_is_an_error_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.fifo"
    os.mkfifo(fifo)  # nobody ever writes: opening it for reading would block forever
    code, stderr, _ = run_cli("lock", str(fifo))
    assert code == 2
    assert_one_clear_line(stderr, f"{fifo}:", "FIFO", "not a spec file")


def test_too_many_values_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "many.yaml"
    spec.write_text(
        "name: x\nselect:\n  - collection: A\n    modality: ["
        + ",".join(["CT"] * (MAX_VALUES + 10))
        + "]\n",
        encoding="utf-8",
    )
    code, stderr, peak_mb = run_cli("lock", str(spec))
    assert code == 2
    assert_one_clear_line(stderr, f"{spec}:4:", "select[0].modality", "more than 100,000 values")
    assert peak_mb < PEAK_RSS_LIMIT_MB


def test_nesting_and_aliases_within_the_bounds_still_load() -> None:
    spec = parse_spec(
        "name: x\n"
        "select:\n"
        "  - collection: A\n"
        "    modality: &ct [CT, MR]\n"
        "  - collection: B\n"
        "    modality: *ct\n"
    )
    assert [s.modality for s in spec.select] == [("CT", "MR"), ("CT", "MR")]
    nested = "[" * (MAX_DEPTH - 5) + "]" * (MAX_DEPTH - 5)
    with pytest.raises(SpecError, match="must be a string, not a list") as info:
        parse_spec(f"name: x\nselect:\n  - collection: A\n    modality: [{nested}]\n")
    assert "nested" not in str(info.value)  # reached the validator, not the depth guard


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(SpecError, match="contains it") as info:
        parse_spec("name: x\nselect: &s\n  - collection: A\n  - *s\n")
    assert info.value.line is not None


# In a child with capped memory: reading /dev/zero or a FIFO in this process would hang it.
MANIFEST_RUNNER = RUNNER.replace(
    "from nbia_audit.cli import cli\n", "from nbia_audit.manifest import read_manifest\n"
).replace(
    '    cli.main(args=sys.argv[1:], prog_name="nbia-audit")\n',
    "    try:\n"
    "        read_manifest(sys.argv[1])\n"
    "    except Exception as exc:\n"
    "        print(type(exc).__name__, exc, file=sys.stderr)\n",
)


@pytest.mark.parametrize("kind", ["device", "fifo", "directory"])
def test_special_files_as_manifest_are_errors(tmp_path: Path, kind: str) -> None:
    if kind == "device":
        path = Path("/dev/zero")
    elif kind == "fifo":
        path = tmp_path / "m.tcia"
        os.mkfifo(path)
    else:
        path = tmp_path
    _, stderr, peak_mb = run_cli(str(path), runner=MANIFEST_RUNNER)
    assert stderr.startswith("SpecError "), stderr[-2000:]
    assert "not a manifest file" in stderr
    assert peak_mb < PEAK_RSS_LIMIT_MB


def test_manifest_larger_than_the_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.tcia"
    with path.open("wb") as out:
        out.truncate(MANIFEST_MAX_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(SpecError, match="larger than 32 MiB"):
        read_manifest(path)


def test_manifest_errors_quote_a_short_excerpt() -> None:
    with pytest.raises(SpecError) as info:
        parse_manifest("z" * 5_000_000 + "\n", source="m.tcia")
    assert len(str(info.value)) < MESSAGE_LIMIT
    with pytest.raises(SpecError) as info:
        parse_manifest("ListOfSeriesToDownload=\n" + "1." * 2_000_000 + "\n", source="m.tcia")
    assert len(str(info.value)) < MESSAGE_LIMIT
    assert "m.tcia:2" in str(info.value)


def test_spec_pointing_at_a_manifest_fifo_is_an_error(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "m.tcia")
    spec = tmp_path / "dataset.yaml"
    spec.write_text("name: x\nselect:\n  - manifest: m.tcia\n", encoding="utf-8")
    with pytest.raises(SpecError, match="select\\[0\\].manifest") as info:
        load_spec(spec)
    assert "is a FIFO (named pipe), not a manifest file" in str(info.value)


def test_a_normal_manifest_and_spec_still_read(tmp_path: Path) -> None:
    (tmp_path / "m.tcia").write_text(f"ListOfSeriesToDownload=\n{UID}\n", encoding="utf-8")
    spec = tmp_path / "dataset.yaml"
    spec.write_text("name: x\nselect:\n  - manifest: m.tcia\n", encoding="utf-8")
    assert load_spec(spec).select[0].series == (UID,)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("  - collection: " + "C" * 1025 + "\n", "select[0].collection"),
        ("  - collection: A\n    modality: [" + "M" * 2000 + "]\n", "select[0].modality[0]"),
        ("  - text: " + "t" * 5000 + "\n", "select[0].text"),
    ],
)
def test_values_too_long_to_echo_or_send_are_refused(body: str, key: str) -> None:
    with pytest.raises(SpecError, match="characters long") as info:
        parse_spec("name: x\nselect:\n" + body, path="d.yaml")
    assert info.value.key == key
    assert len(str(info.value)) < MESSAGE_LIMIT


def test_a_long_description_is_fine() -> None:
    spec = parse_spec("name: x\ndescription: " + "d " * 5000 + "\nselect:\n  - collection: A\n")
    assert len(spec.description) > 9000


def test_any_spec_error_message_is_bounded() -> None:
    error = SpecError("unknown collection " + "x" * 100_000, path="d.yaml", line=3, key="k")
    assert len(str(error)) < MESSAGE_LIMIT + 200
    assert str(error).startswith("d.yaml:3: k: unknown collection xxx")


@pytest.mark.parametrize(
    "verb", [["report"], ["drift"], ["verify", "{dir}"], ["fetch", "--dest", "{dir}/data"]]
)
def test_fifo_as_lock_is_an_error_not_a_hang(tmp_path: Path, verb: list[str]) -> None:
    fifo = tmp_path / "dataset.lock"
    os.mkfifo(fifo)  # nobody ever writes: opening it for reading would block forever
    rest = [arg.format(dir=tmp_path) for arg in verb[1:]]
    code, stderr, _ = run_cli(verb[0], str(fifo), *rest)
    assert code == 3, stderr
    assert_one_clear_line(stderr, f"{fifo}: not a regular file")
