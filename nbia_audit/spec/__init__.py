"""The dataset spec (``dataset.yaml``): load, validate and normalise it."""
