"""Jensen-Shannon: log base 2, and why the old fixed 0.1 threshold is noise for small n."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeops.drift import assess, jensen_shannon, live_from_wire, numeric_entry
from edgeops.drift.histograms import bin_counts


def test_js_is_base_2_so_disjoint_histograms_are_at_distance_one() -> None:
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)
    # In nats the same pair would be sqrt(ln 2) = 0.83.
    assert jensen_shannon([1, 0], [0, 1]) != pytest.approx(math.sqrt(math.log(2)))


def test_fixed_js_threshold_sits_inside_sampling_noise_for_small_windows() -> None:
    rng = np.random.default_rng(31)
    shares = np.full(10, 0.1)
    windows = rng.multinomial(100, shares, size=500)
    js = np.array([jensen_shannon(shares * 1000, w) for w in windows])
    # sqrt((k - 1) / (8 n ln 2)) = 0.127: most no-drift windows exceed 0.1.
    assert np.mean(js > 0.1) > 0.5
    assert np.median(js) == pytest.approx(math.sqrt(9 / (8 * 100 * math.log(2))), rel=0.2)


def test_calibrated_js_keeps_false_alarms_near_alpha_at_the_same_size() -> None:
    rng = np.random.default_rng(32)
    entry = numeric_entry(list(rng.normal(size=10000)))
    alarms = 0
    for _ in range(100):
        live = live_from_wire(bin_counts(rng.normal(size=100), entry["edges"]), None, 0)
        v = assess(entry, live, method="js", alpha=0.05, min_effect=0.0, resamples=2000)
        alarms += v.verdict == "Drift"
    assert alarms <= 12
