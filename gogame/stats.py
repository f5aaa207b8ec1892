"""The project's statistics: the Wilson interval of a win rate, the Elo difference of an expected score, the
normal interval of a mean and the order-statistic interval of a median.

One copy of each, for the engine (the lower confidence bound of a candidate's win rate) and for training (match
and policy-match reports, value-net comparisons, the value data's floor).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054  # the two-sided 95% normal quantile


def wilson_interval(score: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of the proportion ``score / n`` (Wilson 1927).

    ``score``: the successes, a float so that a draw may count half; ``n``: the trials; ``z``: the normal
    quantile (95% two-sided by default). Returns ``(lower, upper)`` within [0, 1]; ``(0, 1)`` when ``n`` is 0.
    The lower end is the lower confidence bound (LCB) of the rate.
    """
    if n <= 0:
        return 0.0, 1.0
    p = score / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def elo_difference(p: float) -> float:
    """The Elo difference whose expected score is ``p``: ``-400 log10(1/p - 1)``.

    Returns 0.0 (never -0.0) at ``p = 0.5``, ``+inf`` for ``p >= 1`` and ``-inf`` for ``p <= 0``.
    """
    if p <= 0:
        return -math.inf
    if p >= 1:
        return math.inf
    return -400 * math.log10(1 / p - 1) + 0.0


def mean_interval(samples: Sequence[float] | np.ndarray, z: float = Z95) -> tuple[float, float]:
    """The normal interval of the mean of ``samples``: mean +- z * (sample standard deviation) / sqrt(n).

    Returns ``(lower, upper)`` as floats; ``(nan, nan)`` with fewer than two samples.
    """
    samples = np.asarray(samples, np.float64)
    if samples.size < 2:
        return math.nan, math.nan
    half = z * samples.std(ddof=1) / math.sqrt(samples.size)
    return float(samples.mean() - half), float(samples.mean() + half)


def median_interval(samples: Sequence[float] | np.ndarray, z: float = Z95) -> tuple[float, float]:
    """A distribution-free interval of the median of ``samples``: the order statistics ``n/2 -+ z sqrt(n)/2``
    (the normal approximation of the binomial count of samples below the median), clipped to the samples.

    Returns ``(lower, upper)`` as floats; ``(nan, nan)`` without samples.
    """
    ordered = np.sort(np.asarray(samples, np.float64))
    n = ordered.size
    if n == 0:
        return math.nan, math.nan
    half = z * math.sqrt(n) / 2
    lo, hi = max(0, math.floor(n / 2 - half)), min(n - 1, math.ceil(n / 2 + half) - 1)
    return float(ordered[lo]), float(ordered[hi])
