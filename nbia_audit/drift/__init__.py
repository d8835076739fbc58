"""The ``drift`` verb: what changed upstream since a lock."""
