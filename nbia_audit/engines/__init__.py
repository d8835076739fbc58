"""Engines that run shards elsewhere: job-array scripts for SLURM and PBS, the Dask executor.

``array_script`` writes the script for a scheduler's job array; ``verify_with_dask`` and
``fetch_with_dask`` run a verb's shards on a Dask cluster and merge them (docs/scale.md).
Nothing here imports Dask unless its executor runs.
"""

from nbia_audit.engines.daskexec import DaskTarget, fetch_with_dask, verify_with_dask
from nbia_audit.engines.jobarray import ArrayJob, JobArrayError, array_script

__all__ = [
    "ArrayJob",
    "DaskTarget",
    "JobArrayError",
    "array_script",
    "fetch_with_dask",
    "verify_with_dask",
]
