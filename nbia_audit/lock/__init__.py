"""The ``lock`` verb: resolve a spec into a lock, keep pins, check staleness."""
