"""Point masses: repeated values get a bin of their own, and the profile says so."""

from __future__ import annotations

import numpy as np

from edgeops.drift import assess, live_from_wire, numeric_entry, psi, quantile_edges
from edgeops.drift.histograms import bin_counts


def _light_sensor(zero_share: float, n: int, seed: int) -> np.ndarray:
    """Lux readings: exactly 0 at night, log-normal by day."""
    rng = np.random.default_rng(seed)
    day = rng.lognormal(5, 1, n)
    return np.where(rng.random(n) < zero_share, 0.0, day)


def test_a_repeated_value_gets_its_own_bin() -> None:
    values = _light_sensor(0.6, 5000, seed=1)
    edges = quantile_edges(values, bins=10)
    counts = bin_counts(values, [0.0, *edges])
    # The zeros are one bin holding only zeros; the day readings keep ~equal-mass bins.
    zero_bin = counts[1]
    assert zero_bin == int(np.count_nonzero(values == 0))
    assert len(edges) >= 4
    day_bins = counts[2:]
    assert max(day_bins) < 2 * min(day_bins)


def test_the_profile_records_how_it_binned() -> None:
    entry = numeric_entry(list(_light_sensor(0.6, 2000, seed=2)))
    binning = entry["binning"]
    assert binning["method"] == "quantile-pointmass-tails"
    assert binning["pointMasses"] == [0.0]
    assert binning["bins"] == 10


def test_a_shift_of_the_point_mass_is_detected() -> None:
    """Nights get shorter: 60 % zeros become 40 %. Quantile edges of the old kind (six of
    nine deciles at 0, collapsed) put nearly everything into one or two bins; with the
    point mass in its own bin the change is large and significant."""
    reference = _light_sensor(0.6, 5000, seed=3)
    live = _light_sensor(0.4, 500, seed=4)
    entry = numeric_entry(list(reference))
    verdict = assess(entry, live_from_wire(bin_counts(live, entry["edges"]), None, 0))
    assert verdict.verdict == "Drift", verdict.reason

    # The old binning: unique deciles, which here are just [0, d7, d8, d9].
    old_edges = list(np.unique(np.quantile(reference, np.linspace(0, 1, 11)[1:-1])))
    old = psi(bin_counts(reference, old_edges), bin_counts(live, old_edges))
    new = verdict.statistic
    assert new is not None and new > old


def test_no_change_of_a_point_mass_feature_is_not_drift() -> None:
    entry = numeric_entry(list(_light_sensor(0.6, 5000, seed=5)))
    alarms = 0
    for seed in range(20):
        live = _light_sensor(0.6, 500, seed=100 + seed)
        counts = live_from_wire(bin_counts(live, entry["edges"]), None, 0)
        alarms += assess(entry, counts, resamples=2000).verdict == "Drift"
    assert alarms <= 3
