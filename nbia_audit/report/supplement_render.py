"""Render a :class:`~nbia_audit.report.supplement.Supplement` as Markdown, HTML or JSON.

Pure functions, no I/O. The HTML is one self-contained file (inline CSS, no scripts, no
external resources) that reads well in a browser and prints cleanly. The JSON schema is
documented in docs/supplement.md.
"""

from __future__ import annotations

import dataclasses
import json
import re

from nbia_audit.report.escaping import for_html, for_markdown, for_terminal, json_safe
from nbia_audit.report.supplement import SUPPLEMENT_SCHEMA_VERSION, Supplement
from nbia_audit.units import human_bytes
from nbia_audit.verify.words import STAT, claim

__all__ = ["FORMATS", "render_supplement"]

FORMATS = ("md", "html", "json")


def render_supplement(supplement: Supplement, fmt: str) -> str:
    """Render in ``fmt``: ``md``, ``html`` or ``json``."""
    if fmt == "json":
        return _json(supplement)
    if fmt == "html":
        return _html(supplement)
    return _markdown(supplement)


def _glance(s: Supplement) -> list[tuple[str, str]]:
    h = s.header
    return [
        ("Collections", str(len(s.collections))),
        ("Subjects", str(s.subjects)),
        ("Studies", str(s.studies)),
        ("Series", str(h.series_count)),
        ("Images", str(h.image_count)),
        ("Size", human_bytes(h.total_bytes)),
        ("Modalities", ", ".join(f"{m} ({n} series)" for m, n in s.modalities.items())),
    ]


def _provenance(s: Supplement) -> list[tuple[str, str]]:
    h = s.header
    released = sorted(d for c in s.collections for d in (c.released_first, c.released_last) if d)
    return [
        ("Archive", h.base_url if h.server == h.base_url else f"{h.server} ({h.base_url})"),
        ("API", h.api),
        ("Resolved", h.resolved_at),
        ("Released", f"{released[0]} to {released[-1]}" if released else "unknown"),
        ("Locked with", f"nbia-audit {h.tool_version}, lock format {h.format}"),
        ("Spec digest", h.spec_digest),
    ]


def _md_code(text: str) -> str:
    """A code span for values of a known plain shape (digests, hashes); anything else is
    escaped text (a backtick in it would end the span, and escapes do not work inside)."""
    return f"`{text}`" if _PLAIN.fullmatch(text) else for_markdown(text)


_PLAIN = re.compile(r"[0-9A-Za-z:._/-]*")


def _md_row(*cells: object) -> str:
    return "| " + " | ".join(for_markdown(str(c)) for c in cells) + " |"


