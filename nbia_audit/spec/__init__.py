"""The dataset spec (``dataset.yaml``): load, validate and normalise it.

``load_spec`` reads and validates a spec file; ``DatasetSpec`` is the validated spec, its
``select``/``exclude`` lists of ``Selector`` and its ``SpecOptions``.
"""

from nbia_audit.spec.load import (
    SOURCE_KINDS,
    DatasetSpec,
    Selector,
    SpecOptions,
    load_spec,
    parse_spec,
    spec_from_normalised,
)

__all__ = [
    "SOURCE_KINDS",
    "DatasetSpec",
    "Selector",
    "SpecOptions",
    "load_spec",
    "parse_spec",
    "spec_from_normalised",
]
