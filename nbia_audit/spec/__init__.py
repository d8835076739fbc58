"""The dataset spec (``dataset.yaml``): load, validate and normalise it.

``load_spec`` reads and validates a spec file (``parse_spec`` its text); ``DatasetSpec`` is
the validated spec, with its ``select``/``exclude`` lists of ``Selector`` and its
``SpecOptions``.
"""

from nbia_audit.spec.load import DatasetSpec, Selector, SpecOptions, load_spec, parse_spec

__all__ = ["DatasetSpec", "Selector", "SpecOptions", "load_spec", "parse_spec"]
