"""The EdgeModel controller's drift monitor step (edgeops.controllers.drift_monitor): which
version is measured, when, the profile read once per content hash, and failures as Error."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from edgeops.api.common import ArtifactRef, EvaluationMetrics
from edgeops.api.edgemodel import DriftTrigger, ModelVersion
from edgeops.controllers import drift_monitor
from edgeops.drift import numeric_entry
from edgeops.metrics.prometheus import Prometheus
from edgeops.store import StoreError

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
TRIGGER = DriftTrigger(enabled=True, min_samples=10, window="10m", interval="1m")
PROFILE = {"format": 2, "features": {"temp": numeric_entry([float(i % 40) for i in range(800)])}}
SHA = "b" * 64


class Store:
    def __init__(self, fail: bool = False) -> None:
        self.reads = 0
        self.fail = fail

    def get_blob(self, sha256: str) -> bytes:
        self.reads += 1
        if self.fail:
            raise StoreError("s3 down")
        assert sha256 == SHA
        return json.dumps(PROFILE).encode()


def _version(profile: bool = True) -> ModelVersion:
    artifacts = [ArtifactRef(uri="s3://b/x", size=1, sha256="a" * 64, format="onnx")]
    if profile:
        artifacts.append(
            ArtifactRef(uri="s3://b/p", size=1, sha256=SHA, format="reference-profile")
        )
    return ModelVersion(
        number=2, training_run="m-r2", created="2026-11-01T00:00:00Z", state="Approved",
        artifacts=artifacts, metrics=EvaluationMetrics(overall={"accuracy": 0.9}),
    )  # fmt: skip


def _prometheus(queries: list[str]) -> Prometheus:
    def answer(request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        queries.append(query)
        result: list[dict[str, Any]] = []
        if "feature" in query:
            result = [{"metric": {"feature": "temp", "bin": "0"}, "value": [0, "5"]}]
        body = {"status": "success", "data": {"resultType": "vector", "result": result}}
        return httpx.Response(200, json=body)

    return Prometheus("http://prom", 1.0, httpx.Client(transport=httpx.MockTransport(answer)))


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Store:
    fake = Store()
    monkeypatch.setattr(drift_monitor, "artifact_store", lambda: fake)
    drift_monitor._profiles.clear()
    return fake


def test_disabled_or_no_version_measures_nothing(store: Store) -> None:
    off = drift_monitor.monitor(DriftTrigger(), "ns", "m", _version(), None, NOW)
    assert off.summary is None and off.conditions == {} and off.requeue is None
    none = drift_monitor.monitor(TRIGGER, "ns", "m", None, None, NOW)
    assert none.summary is None and store.reads == 0


def test_a_version_without_profile_says_so(store: Store) -> None:
    out = drift_monitor.monitor(TRIGGER, "ns", "m", _version(profile=False), None, NOW)
    assert out.summary is None
    status, reason, message = out.conditions["DataDrift"]
    assert (status, reason) == ("Unknown", "NoReferenceProfile") and "v2" in message


def test_two_queries_per_measurement_profile_read_once_and_interval_requeue(store: Store) -> None:
    queries: list[str] = []
    first = drift_monitor.monitor(TRIGGER, "ns", "m", _version(), None, NOW, _prometheus(queries))
    assert first.summary is not None and first.summary.version == 2
    assert first.summary.verdict == "Inconclusive"  # 5 samples < minSamples 10
    assert len(queries) == 2 and 'version="2"' in queries[0] and "[600s]" in queries[0]
    assert first.requeue == 60.0
    early = NOW + timedelta(seconds=15)
    waiting = drift_monitor.monitor(
        TRIGGER, "ns", "m", _version(), first.summary, early, _prometheus(queries)
    )
    assert waiting.summary is None and waiting.requeue == 45.0 and len(queries) == 2
    later = NOW + timedelta(minutes=1)
    drift_monitor.monitor(
        TRIGGER, "ns", "m", _version(), first.summary, later, _prometheus(queries)
    )
    assert len(queries) == 4 and store.reads == 1  # cached by content hash


def test_an_unreadable_profile_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drift_monitor, "artifact_store", lambda: Store(fail=True))
    drift_monitor._profiles.clear()
    queries: list[str] = []
    out = drift_monitor.monitor(TRIGGER, "ns", "m", _version(), None, NOW, _prometheus(queries))
    assert out.summary is not None and out.summary.verdict == "Error"
    assert "s3 down" in (out.summary.reason or "") and queries == []
    assert out.conditions["DataDrift"][:2] == ("Unknown", "DriftMeasurementFailed")
