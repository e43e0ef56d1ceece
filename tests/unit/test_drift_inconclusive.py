"""NaN and empty: never compared as "below threshold"."""

from __future__ import annotations

import numpy as np
import pytest

from edgeops.drift import FeatureVerdict, assess, combine, live_from_wire, numeric_entry
from edgeops.drift.histograms import bin_counts

ENTRY = numeric_entry(list(np.random.default_rng(3).normal(size=2000)))
BINS = len(ENTRY["counts"])


def _live(n: int = 1000) -> dict[str, float]:
    values = np.random.default_rng(4).normal(size=n)
    return live_from_wire(bin_counts(values, ENTRY["edges"]), None, 0)


@pytest.mark.parametrize(
    ("live", "reason"),
    [
        ({**_live(), "3": float("nan")}, "NaNCount"),
        ({**_live(), "3": float("inf")}, "NaNCount"),
        ({**_live(), "3": -1.0}, "NegativeCount"),
        ({**_live(), str(BINS + 5): 1.0}, "UnknownBin"),
        ({}, "NoSamples"),
        ({str(i): 0.0 for i in range(BINS)}, "NoSamples"),
        (_live(40), "TooFewSamples"),
    ],
)
@pytest.mark.parametrize("method", ["psi", "js", "ks", "wasserstein"])
def test_unusable_live_counts_are_inconclusive(
    live: dict[str, float], reason: str, method: str
) -> None:
    verdict = assess(ENTRY, live, method=method, min_samples=100, resamples=200)  # type: ignore[arg-type]
    assert verdict.verdict == "Inconclusive"
    assert verdict.reason.startswith(reason)
    assert verdict.statistic is None


def test_a_window_where_every_value_is_missing_is_drift_by_psi_not_silence() -> None:
    verdict = assess(ENTRY, {"missing": 500.0}, resamples=500)
    assert verdict.verdict == "Drift"
    ordered = assess(ENTRY, {"missing": 500.0}, method="ks", resamples=500)
    assert ordered.verdict == "Inconclusive"


def test_the_fleet_is_inconclusive_not_no_drift_when_a_feature_is() -> None:
    ok = assess(ENTRY, _live(), feature="a", resamples=500)
    bad = assess(ENTRY, {"0": float("nan")}, feature="b", resamples=500)
    assert ok.verdict == "NoDrift"
    fleet = combine([ok, bad], alpha=0.05)
    assert fleet.verdict == "Inconclusive" and "b" in fleet.reason
    assert combine([], alpha=0.05).verdict == "Inconclusive"


def test_drift_wins_over_an_inconclusive_feature() -> None:
    shifted = np.random.default_rng(5).normal(size=1000) + 2
    drift = assess(ENTRY, live_from_wire(bin_counts(shifted, ENTRY["edges"]), None, 0), feature="a")
    bad = FeatureVerdict("b", "psi", "Inconclusive", "NaNCount")
    fleet = combine([drift, bad], alpha=0.05)
    assert fleet.verdict == "Drift" and fleet.worst == "a"
