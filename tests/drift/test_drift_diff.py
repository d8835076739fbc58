"""The pure core of drift: diff(locked, upstream), checked with Hypothesis against a model.

Properties: diff(x, x) is empty; applying any set of upstream changes to a lock makes diff
report exactly those changes, each once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from nbia_audit.drift.diff import (
    FIELD_LABELS,
    Reach,
    SeriesMeta,
    SeriesView,
    Upstream,
    deselection_explained,
    diff,
    image_findings,
    metadata_findings,
)
from nbia_audit.merkle import series_hash

Key = tuple[str, str, str, str, str, str]

md5s = st.one_of(
    st.none(),
    st.text("0123456789abcdef", min_size=32, max_size=32),
    st.text("0123456789abcdef", min_size=30, max_size=31).map(lambda s: "1" + s),
)
texts = st.sampled_from(["", "A", "B", "CC BY 4.0 <https://x>", "2020-01-02"])
metas = st.builds(
    SeriesMeta,
    collection=st.sampled_from(["C1", "C2"]),
    patient_id=st.sampled_from(["P1", "P2"]),
    study_uid=st.sampled_from(["1.1", "1.2"]),
    modality=st.sampled_from(["CT", "MR"]),
    description=texts,
    license=texts,
    doi=texts,
    released=st.sampled_from(["", "2015-06-06", "2021-03-04"]),
    image_count=st.integers(0, 5),
    bytes=st.integers(0, 10_000),
)
image_sets = st.dictionaries(st.from_regex(r"9\.[0-9]{1,3}", fullmatch=True), md5s, max_size=5)


@st.composite
def locks(draw: st.DrawFn) -> dict[str, SeriesView]:
    uids = draw(st.sets(st.from_regex(r"1\.2\.[0-9]{1,3}", fullmatch=True), max_size=6))
    out = {}
    for uid in sorted(uids):
        pinned = draw(st.booleans())
        images = draw(image_sets) if pinned else None
        digest = series_hash(images.values()) if images is not None else draw(md5s) or ""
        out[uid] = SeriesView(uid, draw(metas), digest, images)
    return out


@given(locks())
def test_diff_of_a_lock_with_itself_is_empty(locked: dict[str, SeriesView]) -> None:
    assert diff(locked, Upstream.unchanged(locked)) == ()


@given(image_sets, metas)
def test_image_and_metadata_diffs_of_equal_values_are_empty(
    images: dict[str, str | None], meta: SeriesMeta
) -> None:
    assert image_findings("1.2", images, images) == []
    assert metadata_findings("1.2", meta, meta, content_changed=False) == []


FATES = ("same", "changed", "removed", "hidden", "deselected")


@st.composite
def drifted(draw: st.DrawFn) -> tuple[dict[str, SeriesView], Upstream, set[Key]]:
    """A lock, an upstream made by applying random changes to it, and the changes as keys."""
    locked = draw(locks())
    selected: dict[str, SeriesView] = {}
    deselected: dict[str, SeriesView] = {}
    hidden: dict[str, str] = {}
    removed: set[str] = set()
    expected: set[Key] = set()
    for uid, old in locked.items():
        fate = draw(st.sampled_from(FATES))
        if fate == "same":
            selected[uid] = old
        elif fate == "changed":
            new, keys = draw(changed(old))
            selected[uid] = new
            expected |= keys
        elif fate == "removed":
            removed.add(uid)
            expected.add(("series-removed", uid, "", "", "", ""))
        elif fate == "hidden":
            now = draw(st.sampled_from([old.series_hash or "x", "f" * 32]))
            hidden[uid] = now
            same = now == old.series_hash
            expected.add(
                (
                    "series-hidden",
                    uid,
                    "",
                    "" if same else old.series_hash or "",
                    "" if same else now,
                    "",
                )
            )
        else:
            meta = draw(new_meta(old.meta))
            deselected[uid] = SeriesView(uid, meta, None)
            expected.add(("series-removed", uid, "", "", "", ""))
            expected |= meta_keys(uid, old.meta, meta, content_changed=True)
    for uid in draw(st.sets(st.from_regex(r"5\.5\.[0-9]{1,2}", fullmatch=True), max_size=3)):
        selected[uid] = SeriesView(uid, draw(metas), None)
        expected.add(("series-added", uid, "", "", "", ""))
    upstream = Upstream(selected, deselected, hidden, frozenset(removed))
    return locked, upstream, expected


@st.composite
def new_meta(draw: st.DrawFn, old: SeriesMeta) -> SeriesMeta:
    names = draw(st.sets(st.sampled_from(sorted(FIELD_LABELS)), max_size=4))
    changes: dict[str, object] = {}
    for name in names:
        value = getattr(old, name)
        changes[name] = value + 1 if isinstance(value, int) else f"{value}-changed"
    return dataclasses.replace(old, **changes)  # type: ignore[arg-type]


@st.composite
def changed(draw: st.DrawFn, old: SeriesView) -> tuple[SeriesView, set[Key]]:
    uid = old.series_uid
    meta = draw(new_meta(old.meta))
    keys: set[Key] = set()
    if old.images is None:
        digest = draw(st.sampled_from([old.series_hash or "", "e" * 32]))
        new = SeriesView(uid, meta, digest, None)
        if digest != old.series_hash:
            keys.add(("image-changed", uid, "", old.series_hash or "", digest, ""))
    else:
        images = dict(old.images)
        for sop in draw(st.sets(st.sampled_from(sorted(images)), max_size=2)) if images else ():
            del images[sop]
            keys.add(("image-removed", uid, sop, show(old.images[sop]), "", ""))
        for sop in sorted(images):
            if draw(st.booleans()):
                value = draw(md5s.filter(lambda v, was=images[sop]: v != was))
                keys.add(("image-changed", uid, sop, show(images[sop]), show(value), ""))
                images[sop] = value
        for sop, value in draw(image_sets).items():
            if sop not in old.images:
                images[sop] = value
                keys.add(("image-added", uid, sop, "", show(value), ""))
        new = SeriesView(uid, meta, series_hash(images.values()), images)
    content_changed = new.series_hash != old.series_hash
    return new, keys | meta_keys(uid, old.meta, meta, content_changed=content_changed)


def show(md5: str | None) -> str:
    return "NULL" if md5 is None else md5


def meta_keys(uid: str, old: SeriesMeta, new: SeriesMeta, *, content_changed: bool) -> set[Key]:
    skip = {"image_count", "bytes"} if content_changed else set()
    return {
        ("metadata-changed", uid, "", str(getattr(old, n)), str(getattr(new, n)), label)
        for n, label in FIELD_LABELS.items()
        if n not in skip and getattr(old, n) != getattr(new, n)
    }


def as_keys(findings: tuple) -> set[Key]:  # type: ignore[type-arg]
    return {
        (
            f.kind,
            f.series_uid,
            f.sop_uid,
            f.old,
            f.new,
            f.detail if f.kind == "metadata-changed" else "",
        )
        for f in findings
    }


@settings(max_examples=300)
@given(drifted())
def test_diff_reports_exactly_the_applied_changes(
    case: tuple[dict[str, SeriesView], Upstream, set[Key]],
) -> None:
    locked, upstream, expected = case
    findings = diff(locked, upstream)
    assert as_keys(findings) == expected
    assert len(findings) == len(expected)  # each change once
    assert list(findings) == sorted(findings)  # deterministic order


def test_a_series_whose_content_is_unknown_reports_only_metadata() -> None:
    old = SeriesView("1.2", SeriesMeta(license="A"), "a" * 32, {"9.1": "b" * 32})
    new = SeriesView("1.2", SeriesMeta(license="B", image_count=3), None)
    findings = diff({"1.2": old}, Upstream({"1.2": new}))
    assert as_keys(findings) == {("metadata-changed", "1.2", "", "A", "B", "license")}


def test_a_short_stored_md5_is_a_change_of_the_stored_string_with_same_content() -> None:
    (finding,) = image_findings("1.2", {"9.1": "0abc" + "1" * 28}, {"9.1": "abc" + "1" * 28})
    assert finding.kind == "image-changed" and "same content" in finding.detail


def test_a_hash_change_without_an_image_change_is_still_reported() -> None:
    images: Mapping[str, str | None] = {"9.1": "b" * 32}
    old = SeriesView("1.2", SeriesMeta(), "a" * 32, images)
    new = SeriesView("1.2", SeriesMeta(), "c" * 32, images)
    (finding,) = diff({"1.2": old}, Upstream({"1.2": new}))
    assert finding.kind == "image-changed" and finding.sop_uid == ""


@given(metas, st.sampled_from(["modality", "released", "doi", "collection", "study_uid"]))
def test_a_changed_selecting_field_explains_leaving_the_selection(
    meta: SeriesMeta, name: str
) -> None:
    moved = dataclasses.replace(meta, **{name: getattr(meta, name) + "-x"})
    assert deselection_explained(meta, moved, Reach(by_fields=True))
    assert not deselection_explained(meta, meta, Reach(by_fields=True))
    assert deselection_explained(meta, meta, Reach(external=True))


@given(metas, st.booleans(), st.booleans(), st.booleans())
def test_leaving_unchanged_is_believed_only_where_no_field_selector_reaches_the_series(
    meta: SeriesMeta, by_fields: bool, external: bool, excluded: bool
) -> None:
    # A collection (or study, UID, DOI) selector that still matches the unchanged series
    # would have listed it: its absence is a short listing (protocol §4.3), whatever carts
    # or searches the spec also holds. Only an exclude, or a series nothing but a cart,
    # search or text selector reaches, may leave without a visible cause.
    reach = Reach(by_fields=by_fields, external=external, excluded=excluded)
    expected = excluded or (external and not by_fields)
    assert deselection_explained(meta, meta, reach) == expected
