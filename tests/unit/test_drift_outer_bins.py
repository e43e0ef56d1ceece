"""Open outer bins: mass beyond the reference range counts, and how far beyond matters."""

from __future__ import annotations

import numpy as np
import pytest

from edgeops.drift import assess, live_from_wire, numeric_entry, wasserstein
from edgeops.drift.histograms import bin_counts

RNG = np.random.default_rng(7)
REFERENCE = RNG.normal(0.0, 1.0, 5000)
ENTRY = numeric_entry(list(REFERENCE))


def _assess(live: np.ndarray, method: str = "wasserstein") -> float:
    counts = live_from_wire(bin_counts(live, ENTRY["edges"]), None, 0)
    verdict = assess(ENTRY, counts, method=method, resamples=1000)  # type: ignore[arg-type]
    assert verdict.verdict == "Drift"
    assert verdict.statistic is not None
    return verdict.statistic


def test_mass_beyond_the_range_lands_in_bins_the_reference_left_empty() -> None:
    counts = bin_counts([REFERENCE.max() + 0.5, REFERENCE.min() - 0.5], ENTRY["edges"])
    ref_counts = ENTRY["counts"]
    beyond = [i for i, c in enumerate(counts) if c]
    assert len(beyond) == 2 and all(ref_counts[i] == 0 for i in beyond)


def test_wasserstein_tells_a_3_sigma_from_a_30_sigma_shift() -> None:
    live = RNG.normal(0.0, 1.0, 1000)
    near, far = _assess(live + 3), _assess(live + 30)
    # In reference standard deviations: about 3 and at least 16 (the outermost graded bin).
    assert near == pytest.approx(3, rel=0.3)
    assert far > 5 * near


def test_format_1_edges_saturate_which_is_why_the_tails_exist() -> None:
    """The old binning (deciles only, outer bins at their edge) cannot tell them apart."""
    edges = list(np.quantile(REFERENCE, np.linspace(0, 1, 11)[1:-1]))
    ref = bin_counts(REFERENCE, edges)
    live = RNG.normal(0.0, 1.0, 1000)
    near = wasserstein(ref, bin_counts(live + 3, edges), edges)
    far = wasserstein(ref, bin_counts(live + 30, edges), edges)
    assert far == pytest.approx(near, rel=0.05)


def test_a_shift_beyond_the_range_is_drift_for_every_method() -> None:
    live = RNG.normal(0.0, 1.0, 300) + 10
    for method in ("psi", "js", "ks", "wasserstein"):
        assert _assess(live, method) > 0
