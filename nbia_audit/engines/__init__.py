"""Engines that run shards elsewhere: job-array scripts for SLURM and PBS, the Dask executor.

``array_script`` writes the script for a scheduler's job array (docs/scale.md); nothing here
imports Dask unless its executor is asked for.
"""

from nbia_audit.engines.jobarray import ArrayJob, JobArrayError, array_script

__all__ = ["ArrayJob", "JobArrayError", "array_script"]
