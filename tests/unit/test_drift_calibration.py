"""Calibrated thresholds: false alarms at the nominal rate for any window size, also on
dependent data, with the calibration stored in (and read back from) the profile."""

from __future__ import annotations

import numpy as np
import pytest

from edgeops.drift import Calibration, assess, live_from_wire, numeric_entry, psi
from edgeops.drift.histograms import bin_counts, numeric_histogram


def _ar1(n: int, rho: float, seed: int) -> np.ndarray:
    """AR(1) with unit marginal variance: a sensor whose readings are not independent."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=n) * np.sqrt(1 - rho**2)
    x = np.empty(n)
    x[0] = rng.normal()
    for i in range(1, n):
        x[i] = rho * x[i - 1] + noise[i]
    return x


def _alarm_rate(entry: dict[str, object], stream: np.ndarray, n: int, **kw: object) -> float:
    windows = [stream[i : i + n] for i in range(0, stream.size - n + 1, n)]
    alarms = [
        assess(  # type: ignore[arg-type]
            entry, live_from_wire(bin_counts(w, entry["edges"]), None, 0), resamples=2000, **kw
        ).verdict
        == "Drift"
        for w in windows
    ]
    return sum(alarms) / len(alarms)


@pytest.mark.parametrize("n", [50, 200, 2000])
def test_false_alarms_stay_near_alpha_for_any_window_size(n: int) -> None:
    entry = numeric_entry(list(np.random.default_rng(1).normal(size=20000)))
    stream = np.random.default_rng(2).normal(size=60 * n)
    rate = _alarm_rate(entry, stream, n, alpha=0.05, min_effect=0.0)
    assert rate <= 0.15


def test_a_fixed_psi_threshold_depends_on_the_window_size() -> None:
    """The shipped rule: the same no-change data alarms at n=50 and not at n=5000."""
    ref = np.random.default_rng(1).normal(size=20000)
    edges = numeric_histogram(ref).edges
    small = np.random.default_rng(3).normal(size=(40, 50))
    rate = np.mean([psi(bin_counts(ref, edges), bin_counts(w, edges)) > 0.2 for w in small])
    assert rate > 0.3


def test_dependent_reference_gets_a_design_effect_and_keeps_false_alarms_down() -> None:
    reference = _ar1(20000, 0.95, seed=10)
    entry = numeric_entry(list(reference))
    calibration = Calibration.from_dict(entry["calibration"])
    assert calibration.design_effect(200) > 5  # (1 + rho) / (1 - rho) = 39 asymptotically
    live = _ar1(40 * 200, 0.95, seed=11)
    calibrated = _alarm_rate(entry, live, 200, alpha=0.05, min_effect=0.0)
    iid = _alarm_rate({**entry, "calibration": None}, live, 200, alpha=0.05, min_effect=0.0)
    assert iid > 0.5  # the iid null is far too narrow for dependent data
    assert calibrated <= 0.15


def test_shuffled_reference_has_no_design_effect() -> None:
    reference = np.random.default_rng(12).permutation(_ar1(20000, 0.95, seed=12))
    calibration = Calibration.from_dict(numeric_entry(list(reference))["calibration"])
    assert calibration.design_effect(200) < 1.3


def test_calibration_round_trips_and_interpolates_in_log_n() -> None:
    c = Calibration((10, 1000), (2.0, 6.0), (50, 5))
    assert Calibration.from_dict(c.to_dict()) == c
    assert c.design_effect(100) == pytest.approx(4.0)  # halfway in log n
    assert c.design_effect(1) == 2.0 and c.design_effect(10**6) == 6.0
    assert Calibration.from_dict(None).design_effect(100) == 1.0
    assert Calibration.from_dict({"chunkSizes": [10], "designEffects": [0.5]}) == Calibration()


def test_a_format_1_profile_is_still_assessed() -> None:
    reference = np.random.default_rng(13).normal(size=5000)
    old = numeric_histogram(reference)
    entry = {
        "kind": "numeric",
        "edges": list(np.quantile(reference, np.linspace(0, 1, 11)[1:-1])),
        "count": old.count,
        "missing": 0,
        "std": old.std,
    }
    entry["counts"] = bin_counts(reference, entry["edges"])  # type: ignore[arg-type]
    shifted = np.random.default_rng(14).normal(size=500) + 1
    verdict = assess(entry, live_from_wire(bin_counts(shifted, entry["edges"]), None, 0))  # type: ignore[arg-type]
    assert verdict.verdict == "Drift" and verdict.design_effect == 1.0


def test_min_effect_keeps_tiny_significant_shifts_quiet() -> None:
    entry = numeric_entry(list(np.random.default_rng(15).normal(size=50000)))
    live = np.random.default_rng(16).normal(size=50000) + 0.05
    counts = live_from_wire(bin_counts(live, entry["edges"]), None, 0)
    strict = assess(entry, counts, method="ks", min_effect=0.0)
    assert strict.verdict == "Drift"  # significant at n = 50,000 ...
    assert assess(entry, counts, method="ks").verdict == "NoDrift"  # ... but below 0.1


def test_users_can_still_set_a_fixed_threshold() -> None:
    entry = numeric_entry(list(np.random.default_rng(17).normal(size=5000)))
    live = live_from_wire(
        bin_counts(np.random.default_rng(18).normal(size=2000), entry["edges"]), None, 0
    )
    verdict = assess(entry, live, threshold=1e-9)
    assert verdict.verdict == "Drift" and verdict.threshold == 1e-9 and not verdict.calibrated
    assert verdict.p_value is not None
