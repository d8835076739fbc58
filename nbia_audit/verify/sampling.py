"""Seeded random samples and what a clean (or dirty) sample proves.

``verify --sample`` hashes a seeded random fraction of the locked images, so a CI job can
check a large copy in minutes and still say something exact: with ``f`` corrupt images in
a random sample of ``n``, the corrupt fraction of the whole is below the one-sided 95%
Clopper-Pearson upper bound (``1 - 0.05 ** (1 / n)`` when ``f == 0``, about ``3 / n``: the
rule of three).

Each unit is in the sample when a keyed hash of (seed, unit) falls below the fraction
(:func:`in_sample`): a Bernoulli sample, decided unit by unit with nothing held in memory,
the same in every process. Given its size ``n``, such a sample is a uniformly random subset
of ``n`` units (the hash stands for a random function of the seed, which is drawn after the
copy exists), so the bound applies to it as it did to a drawn subset of fixed size. The
bound treats the draw as with replacement, which overstates it slightly for a sample without
replacement: it is conservative.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass

__all__ = ["Sample", "in_sample", "new_seed", "sample_statement", "upper_bound_95"]

_ALPHA = 0.05
_SPAN = 2**64  # the keyed hash's range: 8 bytes


def new_seed() -> int:
    """A fresh seed for a run that was not given one (reported, so the run can be repeated)."""
    return secrets.randbelow(2**31)


def in_sample(unit: str, fraction: float, seed: int) -> bool:
    """Whether ``unit`` (a SOPInstanceUID, or a series UID) is in the sample of ``seed``.

    A pure function of (seed, unit): a keyed hash (BLAKE2b of the seed and the unit) read
    as a number in [0, 1), below ``fraction``. Every unit is drawn independently with
    probability ``fraction`` (a Bernoulli sample), so any process, shard or thread decides
    alone and the same way, nothing has to hold the list of drawn units, and the sample's
    size is random (about ``fraction`` of the units; it may be zero for a tiny lock).
    """
    digest = hashlib.blake2b(
        f"{seed}\0{unit}".encode("utf-8", "surrogatepass"), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big") < fraction * _SPAN


@dataclass(frozen=True, slots=True)
class Sample:
    """The units of one seeded sample: ``unit in sample`` is :func:`in_sample`."""

    fraction: float
    seed: int

    def __contains__(self, unit: object) -> bool:
        return isinstance(unit, str) and in_sample(unit, self.fraction, self.seed)


def _log_binom_cdf(failures: int, n: int, p: float) -> float:
    # log P(X <= failures) for X ~ Binomial(n, p), summed in log space (n may be millions).
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1)
        - math.lgamma(i + 1)
        - math.lgamma(n - i + 1)
        + i * log_p
        + (n - i) * log_q
        for i in range(failures + 1)
    ]
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms))


def upper_bound_95(n: int, failures: int) -> float:
    """One-sided 95% upper confidence bound on a proportion after ``failures`` in ``n``."""
    if n <= 0:
        return 1.0
    if failures >= n:
        return 1.0
    if failures == 0:
        return float(1.0 - _ALPHA ** (1.0 / n))
    low, high = failures / n, 1.0
    target = math.log(_ALPHA)
    for _ in range(100):  # bisection: the CDF falls as p rises
        mid = (low + high) / 2
        if _log_binom_cdf(failures, n, mid) > target:
            low = mid
        else:
            high = mid
    return high


def sample_statement(unit: str, checked: int, population: int, failures: int) -> str:
    """What a sample proves, in one sentence."""
    if checked >= population:
        return f"every {unit} was checked ({failures} of {population} corrupt): no sampling error"
    bound = upper_bound_95(checked, failures)
    return (
        f"{failures} of {checked} randomly sampled {unit}s corrupt: with 95% confidence "
        f"fewer than {bound:.3%} of the {population} {unit}s are corrupt"
    )
