"""The JSON control API under ``/_emulator/``: mutate and fault a running emulator remotely.

=========  ========================  ==================================================
Method     Path                      Body / result
=========  ========================  ==================================================
GET        ``/_emulator/state``      base URL, counts, active faults, request count
GET        ``/_emulator/series``     every series: uid, study, patient, collection,
                                     visibility, images (SOP UID + stored MD5)
POST       ``/_emulator/mutate``     ``{"action": <name>, ...arguments}`` -> ``{"result"}``
GET        ``/_emulator/faults``     active fault rules
POST       ``/_emulator/faults``     a ``Fault`` as JSON (``kind``, ``endpoint``, ...)
DELETE     ``/_emulator/faults``     clear every fault
POST       ``/_emulator/nightly``    run the nightly collection-hash job
POST       ``/_emulator/expire-tokens``
GET        ``/_emulator/requests``   the request log; DELETE clears it
=========  ========================  ==================================================

Mutation actions are the ``Emulator`` methods of the same name: ``replace_image``,
``add_image``, ``remove_image``, ``add_series``, ``remove_series``, ``hide_series``,
``show_series``, ``set_license``, ``set_doi``, ``set_release_date``, ``shorten_md5``,
``set_stored_md5``, ``clear_md5_cache``. Errors come back as ``{"error": ...}`` with 400/404.
"""

from __future__ import annotations

import base64
import inspect
from dataclasses import asdict
from typing import Any, Protocol

from nbia_audit.emulator.backend import RequestRecord
from nbia_audit.emulator.corpus import Corpus
from nbia_audit.emulator.faults import Fault

MUTATIONS = (
    "replace_image",
    "add_image",
    "remove_image",
    "add_series",
    "remove_series",
    "hide_series",
    "show_series",
    "set_license",
    "set_doi",
    "set_release_date",
    "shorten_md5",
    "set_stored_md5",
    "clear_md5_cache",
    "add_cart",
    "run_nightly_job",
    "expire_tokens",
)


def mutation_signatures(emu_class: type) -> dict[str, str]:
    """``action -> "name=..., other=..."`` for help texts, from the Emulator's own methods."""
    out = {}
    for action in MUTATIONS:
        parameters = list(inspect.signature(getattr(emu_class, action)).parameters.values())[1:]
        out[action] = ", ".join(
            p.name if p.default is inspect.Parameter.empty else f"[{p.name}]" for p in parameters
        )
    return out


Result = tuple[int, object]


class Controlled(Protocol):
    """What the control API reads and calls on a running emulator (``Emulator`` is one).

    The mutations in :data:`MUTATIONS` are looked up by name; the emulator builds this
    dispatcher for itself, so naming it here rather than importing it keeps the two apart.
    """

    corpus: Corpus

    @property
    def base_url(self) -> str: ...
    @property
    def faults(self) -> tuple[Fault, ...]: ...
    @property
    def requests(self) -> list[RequestRecord]: ...
    @property
    def request_count(self) -> int: ...
    def add_fault(self, fault: Fault) -> None: ...
    def clear_faults(self) -> None: ...
    def reset_request_log(self) -> None: ...
    def run_nightly_job(self) -> dict[str, str]: ...
    def expire_tokens(self) -> None: ...


def make_control(emulator: Controlled) -> Any:
    """The control dispatcher ``(method, path, payload) -> (status, JSON result)``."""

    def control(method: str, path: str, payload: dict[str, Any]) -> Result:
        try:
            return _dispatch(emulator, method, path.strip("/"), payload)
        except KeyError as exc:
            return 404, {"error": str(exc.args[0]) if exc.args else "not found"}
        except (TypeError, ValueError) as exc:
            return 400, {"error": str(exc)}

    return control


def _dispatch(emu: Controlled, method: str, path: str, payload: dict[str, Any]) -> Result:
    if (method, path) == ("GET", "state"):
        return 200, _state(emu)
    if (method, path) == ("GET", "series"):
        return 200, _series(emu)
    if (method, path) == ("POST", "mutate"):
        return 200, {"result": _mutate(emu, payload)}
    if path == "faults":
        if method == "POST":
            emu.add_fault(Fault(**payload))
        elif method == "DELETE":
            emu.clear_faults()
        return 200, {"faults": [f.to_json() for f in emu.faults]}
    if (method, path) == ("POST", "nightly"):
        return 200, {"changed": emu.run_nightly_job()}
    if (method, path) == ("POST", "expire-tokens"):
        emu.expire_tokens()
        return 200, {"ok": True}
    if path == "requests" and method in ("GET", "DELETE"):
        records = [asdict(r) for r in emu.requests]
        if method == "DELETE":
            emu.reset_request_log()
        return 200, {"requests": records, "count": len(records)}
    return 404, {"error": f"no control endpoint {method} /_emulator/{path}"}


def _state(emu: Controlled) -> dict[str, Any]:
    corpus = emu.corpus
    return {
        "base_url": emu.base_url,
        "collections": [c.name for c in corpus.collections],
        "series": len(corpus.series),
        "images": len(corpus.images),
        "faults": [f.to_json() for f in emu.faults],
        "request_count": emu.request_count,
    }


def _series(emu: Controlled) -> list[dict[str, Any]]:
    return [
        {
            "series_uid": s.series_uid,
            "study_uid": s.study_uid,
            "patient_id": s.patient_id,
            "collection": s.collection,
            "visibility": s.visibility,
            "images": [
                {"sop_uid": i.sop_uid, "stored_md5": i.stored_md5}
                for i in emu.corpus.images_of(s.series_uid)
            ],
        }
        for s in emu.corpus.series
    ]


def _mutate(emu: Controlled, payload: dict[str, Any]) -> object:
    arguments = dict(payload)
    action = arguments.pop("action", None)
    if action not in MUTATIONS:
        raise ValueError(f"unknown action {action!r}; use one of {', '.join(MUTATIONS)}")
    if action == "replace_image" and "data_base64" in arguments:
        arguments["data"] = base64.b64decode(arguments.pop("data_base64"))
    method = getattr(emu, action)
    try:
        inspect.signature(method).bind(**arguments)
    except TypeError:
        expected = mutation_signatures(type(emu))[action] or "no arguments"
        raise ValueError(f"{action} takes: {expected}") from None
    result = method(**arguments)
    return result if result is None or isinstance(result, str | dict) else str(result)
