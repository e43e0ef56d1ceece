"""The drift monitor's decision (edgeops.policy.drift): verdicts, conditions, events and
what the retraining triggers make of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest

from edgeops.api.edgemodel import DriftSummary, DriftTrigger, RetrainPolicy, TriggerState
from edgeops.drift import numeric_entry
from edgeops.metrics.prometheus import Prometheus, feature_query, fleet_counts
from edgeops.policy import drift, retrain

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
TRIGGER = DriftTrigger(enabled=True, min_samples=200, window="10m", interval="1m")


def _profile() -> dict[str, Any]:
    rng = np.random.default_rng(1)
    return {
        "format": 2,
        "features": {
            "temp": numeric_entry(list(rng.normal(20, 5, 4000))),
            "hum": numeric_entry(list(rng.normal(50, 10, 4000))),
        },
    }


PROFILE = _profile()


def _live(name: str, values: np.ndarray[Any, Any]) -> dict[str, float]:
    edges = PROFILE["features"][name]["edges"]
    index = np.searchsorted(np.asarray(edges), values, side="right")
    counts = np.bincount(index, minlength=len(edges) + 1)
    return {str(i): float(c) for i, c in enumerate(counts)}


def _counts(shift: float = 0.0, n: int = 1000, **feedback: float) -> drift.FleetCounts:
    rng = np.random.default_rng(7)
    return drift.FleetCounts(
        {
            "temp": _live("temp", rng.normal(20 + shift, 5, n)),
            "hum": _live("hum", rng.normal(50, 10, n)),
        },
        feedback,
    )


def test_same_distribution_is_no_drift_with_the_numbers() -> None:
    m = drift.measure(TRIGGER, 3, PROFILE, _counts(), 0.9, None, NOW)
    assert m.summary.verdict == "NoDrift"
    assert m.summary.drift_since is None and m.summary.version == 3
    assert {f.feature for f in m.summary.features} == {"temp", "hum"}
    for f in m.summary.features:
        assert f.verdict == "NoDrift" and f.samples == 1000
        assert f.statistic is not None and f.threshold is not None and f.p_value is not None
        assert f.statistic < f.threshold or f.p_value > 0.025
    status, reason, message = m.conditions["DataDrift"]
    assert (status, reason) == ("False", "NoDrift")
    assert "v3" in message and "psi" in message and "samples 1000" in message


def test_a_shifted_feature_drifts_and_is_named() -> None:
    m = drift.measure(TRIGGER, 3, PROFILE, _counts(shift=5.0), 0.9, None, NOW)
    assert m.summary.verdict == "Drift" and m.summary.worst_feature == "temp"
    assert m.summary.drift_since == "2026-11-01T12:00:00Z"
    temp = next(f for f in m.summary.features if f.feature == "temp")
    assert temp.verdict == "Drift" and temp.statistic is not None and temp.threshold is not None
    assert temp.statistic > temp.threshold and temp.p_value is not None and temp.p_value <= 0.025
    hum = next(f for f in m.summary.features if f.feature == "hum")
    assert hum.verdict == "NoDrift"
    status, reason, message = m.conditions["DataDrift"]
    assert (status, reason) == ("True", "DriftDetected")
    assert "temp: psi" in message and "vs threshold" in message and "samples 1000" in message
    assert m.summary.psi == pytest.approx(temp.statistic)
    assert m.events and m.events[0][0] is True and "temp" in m.events[0][2]


def test_few_samples_are_inconclusive_never_no_drift() -> None:
    m = drift.measure(TRIGGER, 3, PROFILE, _counts(n=50), 0.9, None, NOW)
    assert m.summary.verdict == "Inconclusive"
    assert all(f.verdict == "Inconclusive" for f in m.summary.features)
    assert "TooFewSamples: 50 < minSamples 200" in m.summary.features[0].reason
    assert m.conditions["DataDrift"][:2] == ("Unknown", "InsufficientData")


def test_empty_and_nan_are_inconclusive() -> None:
    empty = drift.measure(TRIGGER, 3, PROFILE, drift.FleetCounts(), 0.9, None, NOW)
    assert empty.summary.verdict == "Inconclusive"
    assert empty.conditions["DataDrift"].status == "Unknown"
    assert empty.summary.concept_verdict == "Inconclusive"
    nan = _counts()
    nan = drift.FleetCounts({**nan.features, "temp": {"0": float("nan")}}, {})
    m = drift.measure(TRIGGER, 3, PROFILE, nan, 0.9, None, NOW)
    assert m.summary.verdict == "Inconclusive"
    assert "NaNCount" in next(f.reason for f in m.summary.features if f.feature == "temp")


def test_prometheus_failure_is_an_error_with_the_reason() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = httpx.Client(transport=httpx.MockTransport(refuse))
    counts = fleet_counts(Prometheus("http://prom:9090", 1.0, client), "ns", "m", 3, 600, NOW)
    assert counts.error is not None and "unreachable" in counts.error
    m = drift.measure(TRIGGER, 3, PROFILE, counts, 0.9, None, NOW)
    assert m.summary.verdict == "Error" and m.summary.concept_verdict == "Error"
    assert "Prometheus unreachable" in (m.summary.reason or "")
    assert m.conditions["DataDrift"][:2] == ("Unknown", "DriftMeasurementFailed")
    assert m.conditions["ConceptDrift"].status == "Unknown"


def test_fleet_counts_is_one_query_per_kind_grouped_by_feature_and_bin() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        seen.append(query)
        if "feature_observations" in query:
            result = [
                {"metric": {"feature": "temp", "bin": "0"}, "value": [0, "3"]},
                {"metric": {"feature": "temp", "bin": "missing"}, "value": [0, "NaN"]},
                {"metric": {"feature": "hum", "bin": "2"}, "value": [0, "1.5"]},
            ]
        else:
            result = [{"metric": {"outcome": "correct"}, "value": [0, "9"]}]
        body = {"status": "success", "data": {"resultType": "vector", "result": result}}
        return httpx.Response(200, json=body)

    client = httpx.Client(transport=httpx.MockTransport(answer))
    counts = fleet_counts(Prometheus("http://prom:9090", 1.0, client), "ns", "m", 3, 600, NOW)
    assert seen[0] == feature_query("ns", "m", 3, 600)
    assert 'version="3"' in seen[0] and "[600s]" in seen[0] and "sum by (feature, bin)" in seen[0]
    assert len(seen) == 2 and "outcome" in seen[1]
    assert counts.features["temp"]["0"] == 3.0 and np.isnan(counts.features["temp"]["missing"])
    assert counts.features["hum"] == {"2": 1.5} and counts.feedback == {"correct": 9.0}


def test_concept_drift_from_feedback() -> None:
    m = drift.measure(TRIGGER, 3, PROFILE, _counts(correct=600, incorrect=400), 0.9, None, NOW)
    assert m.summary.concept_verdict == "Drift" and m.summary.accuracy == pytest.approx(0.6)
    assert m.summary.feedback_samples == 1000 and m.summary.test_accuracy == 0.9
    assert m.summary.concept_p_value is not None and m.summary.concept_p_value < 0.05
    status, reason, message = m.conditions["ConceptDrift"]
    assert (status, reason) == ("True", "DriftDetected")
    assert "accuracy 0.600 on 1000 labels vs test 0.900" in message
    good = drift.measure(TRIGGER, 3, PROFILE, _counts(correct=890, incorrect=110), 0.9, None, NOW)
    assert good.summary.concept_verdict == "NoDrift"
    few = drift.measure(TRIGGER, 3, PROFILE, _counts(correct=5, incorrect=5), 0.9, None, NOW)
    assert few.summary.concept_verdict == "Inconclusive"
    assert "TooFewSamples" in (few.summary.concept_reason or "")


def test_inconclusive_and_error_do_not_clear_a_standing_drift() -> None:
    first = drift.measure(TRIGGER, 3, PROFILE, _counts(shift=5.0), 0.9, None, NOW)
    later = NOW + timedelta(minutes=1)
    unclear = drift.measure(TRIGGER, 3, PROFILE, _counts(n=10), 0.9, first.summary, later)
    assert unclear.summary.verdict == "Inconclusive"
    assert unclear.summary.drift_since == first.summary.drift_since
    status, reason, message = unclear.conditions["DataDrift"]
    assert (status, reason) == ("True", "DriftDetected") and "stands" in message
    failed = drift.measure(
        TRIGGER, 3, PROFILE, drift.FleetCounts(error="down"), 0.9, unclear.summary, later
    )
    assert failed.conditions["DataDrift"].status == "True"
    cleared = drift.measure(TRIGGER, 3, PROFILE, _counts(), 0.9, failed.summary, later)
    assert cleared.summary.drift_since is None
    assert cleared.conditions["DataDrift"].status == "False"
    # A new fleet version starts from nothing: the old version's drift is not its drift.
    other = drift.measure(TRIGGER, 4, PROFILE, _counts(n=10), 0.9, first.summary, later)
    assert other.conditions["DataDrift"].status == "Unknown"


def test_retraining_acts_on_drift_only() -> None:
    policy = RetrainPolicy(on_drift=TRIGGER)
    state = TriggerState(dataset_version="a" * 64, run_counter=1)

    def signals(summary: DriftSummary) -> list[str]:
        seen = retrain.Observed(NOW, "a" * 64, "h", None, summary, 0.9, 0)
        return [s.reason for s in retrain.signals(policy, state, seen)]

    shifted = drift.measure(TRIGGER, 3, PROFILE, _counts(shift=5.0), 0.9, None, NOW)
    assert signals(shifted.summary) == ["Drift"]
    later = NOW + timedelta(minutes=1)
    unclear = drift.measure(TRIGGER, 3, PROFILE, _counts(n=10), 0.9, shifted.summary, later)
    assert signals(unclear.summary) == []
    error = drift.measure(TRIGGER, 3, PROFILE, drift.FleetCounts(error="x"), 0.9, None, NOW)
    assert signals(error.summary) == []
    labels = _counts(correct=600, incorrect=400)
    concept = drift.measure(TRIGGER, 3, PROFILE, labels, 0.9, None, NOW)
    assert signals(concept.summary) == ["Accuracy"]
    # Hand-written summaries without verdicts keep the fixed PSI/JS thresholds.
    legacy = DriftSummary(psi=0.6, js=0.05, samples=1000, measured_at="2026-11-01T12:00:00Z")
    assert signals(legacy) == ["Drift"]


def test_fixed_thresholds_stay_available() -> None:
    fixed = TRIGGER.model_copy(update={"thresholds": "Fixed", "psi_threshold": 1e-6})
    m = drift.measure(fixed, 3, PROFILE, _counts(), 0.9, None, NOW)
    assert m.summary.verdict == "Drift"
    assert all(f.threshold == 1e-6 for f in m.summary.features)
    with pytest.raises(ValueError, match="Fixed needs method psi or js"):
        DriftTrigger(thresholds="Fixed", method="ks")


def test_the_interval_rate_limits_measurements() -> None:
    m = drift.measure(TRIGGER, 3, PROFILE, _counts(), 0.9, None, NOW)
    assert drift.seconds_until_due(TRIGGER, None, 3, NOW) == 0
    assert drift.seconds_until_due(TRIGGER, m.summary, 3, NOW + timedelta(seconds=20)) == 40
    assert drift.seconds_until_due(TRIGGER, m.summary, 4, NOW) == 0
    assert drift.window_seconds(TRIGGER) == 600
    by_hand = DriftSummary(psi=0.6, measured_at="2026-11-01T12:00:00Z")
    assert drift.seconds_until_due(TRIGGER, by_hand, 3, NOW + timedelta(seconds=30)) == 30


def test_verdict_changes_make_events_and_repeats_do_not() -> None:
    first = drift.measure(TRIGGER, 3, PROFILE, _counts(), 0.9, None, NOW)
    assert [e[1] for e in first.events] == ["NoDrift", "InsufficientData"]
    again = drift.measure(TRIGGER, 3, PROFILE, _counts(), 0.9, first.summary, NOW)
    assert again.events == []
    shifted = drift.measure(TRIGGER, 3, PROFILE, _counts(shift=5.0), 0.9, again.summary, NOW)
    assert len(shifted.events) == 1
    warning, reason, message = shifted.events[0]
    assert warning and reason == "DriftDetected" and "temp: psi" in message
    assert "(was NoDrift)" in message
