"""The ``verify`` verb: is this folder exactly the locked dataset?

``verify_copy`` checks a copy against its lock (asking no server) and returns an
``AuditReport``; ``LEVELS`` are its levels of proof (``full``, ``quick``, ``stat``).
``verify_shard`` and ``merge_verify`` split the same check into shards and merge them into
the same verdict (docs/scale.md).
"""

from nbia_audit.verify.run import LEVELS, verify_copy
from nbia_audit.verify.shards import merge_verify, verify_shard

__all__ = ["LEVELS", "merge_verify", "verify_copy", "verify_shard"]
