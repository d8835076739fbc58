"""Escape for the target format (issue 11 #5): archive strings and file names reach Markdown,
HTML, JUnit XML, JSON and the terminal as text, never as markup, escape sequences or
characters the format forbids.

Real emulator over loopback (the archive serves a hostile DOI), a real lock, a real copy
with hostile file names, the real CLI in a child process; the HTML is read back with the
standard library's HTML parser and the XML with ElementTree.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbia_audit.archive.view import ArchiveView
from nbia_audit.client import NbiaClient
from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.fetch.run import fetch_dataset
from nbia_audit.lock.run import lock_dataset
from nbia_audit.report.escaping import for_html, for_json, for_markdown, for_terminal, for_xml
from tests.support.lock_tools import rewrite_pair

SPEC = CorpusSpec(seed=41, collections=1, patients=1, studies=1, series=2, images=1)
HOSTILE = (
    "<script>alert(1)</script> <img src=x onerror=alert(2)> a|b `t` ``x`` [l](javascript:x) "
    "&amp; \x1b[31mred\x1b]0;title\x07 \x9b2J \u202eevil\x0b\x00 line\n# H\n| c |"
)
LONE = "\ud835"  # half a surrogate pair: the archive's JSON can carry one (issue 10)
# Terminal control: C0 (ESC starts every ANSI sequence), DEL, C1 (0x9B is a CSI), bidi.
TERMINAL_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[tuple[Emulator, Path]]:
    with Emulator.from_spec(SPEC) as emu, NbiaClient(emu.base_url) as client:
        name = emu.corpus.collections[0].name
        emu.set_doi(name, HOSTILE)
        spec = tmp_path / "dataset.yaml"
        description = json.dumps(HOSTILE)  # a YAML double-quoted string
        spec.write_text(
            f"name: e\nserver: {emu.base_url}\ndescription: {description}\n"
            f"select:\n  - collection: {name}\n",
            encoding="utf-8",
        )
        lock = lock_dataset(spec, ArchiveView(client)).lock_path
        # NBIA's Java JSON can carry a lone surrogate (the emulator's cannot): put one in the
        # locked DOI the way lock_tools rewrites a pair, self-consistent and proven.
        rewrite_pair(lock, lambda s: dataclasses.replace(s, doi=s.doi + LONE) if s.doi else s)
        yield emu, lock


def run(*args: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "nbia_audit", *args],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    out, err = done.stdout.decode("utf-8"), done.stderr.decode("utf-8")
    assert "Traceback" not in err, err
    return done.returncode, out, err


class Tags(HTMLParser):
    """Every element and attribute the browser would build, and the text it would show."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def unescaped(char: str, text: str) -> list[int]:
    """Offsets of ``char`` in ``text`` not escaped by a backslash (CommonMark)."""
    out = []
    for match in re.finditer(re.escape(char), text):
        backslashes = len(text[: match.start()]) - len(text[: match.start()].rstrip("\\"))
        if backslashes % 2 == 0:
            out.append(match.start())
    return out


def test_markdown_supplement_keeps_archive_strings_as_text(hostile: tuple[Emulator, Path]) -> None:
    _, lock = hostile
    code, md, _ = run("report", str(lock))
    assert code == 0
    assert not TERMINAL_CONTROL.search(md)
    assert not unescaped("<", md)  # no HTML tag, no autolink
    assert not unescaped("[", md)  # no link
    row = next(line for line in md.splitlines() if "script" in line and line.startswith("|"))
    assert len(unescaped("|", row)) == 10  # 9 cells: the pipes in the DOI did not add any
    assert not unescaped("`", row)  # no code span
    description = md.splitlines()[2]
    assert "script" in description and not unescaped("`", description)
    headings = [line for line in md.splitlines() if line.startswith("#")]
    assert "# H" not in headings and len(headings) == 8  # only the supplement's own


def test_html_supplement_shows_archive_strings_and_runs_nothing(
    hostile: tuple[Emulator, Path],
) -> None:
    _, lock = hostile
    code, page, _ = run("report", str(lock), "--format", "html")
    assert code == 0 and not TERMINAL_CONTROL.search(page.replace("\n", ""))
    parsed = Tags()
    parsed.feed(page)
    assert parsed.tags <= {
        "html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "code", "table",
        "tr", "th", "td", "br", "a", "details", "summary", "pre",
    }  # fmt: skip
    assert not [name for name, _ in parsed.attributes if name.startswith("on")]
    hrefs = [value or "" for name, value in parsed.attributes if name == "href"]
    assert all(h.startswith(("https://", "http://")) for h in hrefs)
    shown = "".join(parsed.text)
    assert "<script>alert(1)</script> <img src=x onerror=alert(2)> a|b" in shown
    assert "\\x1b[31mred" in shown and "\\u202eevil\\x0b\\x00 line\\n# H" in shown


def strict_unicode(value: object) -> None:
    """Fail on any string a strict JSON reader (Go, serde) refuses: a lone surrogate."""
    if isinstance(value, str):
        value.encode("utf-8")
    elif isinstance(value, dict):
        for key, item in value.items():
            strict_unicode(key)
            strict_unicode(item)
    elif isinstance(value, list):
        for item in value:
            strict_unicode(item)


def test_json_supplement_keeps_the_string_as_valid_unicode(
    hostile: tuple[Emulator, Path],
) -> None:
    _, lock = hostile
    code, out, _ = run("report", str(lock), "--format", "json")
    document = json.loads(out)
    strict_unicode(document)
    assert code == 0 and document["description"] == HOSTILE  # JSON escapes controls itself
    assert HOSTILE + "\\ud835" in document["collections"][0]["dois"]


