"""Seeded random samples and what a clean (or dirty) sample proves.

``verify --sample`` hashes a seeded random fraction of the locked images, so a CI job can
check a large copy in minutes and still say something exact: with ``f`` corrupt images in
a random sample of ``n``, the corrupt fraction of the whole is below the one-sided 95%
Clopper-Pearson upper bound (``1 - 0.05 ** (1 / n)`` when ``f == 0``, about ``3 / n``: the
rule of three). The bound treats the draw as with replacement, which overstates it slightly
for a sample without replacement: it is conservative.
"""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import Iterable

__all__ = ["choose_sample", "new_seed", "sample_statement", "upper_bound_95"]

_ALPHA = 0.05


def new_seed() -> int:
    """A fresh seed for a run that was not given one (reported, so the run can be repeated)."""
    return secrets.randbelow(2**31)


def sample_size(population: int, fraction: float) -> int:
    """How many of ``population`` units a fraction asks for: at least one, at most all."""
    if population <= 0:
        return 0
    return min(population, max(1, math.ceil(fraction * population)))


def choose_sample(units: Iterable[str], fraction: float, seed: int) -> frozenset[str]:
    """Pick ``ceil(fraction * len(units))`` units at random, the same ones for the same seed.

    The units are sorted first, so the choice depends only on the set, the fraction and
    the seed, never on the order the caller found them in.
    """
    ordered = sorted(set(units))
    return frozenset(random.Random(seed).sample(ordered, sample_size(len(ordered), fraction)))


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
