"""Histogram building and distances on binned data."""

from __future__ import annotations

import numpy as np
import pytest

from edgeops.drift import (
    categorical_histogram,
    jensen_shannon,
    ks_statistic,
    numeric_histogram,
    psi,
    quantile_edges,
    reference_edges,
    wasserstein,
)
from edgeops.drift.histograms import NumericHistogram, bin_counts


def test_quantile_edges_make_equal_mass_bins() -> None:
    values = np.arange(1000, dtype=float)
    edges = quantile_edges(values, bins=4)
    assert len(edges) == 3
    assert bin_counts(values, edges) == [250, 250, 250, 250]


def test_constant_column_is_one_bin_inside_the_reference_range() -> None:
    assert quantile_edges([5.0] * 100, bins=10) == []
    edges = reference_edges([5.0] * 100, bins=10)
    counts = bin_counts([5.0] * 100, edges)
    assert counts.count(100) == 1 and sum(counts) == 100
    # Below and above the constant are bins of their own.
    assert bin_counts([4.0, 6.0], edges)[0] == 1 and bin_counts([4.0, 6.0], edges)[-1] == 1


def test_live_values_outside_reference_range_land_in_open_outer_bins() -> None:
    reference = numeric_histogram(np.linspace(0, 1, 101), bins=4)
    live = numeric_histogram([-50.0, 0.5, 99.0], edges=reference.edges)
    assert live.counts[0] == 1 and live.counts[-1] == 1
    assert sum(live.counts) == 3


def test_numeric_histogram_counts_missing_and_round_trips() -> None:
    hist = numeric_histogram([1.0, None, 2.0, float("nan"), 3.0], bins=2)
    assert (hist.count, hist.missing, hist.mean, hist.min, hist.max) == (3, 2, 2.0, 1.0, 3.0)
    assert NumericHistogram.from_dict(hist.to_dict()) == hist


def test_categorical_histogram_uses_string_keys() -> None:
    hist = categorical_histogram(["a", "b", "a", True, None])
    assert hist.counts == {"a": 2, "b": 1, "true": 1}
    assert hist.missing == 1


def test_identical_histograms_have_zero_distance() -> None:
    counts = [10, 20, 30, 40]
    assert psi(counts, counts) == pytest.approx(0)
    assert jensen_shannon(counts, counts) == pytest.approx(0)
    assert ks_statistic(counts, counts) == pytest.approx(0)
    assert wasserstein(counts, counts, [1.0, 2.0, 3.0]) == pytest.approx(0)


def test_scale_does_not_matter_only_proportions() -> None:
    assert psi([1, 2, 3], [10, 20, 30]) == pytest.approx(0)


def test_shift_is_detected_and_grows_with_its_size() -> None:
    reference = [25, 25, 25, 25]
    small, large = [20, 25, 25, 30], [5, 10, 25, 60]
    assert 0 < psi(reference, small) < 0.1 < 0.2 < psi(reference, large)
    assert jensen_shannon(reference, small) < jensen_shannon(reference, large) <= 1
    assert ks_statistic(reference, large) == pytest.approx(0.35)


def test_jensen_shannon_of_disjoint_histograms_is_one() -> None:
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)


def test_wasserstein_is_in_feature_units() -> None:
    # All mass moves from the bin at 0 to the bin at 10 (the two outer edges).
    assert wasserstein([1, 0], [0, 1], [5.0]) == 0.0  # one edge: no width known
    assert wasserstein([1, 0, 0], [0, 0, 1], [0.0, 10.0]) == pytest.approx(10.0)


def test_mismatched_or_empty_histograms_are_refused() -> None:
    with pytest.raises(ValueError, match="same number of bins"):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="empty"):
        jensen_shannon([0, 0], [1, 1])


def test_binned_statistics_agree_with_scipy() -> None:
    scipy_distance = pytest.importorskip("scipy.spatial.distance")
    scipy_stats = pytest.importorskip("scipy.stats")
    reference, live = [5, 10, 40, 30, 15], [1, 4, 20, 45, 30]
    positions = [-1.0, 0.5, 2.0, 3.0, 7.5]
    assert jensen_shannon(reference, live) == pytest.approx(
        scipy_distance.jensenshannon(reference, live, base=2)
    )
    assert wasserstein(reference, live, positions=positions) == pytest.approx(
        scipy_stats.wasserstein_distance(positions, positions, reference, live)
    )


def test_nan_counts_are_refused_not_compared() -> None:
    with pytest.raises(ValueError, match="finite"):
        psi([1, 2, 3], [1, float("nan"), 3])
