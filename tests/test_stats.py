"""gogame.stats pinned to values worked out by hand from the closed forms (z = 1.959964, z^2 = 3.841459)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gogame.stats import Z95, elo_difference, mean_interval, median_interval, wilson_interval


def test_z95_is_the_two_sided_95_percent_quantile():
    assert math.erf(Z95 / math.sqrt(2)) == pytest.approx(0.95, abs=1e-12)


def test_wilson_interval_at_the_ends_and_the_middle():
    # Wilson: (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n).
    # 0/10: p = 0, the two terms cancel at the bottom; top = (z^2/n) / (1 + z^2/n) = z^2 / (10 + z^2)
    #       = 3.841459 / 13.841459 = 0.277533.
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.277533), abs=1e-6)
    # 10/10: the mirror image: bottom = 10 / (10 + z^2) = 10 / 13.841459 = 0.722467, top 1.
    assert wilson_interval(10, 10) == pytest.approx((0.722467, 1.0), abs=1e-6)
    # 5/10: centred on 0.5; half-width z sqrt(0.025 + z^2/400) / (1 + z^2/10)
    #       = 1.959964 * sqrt(0.0346036) / 1.3841459 = 0.263407.
    assert wilson_interval(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-6)
    # 7/10: centre (0.7 + 0.192073) / 1.384146 = 0.644493; half 1.959964 * sqrt(0.021 + 0.009604) / 1.384146
    #       = 0.247715.
    assert wilson_interval(7, 10) == pytest.approx((0.396778, 0.892209), abs=1e-6)


def test_wilson_interval_counts_half_wins_and_knows_nothing_without_trials():
    # 2.5 of 4 (two wins and a draw): p = 0.625, centre (0.625 + 0.480182) / 1.960365 = 0.563764;
    # half 1.959964 * sqrt(0.058594 + 0.060023) / 1.960365 = 0.344337.
    assert wilson_interval(2.5, 4) == pytest.approx((0.219427, 0.908101), abs=1e-6)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_the_lower_bound_grows_with_the_trials_at_one_rate():
    lower = [wilson_interval(0.6 * n, n)[0] for n in (10, 100, 1000)]
    assert lower[0] < lower[1] < lower[2] < 0.6


def test_elo_difference():
    assert elo_difference(0.5) == 0.0
    assert math.copysign(1.0, elo_difference(0.5)) == 1.0  # not -0.0
    # 0.76: 400 log10(0.76 / 0.24) = 400 log10(19 / 6) = 400 * 0.500602 = 200.241
    assert elo_difference(0.76) == pytest.approx(200.241, abs=1e-3)
    assert elo_difference(0.24) == pytest.approx(-200.241, abs=1e-3)
    assert elo_difference(0.75) == pytest.approx(190.848501, abs=1e-5)  # 400 log10 3
    assert elo_difference(10 / 11) == pytest.approx(400.0)  # odds 10 to 1
    assert elo_difference(1.0) == math.inf
    assert elo_difference(0.0) == -math.inf


def test_mean_interval():
    # [1, 2, 3, 4]: mean 2.5, sample standard deviation sqrt(5/3) = 1.290994; half-width 1.959964 * 1.290994 / 2
    # = 1.265151.
    assert mean_interval([1, 2, 3, 4]) == pytest.approx((1.234849, 3.765151), abs=1e-6)
    assert mean_interval(np.full(5, 0.25)) == (0.25, 0.25)
    assert all(math.isnan(x) for x in mean_interval([1.0]))
    assert all(math.isnan(x) for x in mean_interval([]))


def test_median_interval():
    # 100 samples 0..99: half-width 1.959964 * 10 / 2 = 9.799820, so order statistics floor(40.20) = 40 and
    # ceil(59.80) - 1 = 59 (counted from 0).
    assert median_interval(np.arange(100)[::-1]) == (40.0, 59.0)
    # 4 samples: half-width 1.959964, floor(0.04) = 0 and ceil(3.96) - 1 = 3: the whole range.
    assert median_interval([3.0, 1.0, 4.0, 2.0]) == (1.0, 4.0)
    assert median_interval([7.0]) == (7.0, 7.0)
    assert all(math.isnan(x) for x in median_interval([]))
