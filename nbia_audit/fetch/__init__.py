"""The ``fetch`` verb: materialise exactly the locked bytes, proving every image."""
