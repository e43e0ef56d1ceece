"""The fleet telemetry collector: device deltas accumulate into cumulative series labelled
by namespace, model, version and cohort; class and category labels stay bounded by the
reference profile; histograms come out as cumulative ``le`` buckets."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edgeops.api.wire import (
    CONFIDENCE_BUCKETS,
    LATENCY_BUCKETS_SECONDS,
    MAX_CLASSES,
    TelemetryReport,
)
from edgeops.metrics import fleet
from edgeops.metrics.fleet import FleetTelemetry, ReferenceBins, ReportMismatchError, SeriesKey

PROFILE: dict[str, Any] = {
    "format": 1,
    "rows": 100,
    "features": {
        "temp": {"kind": "numeric", "edges": [10.0, 20.0, 30.0], "counts": [25, 25, 25, 25]},
        "site": {"kind": "categorical", "counts": {"a": 60, "b": 40}, "count": 100},
    },
    "label": {"column": "y", "distribution": {"cat": 50, "dog": 50}},
}
KEY = SeriesKey("ns", "m", "3", "canary")
LABELS = {"namespace": "ns", "model": "m", "version": "3", "cohort": "canary"}


def _report(**fields: Any) -> TelemetryReport:
    return TelemetryReport.model_validate(
        {"sequence": 1, "model": "m", "version": 3, "intervalSeconds": 60, **fields}
    )


@pytest.fixture
def registry() -> tuple[CollectorRegistry, FleetTelemetry]:
    reg = CollectorRegistry()
    telemetry = FleetTelemetry()
    reg.register(telemetry)
    return reg, telemetry


def test_deltas_accumulate_per_label_tuple(
    registry: tuple[CollectorRegistry, FleetTelemetry],
) -> None:
    reg, telemetry = registry
    ref = ReferenceBins.from_profile(PROFILE)
    telemetry.add(KEY, _report(inferences=10, errors=1, feedback={"correct": 4}), ref)
    telemetry.add(KEY, _report(inferences=5, feedback={"correct": 1, "incorrect": 2}), ref)
    telemetry.add(KEY._replace(cohort="stable"), _report(inferences=7), ref)
    get = reg.get_sample_value
    assert get(fleet.INFERENCES_TOTAL, LABELS) == 15
    assert get(fleet.INFERENCES_TOTAL, {**LABELS, "cohort": "stable"}) == 7
    assert get(fleet.INFERENCE_ERRORS_TOTAL, LABELS) == 1
    assert get(fleet.TELEMETRY_REPORTS_TOTAL, LABELS) == 2
    assert get(fleet.FEEDBACK_TOTAL, {**LABELS, "outcome": "correct"}) == 5
    assert get(fleet.FEEDBACK_TOTAL, {**LABELS, "outcome": "incorrect"}) == 2


def test_classes_and_categories_outside_the_profile_fold_into_other(
    registry: tuple[CollectorRegistry, FleetTelemetry],
) -> None:
    reg, telemetry = registry
    ref = ReferenceBins.from_profile(PROFILE)
    report = _report(
        inferences=10,
        predictions={"cat": 3, "bird": 2, "fish": 1},
        features={"site": {"categories": {"a": 4, "z": 1, "y": 2}, "missing": 3}},
    )
    telemetry.add(KEY, report, ref)
    get = reg.get_sample_value
    assert get(fleet.PREDICTIONS_TOTAL, {**LABELS, "class": "cat"}) == 3
    assert get(fleet.PREDICTIONS_TOTAL, {**LABELS, "class": "other"}) == 3
    assert get(fleet.PREDICTIONS_TOTAL, {**LABELS, "class": "bird"}) is None
    feature = {**LABELS, "feature": "site"}
    assert get(fleet.FEATURE_OBSERVATIONS_TOTAL, {**feature, "bin": "a"}) == 4
    assert get(fleet.FEATURE_OBSERVATIONS_TOTAL, {**feature, "bin": "other"}) == 3
    assert get(fleet.FEATURE_OBSERVATIONS_TOTAL, {**feature, "bin": "missing"}) == 3
    assert get(fleet.FEATURE_OBSERVATIONS_TOTAL, {**feature, "bin": "z"}) is None


def test_label_values_are_bounded_by_max_classes() -> None:
    many = {f"c{i:03d}": 1000 - i for i in range(200)}
    ref = ReferenceBins.from_profile(
        {"features": {"k": {"kind": "categorical", "counts": many}},
         "label": {"distribution": many}}
    )  # fmt: skip
    # The most frequent ones are kept; with "other" a label has at most MAX_CLASSES values.
    assert len(ref.classes) == MAX_CLASSES - 1 and "c000" in ref.classes
    assert "c199" not in ref.classes
    assert len(ref.categorical["k"]) == MAX_CLASSES - 1
    telemetry = FleetTelemetry()
    telemetry.add(KEY, _report(inferences=64, predictions={f"c{i:03d}": 1 for i in range(64)}), ref)
    values = {
        s.labels["class"]
        for family in telemetry.collect()
        for s in family.samples
        if family.name + "_total" == fleet.PREDICTIONS_TOTAL
    }
    assert len(values) == MAX_CLASSES and "other" in values


def test_numeric_features_are_labelled_by_bin_index(
    registry: tuple[CollectorRegistry, FleetTelemetry],
) -> None:
    reg, telemetry = registry
    ref = ReferenceBins.from_profile(PROFILE)
    telemetry.add(KEY, _report(features={"temp": {"counts": [1, 2, 3, 4], "missing": 5}}), ref)
    telemetry.add(KEY, _report(features={"temp": {"counts": [1, 0, 0, 0]}}), ref)
    feature = {**LABELS, "feature": "temp"}
    got = {b: reg.get_sample_value(fleet.FEATURE_OBSERVATIONS_TOTAL, {**feature, "bin": b})
           for b in ("0", "1", "2", "3", "missing")}  # fmt: skip
    assert got == {"0": 2, "1": 2, "2": 3, "3": 4, "missing": 5}


def test_histograms_expose_cumulative_buckets_sum_and_count(
    registry: tuple[CollectorRegistry, FleetTelemetry],
) -> None:
    reg, telemetry = registry
    ref = ReferenceBins.from_profile(PROFILE)
    latency = [0] * (len(LATENCY_BUCKETS_SECONDS) + 1)
    latency[0], latency[4], latency[-1] = 2, 3, 1  # ≤0.5 ms, ≤10 ms, above 1 s
    confidence = [0] * (len(CONFIDENCE_BUCKETS) + 1)
    confidence[-1] = 4
    telemetry.add(
        KEY,
        _report(
            inferences=6,
            latencySeconds={"counts": latency, "sum": 1.5},
            confidence={"counts": confidence, "sum": 3.8},
        ),
        ref,
    )
    telemetry.add(KEY, _report(inferences=6, latencySeconds={"counts": latency, "sum": 0.5}), ref)
    text = generate_latest(reg).decode()
    name = fleet.INFERENCE_LATENCY_SECONDS
    buckets = {
        s.labels["le"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == f"{name}_bucket"
    }
    assert buckets["0.0005"] == 4 and buckets["0.005"] == 4 and buckets["0.01"] == 10
    assert buckets["1.0"] == 10 and buckets["+Inf"] == 12
    assert list(buckets.values()) == sorted(buckets.values())  # cumulative
    assert reg.get_sample_value(f"{name}_count", LABELS) == 12
    assert reg.get_sample_value(f"{name}_sum", LABELS) == pytest.approx(2.0)
    conf = fleet.PREDICTION_CONFIDENCE_RATIO
    assert reg.get_sample_value(f"{conf}_bucket", {**LABELS, "le": "0.9"}) == 0
    assert reg.get_sample_value(f"{conf}_bucket", {**LABELS, "le": "+Inf"}) == 4
    assert reg.get_sample_value(f"{conf}_sum", LABELS) == pytest.approx(3.8)
    # Labelled by the series key only: never by device.
    keys = {k for f in text_string_to_metric_families(text) for s in f.samples for k in s.labels}
    assert keys == {"namespace", "model", "version", "cohort", "le"}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"features": {"humidity": {"counts": [1]}}}, "features.humidity: not a feature"),
        ({"features": {"temp": {"counts": [1, 2, 3]}}}, "features.temp: 3 counts"),
        ({"features": {"temp": {"categories": {"a": 1}}}}, "features.temp: numeric"),
        ({"features": {"site": {"counts": [1, 2]}}}, "features.site: categorical"),
        ({"latencySeconds": {"counts": [1, 2]}}, "latencySeconds.counts: 2 entries"),
        ({"confidence": {"counts": [0] * 11}}, "confidence.counts: 11 entries"),
    ],
)
def test_reports_that_do_not_fit_the_profile_are_refused_whole(
    fields: dict[str, Any], message: str
) -> None:
    telemetry = FleetTelemetry()
    with pytest.raises(ReportMismatchError, match=message) as refused:
        telemetry.add(KEY, _report(inferences=9, **fields), ReferenceBins.from_profile(PROFILE))
    unknown = "not a feature" in message
    assert refused.value.reason == ("UnknownFeature" if unknown else "BinMismatch")
    assert all(not family.samples for family in telemetry.collect())


def test_profile_without_label_or_features() -> None:
    ref = ReferenceBins.from_profile({"features": {}, "label": None})
    assert ref.classes == frozenset() and not ref.numeric
    with pytest.raises(ReportMismatchError):
        ReferenceBins.from_profile({"rows": 3})


def test_gateway_apps_have_their_own_registry_and_label_routes_by_template() -> None:
    from fastapi.testclient import TestClient

    from edgeops.gateway.app import create_app
    from edgeops.settings import GatewaySettings

    def no_store() -> Any:
        raise AssertionError("S3 is not needed here")

    first = TestClient(create_app(GatewaySettings(), no_store))
    second = TestClient(create_app(GatewaySettings(), no_store))  # no duplicate-name error
    for device in ("dev-1", "dev-2"):
        assert first.post(f"/v1/devices/ns/{device}/telemetry").status_code == 401
    first.get("/nope")
    scraped = first.get("/metrics")
    assert scraped.headers["content-type"].startswith("text/plain")
    samples = {
        (s.labels.get("endpoint"), s.labels.get("code")): s.value
        for f in text_string_to_metric_families(scraped.text)
        for s in f.samples
        if s.name == fleet.GATEWAY_REQUESTS_TOTAL
    }
    assert samples == {("/v1/devices/{namespace}/{name}/telemetry", "401"): 2,
                       ("unmatched", "404"): 1}  # fmt: skip
    # The other app counted nothing of the first one's requests.
    assert f"{fleet.GATEWAY_REQUESTS_TOTAL}{{" not in second.get("/metrics").text


def test_immutable_reads_are_kept_past_the_ttl_in_a_bounded_lru() -> None:
    from edgeops.gateway.context import Fleet, watch_caches

    cache = Fleet(*watch_caches(), ttl=0, immutable_size=2)
    loads: list[str] = []

    def load(key: str) -> Any:
        def run() -> str:
            loads.append(key)
            return key.upper()

        return run

    assert cache.immutable(("p", "a"), load("a")) == "A"
    assert cache.immutable(("p", "a"), load("a")) == "A"  # TTL 0, still no second read
    cache.immutable(("p", "b"), load("b"))
    cache.immutable(("p", "a"), load("a"))  # a is now the most recent
    cache.immutable(("p", "c"), load("c"))  # evicts b, the least recent
    cache.immutable(("p", "a"), load("a"))
    cache.immutable(("p", "b"), load("b"))
    assert loads == ["a", "b", "c", "b"]

    def failing() -> Any:
        raise OSError("S3 down")

    with pytest.raises(OSError):
        cache.immutable(("p", "d"), failing)
    assert cache.immutable(("p", "d"), load("d")) == "D"  # the failure was not cached


def test_update_outcomes_are_counted_by_target_version_and_outcome(
    registry: tuple[CollectorRegistry, FleetTelemetry],
) -> None:
    reg, telemetry = registry
    telemetry.add_update_outcome("ns", "m", "3", "Committed")
    telemetry.add_update_outcome("ns", "m", "3", "Committed")
    telemetry.add_update_outcome("ns", "m", "3", "RolledBack")
    labels = {"namespace": "ns", "model": "m", "version": "3"}
    get = reg.get_sample_value
    assert get(fleet.UPDATE_OUTCOMES_TOTAL, {**labels, "outcome": "Committed"}) == 2
    assert get(fleet.UPDATE_OUTCOMES_TOTAL, {**labels, "outcome": "RolledBack"}) == 1
    assert get(fleet.UPDATE_OUTCOMES_TOTAL, {**labels, "outcome": "Failed"}) is None


def test_only_a_new_terminal_update_is_an_outcome() -> None:
    from edgeops.gateway.reports import _terminal_transition

    installing = {"targetVersion": 3, "phase": "Installing", "attempt": 1}
    committed = {**installing, "phase": "Committed"}
    assert not _terminal_transition({}, installing)
    assert _terminal_transition(installing, committed)
    assert _terminal_transition({}, committed)
    # The same outcome again, with another message or time, is not a second one...
    assert not _terminal_transition({**committed, "time": "t"}, {**committed, "message": "x"})
    # ...but a retry (next attempt) or another target version is.
    assert _terminal_transition(committed, {**committed, "attempt": 2})
    assert _terminal_transition(committed, {**committed, "targetVersion": 4})


def test_failed_enrollments_per_address_are_bounded() -> None:
    from fastapi.testclient import TestClient

    from edgeops.gateway.app import create_app
    from edgeops.settings import GatewaySettings

    def no_store() -> Any:
        raise AssertionError("S3 is not needed here")

    app = TestClient(create_app(GatewaySettings(gateway_enrollments_per_minute=2), no_store))
    for _ in range(2):  # refused before any read of the cluster: a body that is no request
        refused = app.post("/v1/enroll", content=b"{}")
        assert refused.status_code == 422 and refused.json()["reason"] == "InvalidRequest"
    limited = app.post("/v1/enroll", content=b"{}")
    assert limited.status_code == 429
    assert limited.json() == {
        "reason": "RateLimited",
        "message": "too many failed enrollments from this address",
    }
    assert 1 <= int(limited.headers["Retry-After"]) <= 31
