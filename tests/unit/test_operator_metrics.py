"""The series the alerts and the dashboard read: rollout phases and device health in
``edgeops_operator_objects``, drift verdicts and per-feature statistics from EdgeModel status."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import REGISTRY

from edgeops.controllers import watches


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def _model(
    uid: str, *, verdict: str, statistics: dict[str, float], on: bool = True
) -> dict[str, Any]:
    features = [
        {"feature": f, "method": "psi", "verdict": "Drift" if v > 0.2 else "NoDrift",
         "statistic": v, "threshold": 0.2, "samples": 500}
        for f, v in statistics.items()
    ]  # fmt: skip
    return {
        "metadata": {"namespace": "plant", "name": "motion", "uid": uid},
        "spec": {"retrain": {"onDrift": {"enabled": on}}},
        "status": {"drift": {"version": 1, "verdict": verdict, "conceptVerdict": "Inconclusive",
                             "measuredAt": "2026-11-29T12:00:00Z", "features": features}},
    }  # fmt: skip


def test_drift_series_follow_the_status_the_watch_delivers() -> None:
    drifting = _model("m1", verdict="Drift", statistics={"accel_x": 0.31, "gyro": 0.02})
    asyncio.run(watches.edgemodel_changed(body=drifting, type="ADDED"))
    detected, statistic = "edgeops_model_drift_detected", "edgeops_model_drift_statistic"
    labels = {"namespace": "plant", "model": "motion"}
    feature = {**labels, "version": "1", "method": "psi"}
    assert _value(detected, **labels, type="data") == 1
    assert _value(detected, **labels, type="concept") is None  # Inconclusive: no verdict
    assert _value(statistic, **feature, feature="accel_x") == 0.31
    assert _value("edgeops_model_drift_threshold", **feature, feature="accel_x") == 0.2

    # Drift over and a feature gone: the verdict drops to 0 and the feature's series goes.
    calm = _model("m1", verdict="NoDrift", statistics={"accel_x": 0.05})
    asyncio.run(watches.edgemodel_changed(body=calm, type="MODIFIED"))
    assert _value(detected, **labels, type="data") == 0
    assert _value(statistic, **feature, feature="accel_x") == 0.05
    assert _value(statistic, **feature, feature="gyro") is None

    # onDrift turned off: no drift series at all; deleted: the same.
    off = _model("m1", verdict="NoDrift", statistics={"accel_x": 0.05}, on=False)
    asyncio.run(watches.edgemodel_changed(body=off, type="MODIFIED"))
    assert _value(detected, **labels, type="data") is None
    asyncio.run(watches.edgemodel_changed(body=drifting, type="MODIFIED"))
    asyncio.run(watches.edgemodel_changed(body=drifting, type="DELETED"))
    assert _value(detected, **labels, type="data") is None
    assert _value(statistic, **feature, feature="accel_x") is None


def test_rollout_phases_and_device_health_are_counted() -> None:
    def rollout(uid: str, phase: str | None) -> dict[str, Any]:
        return {"metadata": {"uid": uid}, "status": {"phase": phase} if phase else {}}

    objects = "edgeops_operator_objects"
    before = _value(objects, kind="FleetRollout", phase="Paused") or 0
    asyncio.run(watches.fleetrollout_counted(body=rollout("r1", None), type="ADDED"))
    assert _value(objects, kind="FleetRollout", phase="Pending") == 1
    asyncio.run(watches.fleetrollout_counted(body=rollout("r1", "Paused"), type="MODIFIED"))
    assert _value(objects, kind="FleetRollout", phase="Paused") == before + 1
    assert _value(objects, kind="FleetRollout", phase="Pending") == 0
    asyncio.run(watches.fleetrollout_counted(body=rollout("r1", "Paused"), type="DELETED"))
    assert _value(objects, kind="FleetRollout", phase="Paused") == before

    for uid, health in (("d1", "Healthy"), ("d2", "Degraded"), ("d3", None)):
        body = {"metadata": {"uid": uid}, "status": {"health": health} if health else {}}
        asyncio.run(watches.device_counted(body=body, type="ADDED"))
    for health in ("Healthy", "Degraded", "Unknown"):
        assert _value(objects, kind="Device", phase=health) == 1