def _md_fence(lines: list[str]) -> list[str]:
    # A fence longer than any run of backticks inside, so nothing can close it early.
    longest = max((len(run) for line in lines for run in re.findall("`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + "sh", *(for_terminal(line) for line in lines), fence]


def _markdown(s: Supplement) -> str:
    h = s.header
    # Every archive or user string goes through for_markdown (or _md_code): a description
    # holding "<script>" or "|" stays text, in the table it is in.
    out = [f"# Data supplement: {for_markdown(h.name)}", ""]
    if s.description:
        out += [for_markdown(s.description), ""]
    out += [
        f"**Root digest:** {_md_code(h.root_digest)}",
        "",
        "The root digest commits to every image of the dataset through NBIA's own hierarchy "
        "hashes; any copy that verifies against the lock below is byte-identical to it.",
        "",
        "## The dataset",
        "",
        "| | |",
        "|---|---|",
    ]
    out += [_md_row(k, v) for k, v in _glance(s)]
    out += ["", "## Provenance", "", "| | |", "|---|---|"]
    out += [_md_row(k, v) for k, v in _provenance(s)]
    out += [
        "",
        "## Collections",
        "",
        "| Collection | DOI | License | Subjects | Studies | Series | Images | Size | Modalities |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for c in s.collections:
        out.append(
            _md_row(
                c.name,
                ", ".join(c.dois),
                ", ".join(c.licenses),
                c.subjects,
                c.studies,
                c.series,
                c.images,
                human_bytes(c.bytes),
                ", ".join(c.modalities),
            )  # fmt: skip
        )
    out += ["", "## Licenses", "", "| License | Short name | URL | Commercial use |"]
    out += ["|---|---|---|---|"]
    out += [_md_row(x.name, x.short_name, x.url, x.commercial_use or "unknown") for x in s.licenses]
    out += ["", "## Verification of a local copy", ""]
    out += [_verification_sentence(s)]  # our words only (the level is one of three)
    out += ["", "## Check your own copy", "", *_md_fence(s.reader_commands()), ""]
    lock = _md_code(s.lock_name)
    out += [
        f"`verify` needs only the lock ({lock} and {_md_code(s.lock_name + '.db')}); "
        "it works on copies made by any tool, in any folder layout.",
        "",
        "## Series",
        "",
        "| SeriesInstanceUID | Collection | Subject | Modality | Images | Series hash |",
        "|---|---|---|---|---:|---|",
    ]
    out += [
        _md_row(x.series_uid, x.collection, x.patient_id, x.modality, x.image_count)
        + f" {_md_code(x.series_hash)} |"
        for x in s.series
    ]
    return "\n".join(out) + "\n"


def _verification_sentence(s: Supplement) -> str:
    v = s.verification
    if v is None:
        return "No local copy was verified for this supplement."
    if v.clean and v.proof == STAT:
        result = f"no change seen: all {v.series_total} series {claim(v.proof, v.proven_on)}"
    elif v.clean:
        result = f"clean: all {v.series_total} series {claim(v.proof, v.proven_on)}"
    elif not v.complete:
        result = "INCOMPLETE: part of the copy could not be checked"
    else:
        found = ", ".join(f"{n} {kind}" for kind, n in v.counts.items())
        result = f"FINDINGS: {found}; {v.series_ok} of {v.series_total} series ok"
    # "Verified" is a claim only a full pass makes (the result says it when it holds).
    return f"Checked at level `{v.level}` on {v.finished_at}: {result}."


_CSS = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:72rem;
margin:2rem auto;padding:0 1rem;color:#1b1f24}
h1{font-size:1.7rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;
border-bottom:1px solid #d0d7de;padding-bottom:.2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.n{text-align:right}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85em}
pre{background:#f6f8fa;padding:.75rem;border-radius:6px;overflow-x:auto}
.digest{font-size:1.05rem;background:#eef6ee;border:1px solid #9bc59b;padding:.5rem .75rem;
border-radius:6px;word-break:break-all}
.ok{color:#116329;font-weight:600}.bad{color:#a40e26;font-weight:600}
@media print{body{margin:0;max-width:none;font-size:11pt}details{display:block}
details>summary{display:none}h2{break-after:avoid}tr{break-inside:avoid}a{color:inherit}}
"""


def _e(text: object) -> str:
    return for_html(str(text))


def _kv_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th scope='row'>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _link(url: str) -> str:
    safe = url.startswith(("https://", "http://"))
    return f"<a href='{_e(url)}'>{_e(url)}</a>" if safe else _e(url)


def _html(s: Supplement) -> str:
    h = s.header
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>Data supplement: {_e(h.name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Data supplement: {_e(h.name)}</h1>",
    ]
    if s.description:
        parts.append(f"<p>{_e(s.description)}</p>")
    parts.append(
        f"<p class='digest'>Root digest: <code id='root-digest'>{_e(h.root_digest)}</code></p>"
    )
    parts.append(
        "<p>The root digest commits to every image of the dataset through NBIA's own "
        "hierarchy hashes; any copy that verifies against the lock is byte-identical to it.</p>"
    )
    parts += ["<h2>The dataset</h2>", _kv_table(_glance(s))]
    parts += ["<h2>Provenance</h2>", _kv_table(_provenance(s))]
    parts.append(
        "<h2>Collections</h2><table id='collections'><tr><th>Collection</th><th>DOI</th>"
        "<th>License</th><th>Subjects</th><th>Studies</th><th>Series</th><th>Images</th>"
        "<th>Size</th><th>Modalities</th></tr>"
    )
    for c in s.collections:
        parts.append(
            f"<tr><td>{_e(c.name)}</td><td>{'<br>'.join(_link(d) for d in c.dois)}</td>"
            f"<td>{_e(', '.join(c.licenses))}</td><td class='n'>{c.subjects}</td>"
            f"<td class='n'>{c.studies}</td><td class='n'>{c.series}</td>"
            f"<td class='n'>{c.images}</td><td class='n'>{_e(human_bytes(c.bytes))}</td>"
            f"<td>{_e(', '.join(c.modalities))}</td></tr>"
        )
    parts.append(
        "</table><h2>Licenses</h2><table id='licenses'><tr><th>License</th>"
        "<th>Short name</th><th>URL</th><th>Commercial use</th></tr>"
    )
    for lic in s.licenses:
        parts.append(
            f"<tr><td>{_e(lic.name)}</td><td>{_e(lic.short_name)}</td><td>{_link(lic.url)}</td>"
            f"<td>{_e(lic.commercial_use or 'unknown')}</td></tr>"
        )
    parts.append("</table><h2>Verification of a local copy</h2>")
    v = s.verification
    css = "ok" if v and v.clean else "bad" if v else ""
    parts.append(f"<p id='verification' class='{css}'>{_e(_verification_sentence(s))}</p>")
    parts.append("<h2>Check your own copy</h2><pre id='commands'>")
    parts.append("\n".join(_e(command) for command in s.reader_commands()))
    parts.append(
        f"</pre><p><code>verify</code> needs only the lock ({_e(s.lock_name)} and "
        f"{_e(s.lock_name)}.db); it works on copies made by any tool, in any folder layout.</p>"
    )
    parts.append(f"<h2>Series</h2><details><summary>{len(s.series)} series</summary>")
    parts.append(
        "<table id='series'><tr><th>SeriesInstanceUID</th><th>Collection</th>"
        "<th>Subject</th><th>Modality</th><th>Images</th><th>Series hash</th></tr>"
    )
    for x in s.series:
        parts.append(
            f"<tr><td><code>{_e(x.series_uid)}</code></td><td>{_e(x.collection)}</td>"
            f"<td>{_e(x.patient_id)}</td><td>{_e(x.modality)}</td>"
            f"<td class='n'>{x.image_count}</td><td><code>{_e(x.series_hash)}</code></td></tr>"
        )
    parts.append("</table></details></body></html>")
    return "\n".join(parts) + "\n"


def _json(s: Supplement) -> str:
    document = {
        "schema": SUPPLEMENT_SCHEMA_VERSION,
        "name": s.header.name,
        "description": s.description,
        "lock": dataclasses.asdict(s.header),
        "dataset": {
            "collections": len(s.collections),
            "subjects": s.subjects,
            "studies": s.studies,
            "series": s.header.series_count,
            "images": s.header.image_count,
            "bytes": s.header.total_bytes,
            "modalities": s.modalities,
        },
        "collections": [dataclasses.asdict(c) for c in s.collections],
        "licenses": [dataclasses.asdict(x) for x in s.licenses],
        "verification": dataclasses.asdict(s.verification) if s.verification else None,
        "reader_commands": s.reader_commands(),
        "series": [
            {
                "series_uid": x.series_uid,
                "collection": x.collection,
                "patient_id": x.patient_id,
                "study_uid": x.study_uid,
                "modality": x.modality,
                "images": x.image_count,
                "bytes": x.bytes,
                "series_hash": x.series_hash,
                "released": x.released,
                "license": x.license_name,
                "doi": x.doi,
            }
            for x in s.series
        ],
    }
    return json.dumps(json_safe(document), indent=2, sort_keys=True) + "\n"
