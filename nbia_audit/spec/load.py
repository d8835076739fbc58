"""The dataset spec (``dataset.yaml``): load and validate it, before any request.

Every problem is a :class:`~nbia_audit.errors.SpecError` naming the file, the line and the key
(``select[2].modality``), what is wrong and what would be right. This module reads the file and
the YAML; spec/validate.py walks the parsed YAML into the records of spec/model.py. Validation
is offline; checks that need the archive (an unknown collection, an empty selection) happen in
the resolver and report the same way, using the line numbers kept on each selector.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from nbia_audit.boundedinput import read_bounded
from nbia_audit.errors import SpecError
from nbia_audit.spec.model import (
    SOURCE_KINDS,
    DatasetSpec,
    Selector,
    SpecOptions,
    spec_from_normalised,
)
from nbia_audit.spec.validate import Validator
from nbia_audit.spec.yamlmarks import (
    DuplicateKeyError,
    MarkedDict,
    YamlTooBigError,
    key_text,
    load_marked,
    type_name,
)

# The records are spec/model.py's; they are named here too so that `spec.load` stays the
# one import a caller of load_spec needs.
__all__ = [
    "SOURCE_KINDS",
    "SPEC_MAX_BYTES",
    "DatasetSpec",
    "Selector",
    "SpecOptions",
    "load_spec",
    "parse_spec",
    "spec_from_normalised",
]

SPEC_MAX_BYTES = 4 << 20
"""The largest spec file read; long lists of series belong in a manifest."""


def load_spec(path: str | Path) -> DatasetSpec:
    """Read and validate the spec file at ``path``.

    Raises:
        SpecError: the file is unreadable or invalid; the message names file, line and key.
    """
    spec_path = Path(path)
    raw = read_bounded(spec_path, limit=SPEC_MAX_BYTES, what="spec")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"not UTF-8 text (byte {exc.start})", path=str(spec_path), hint="save it as UTF-8"
        ) from None
    return parse_spec(text, path=str(spec_path), base_dir=spec_path.parent)


def parse_spec(text: str, *, path: str = "<spec>", base_dir: Path | None = None) -> DatasetSpec:
    """Validate spec text; ``base_dir`` resolves relative manifest paths.

    Raises:
        SpecError: the text is not a valid spec.
    """
    return Validator(path, base_dir or Path.cwd()).spec(_parse_yaml(text, path))


def _parse_yaml(text: str, path: str) -> MarkedDict:
    try:
        data = load_marked(text)
    except DuplicateKeyError as exc:
        raise SpecError(
            f"duplicate key (first defined on line {exc.first_line})",
            path=path,
            line=exc.line,
            key=key_text(exc.key),
            hint="keep one of them",
        ) from None
    except YamlTooBigError as exc:
        raise SpecError(
            str(exc.problem),
            path=path,
            line=exc.problem_mark.line + 1 if exc.problem_mark else None,
            key=exc.key or None,
            hint="a dataset spec is a few short lists; list many series in a manifest",
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        raise SpecError(
            f"YAML syntax error: {problem}",
            path=path,
            line=mark.line + 1 if mark else None,
            hint="check indentation, colons and quotes",
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"YAML error: {exc}", path=path) from None
    except (ValueError, OverflowError) as exc:  # a constructor failing on an odd scalar
        raise SpecError(f"cannot read a value: {exc}", path=path, hint="quote it") from None
    if data is None:
        raise SpecError(
            "the spec is empty", path=path, hint="it needs at least `name:` and `select:`"
        )
    if not isinstance(data, MarkedDict):
        raise SpecError(
            f"the spec must be a mapping of keys, not a {type_name(data)}",
            path=path,
            line=1,
            hint="start with `name: my-dataset`",
        )
    return data