def test_drift_reports_a_hostile_change_on_one_line_as_valid_xml_and_unicode(
    hostile: tuple[Emulator, Path],
) -> None:
    emu, lock = hostile
    code, text, err = run("drift", str(lock))
    assert code == 1 and not TERMINAL_CONTROL.search(text + err)
    assert [line for line in text.splitlines() if "metadata-changed: series" in line]
    code, out, _ = run("drift", str(lock), "--format", "json")
    document = json.loads(out)
    strict_unicode(document)
    changed = {(f.get("old"), f.get("new")) for f in document["findings"]}
    assert code == 1 and (HOSTILE + "\\ud835", HOSTILE) in changed
    code, out, _ = run("drift", str(lock), "--format", "junit")
    failures = [f.text or "" for f in ET.fromstring(out).iter("failure")]
    assert code == 1 and any("DOI" in f for f in failures)


NAMES = [
    "evil\x1b[2J\x1b]0;pwned\x07.txt",
    "tab\x0bform\x0c.txt",
    "two\nlines.txt",
    "c1\x9b31m.txt",
]


@pytest.fixture
def odd_copy(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    with Emulator.from_spec(SPEC) as emu, NbiaClient(emu.base_url) as client:
        spec = tmp_path / "dataset.yaml"
        name = emu.corpus.collections[0].name
        spec.write_text(f"name: o\nserver: {emu.base_url}\nselect:\n  - collection: {name}\n")
        lock = lock_dataset(spec, ArchiveView(client)).lock_path
        data = tmp_path / "copy\x1b[41m\u202e"
        assert fetch_dataset(lock, data, client).ok
    for name in NAMES:
        (data / name).write_bytes(b"not an image")
    yield lock, data


def test_file_names_never_reach_the_terminal_raw(odd_copy: tuple[Path, Path]) -> None:
    lock, data = odd_copy
    code, text, err = run("verify", str(lock), str(data), "-q")
    assert code == 1 and not TERMINAL_CONTROL.search(text + err)
    strays = [line for line in text.splitlines() if line.startswith("    unexpected: at ")]
    assert len(strays) == len(NAMES)  # one line each, the newline in a name included
    assert any(
        s.startswith("    unexpected: at evil\\x1b[2J\\x1b]0;pwned\\x07.txt - ") for s in strays
    )
    assert "copy\\x1b[41m\\u202e" in text  # the folder's own name, in the facts
    # The verdict line beside --output, and an error message, are escaped too.
    code, line, err = run("verify", str(lock), str(data), "--output", str(data / "r\x1b.json"))
    assert code == 1 and not TERMINAL_CONTROL.search(line + err) and "r\\x1b.json" in line
    code, _, err = run("verify", str(lock), str(data / "gone\x1b[5m"))
    assert code == 3 and "gone\\x1b[5m" in err and not TERMINAL_CONTROL.search(err)


def test_file_names_in_junit_are_valid_xml_and_json_keeps_them(
    odd_copy: tuple[Path, Path],
) -> None:
    lock, data = odd_copy
    code, out, _ = run("verify", str(lock), str(data), "--format", "junit")
    suite = ET.fromstring(out)  # XML 1.0: no C0 control but tab, LF, CR
    failures = "".join(f.text or "" for f in suite.iter("failure"))
    assert code == 1 and "tab\\x0bform\\x0c.txt" in failures
    code, out, _ = run("verify", str(lock), str(data), "--format", "json")
    paths = {f["path"] for f in json.loads(out)["findings"]}
    assert code == 1 and paths == set(NAMES)  # JSON escapes control characters itself


# -- every escaping function, over every string -------------------------------------------

ANY_CHAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=())
ANY_TEXT = st.text(alphabet=ANY_CHAR, max_size=60)
SURROGATE = re.compile("[\ud800-\udfff]")


@settings(deadline=None)
@given(ANY_TEXT)
def test_terminal_text_holds_nothing_a_terminal_acts_on(text: str) -> None:
    shown = for_terminal(text)
    assert not TERMINAL_CONTROL.search(shown) and "\n" not in shown
    shown.encode("utf-8")
    kept = for_terminal(text, keep_newlines=True)
    assert kept.count("\n") == text.count("\n") and not TERMINAL_CONTROL.search(kept)


@settings(deadline=None)
@given(ANY_TEXT)
def test_xml_text_and_attributes_always_parse(text: str) -> None:
    element = ET.Element("case", name=for_xml(text))
    element.text = for_xml(text)
    back = ET.fromstring(ET.tostring(element, "unicode").encode("utf-8"))
    assert back.get("name") is not None


@settings(deadline=None)
@given(ANY_TEXT)
def test_markdown_text_opens_no_syntax(text: str) -> None:
    shown = for_markdown(text)
    assert not TERMINAL_CONTROL.search(shown) and "\n" not in shown
    for char in "<[`|*_":
        assert not unescaped(char, shown), (char, shown)
    assert not re.match(r"\s*([#>+=-]|\d+\.)", shown)
    shown.encode("utf-8")


@settings(deadline=None)
@given(ANY_TEXT)
def test_html_and_json_text(text: str) -> None:
    shown = for_html(text)
    assert not re.search("[<>\"']", shown) and not TERMINAL_CONTROL.search(shown)
    shown.encode("utf-8")
    as_json = for_json(text)
    assert not SURROGATE.search(as_json)
    if not SURROGATE.search(text):
        assert as_json == text  # valid Unicode passes unchanged: json.dumps does the rest
