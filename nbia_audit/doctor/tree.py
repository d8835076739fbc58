"""The doctor's rows about the hash tree above the series: the sample's study and patient.

``drift`` and ``lock --check`` compare study and patient hashes they compute from pinned series
hashes with the archive's (protocol §1.3): a study combines the hashes of its visible series,
a patient those of its studies within one collection. Here the sample patient's series are
listed, their series hashes asked, and both levels recomputed with ``merkle`` and compared.
"""

from __future__ import annotations

from nbia_audit.doctor.checks import Check, SeriesFacts, check, describe, json_rows, skip
from nbia_audit.doctor.http import Prober
from nbia_audit.merkle import hierarchy_from_series

__all__ = ["TREE_SERIES_LIMIT", "tree_checks"]

TREE_SERIES_LIMIT = 5
"""Series of the sample patient whose hashes the doctor asks; a larger patient is skipped."""

_STUDY = ("hash-study", "study hash recomputed from its series hashes")
_PATIENT = ("hash-patient", "patient hash (Collection + PatientID) recomputed from its studies")
_EXPECTED = {
    "hash-study": "md5 of the sorted series hashes of the study's listed series = getMD5Hierarchy",
    "hash-patient": "md5 of the sorted study hashes of the patient = getMD5Hierarchy",
}


def tree_checks(prober: Prober, facts: SeriesFacts) -> list[Check]:
    """The study and patient rows."""
    collection, patient, study = facts.collection, facts.patient_id, facts.study_uid
    if collection is None or patient is None or study is None or facts.archive_hash is None:
        return _skipped("the series row or its hash is missing")
    answer = prober.get("v4/getSeries", {"Collection": collection, "PatientID": patient})
    rows = json_rows(answer) or []
    listed = [
        (str(r["StudyInstanceUID"]), str(r["SeriesInstanceUID"]))
        for r in rows
        if isinstance(r.get("StudyInstanceUID"), str)
        and isinstance(r.get("SeriesInstanceUID"), str)
    ]
    if answer.status != 200 or (study, facts.series_uid) not in listed:
        note = describe(answer, "the patient's series do not include the sample")
        return [
            check(name, title, _EXPECTED[name], note, False) for name, title in (_STUDY, _PATIENT)
        ]
    if len(listed) > TREE_SERIES_LIMIT:
        return _skipped(f"the patient has {len(listed)} series")
    hashes = {facts.series_uid: facts.archive_hash}
    for _study, uid in listed:
        if uid not in hashes:
            hashes[uid] = prober.post("v4/getMD5Hierarchy", {"SeriesInstanceUID": uid}).text
    tree = hierarchy_from_series(
        (collection, patient, study_uid, uid, hashes[uid]) for study_uid, uid in listed
    )
    study_answer = prober.post("v4/getMD5Hierarchy", {"StudyInstanceUID": study})
    patient_answer = prober.post(
        "v4/getMD5Hierarchy", {"Collection": collection, "PatientID": patient}
    )
    mine_study, mine_patient = tree.studies[study], tree.patients[(collection, patient)]
    return [
        _compare(_STUDY, study_answer.text, mine_study, describe(study_answer)),
        _compare(_PATIENT, patient_answer.text, mine_patient, describe(patient_answer)),
    ]


def _compare(row: tuple[str, str], archive: str, mine: str, answered: str) -> Check:
    name, title = row
    ok = bool(mine) and archive == mine
    note = f"{answered}; recomputed {mine}" + ("" if ok else f", archive {archive[:40]!r}")
    return check(name, title, _EXPECTED[name], note, ok)


def _skipped(why: str) -> list[Check]:
    return [skip(name, title, _EXPECTED[name], why) for name, title in (_STUDY, _PATIENT)]
