"""Many features: false alarms controlled per model, not per feature."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from edgeops.drift import assess_features, combine, live_from_wire, numeric_entry
from edgeops.drift.histograms import bin_counts

FEATURES = 50
RNG = np.random.default_rng(21)
PROFILE = {f"f{i}": numeric_entry(list(RNG.normal(size=5000))) for i in range(FEATURES)}


def _window(shift: dict[str, float] | None = None, n: int = 300) -> dict[str, dict[str, float]]:
    shift = shift or {}
    return {
        name: live_from_wire(
            bin_counts(RNG.normal(size=n) + shift.get(name, 0.0), entry["edges"]), None, 0
        )
        for name, entry in PROFILE.items()
    }


def test_fifty_unchanged_features_rarely_raise_a_fleet_alarm() -> None:
    fleet_alarms = 0
    feature_alarms_uncorrected = 0
    for _ in range(20):
        fleet = assess_features(PROFILE, _window(), alpha=0.05, min_effect=0.0)
        fleet_alarms += fleet.verdict == "Drift"
        feature_alarms_uncorrected += any(
            v.p_value is not None and v.p_value <= 0.05 for v in fleet.features
        )
        assert fleet.verdict in ("Drift", "NoDrift")
    assert fleet_alarms <= 3
    # Per-feature testing at 0.05 alarms on almost every window (1 - 0.95**50 = 92 %).
    assert feature_alarms_uncorrected >= 14


def test_one_drifting_feature_among_fifty_is_found_and_named() -> None:
    fleet = assess_features(PROFILE, _window({"f17": 1.0}), alpha=0.05)
    assert fleet.verdict == "Drift" and fleet.worst == "f17"
    drifted = [v.feature for v in fleet.features if v.verdict == "Drift"]
    assert drifted == ["f17"]
    f17 = next(v for v in fleet.features if v.feature == "f17")
    assert f17.level == 0.05 / FEATURES and f17.threshold is not None
    assert f17.statistic is not None and f17.statistic > f17.threshold


def test_combine_applies_bonferroni_to_given_verdicts() -> None:
    fleet = assess_features(PROFILE, _window({"f3": 0.4}), alpha=0.05)
    f3 = next(v for v in fleet.features if v.feature == "f3")
    assert f3.p_value is not None
    # The same verdict alone is tested at alpha, among 50 at alpha / 50.
    alone = combine([f3], alpha=0.05)
    assert alone.verdict == ("Drift" if f3.p_value <= 0.05 and f3.statistic >= 0.1 else "NoDrift")
    # Among 50 verdicts like it, the bar is p <= 0.001.
    many = combine([replace(f3, feature=f"f{i}") for i in range(FEATURES)], alpha=0.05)
    expected = "Drift" if f3.p_value <= 0.05 / FEATURES and f3.statistic >= 0.1 else "NoDrift"
    assert many.verdict == expected
