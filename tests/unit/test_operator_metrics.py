"""The series the alerts and the dashboard read: rollout phases and device health in
``edgeops_operator_objects``, drift verdicts and per-feature PSI from EdgeModel status."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import REGISTRY

from edgeops.controllers import watches


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def _model(uid: str, *, data: str, concept: str | None, psi: dict[str, float]) -> dict[str, Any]:
    conditions = [{"type": "DataDrift", "status": data}]
    if concept is not None:
        conditions.append({"type": "ConceptDrift", "status": concept})
    return {
        "metadata": {"namespace": "plant", "name": "motion", "uid": uid},
        "status": {"conditions": conditions, "drift": {"perFeaturePsi": psi}},
    }


def test_drift_verdicts_and_feature_psi_follow_the_status() -> None:
    drifting = _model("m1", data="True", concept="False", psi={"accel_x": 0.31, "gyro": 0.02})
    asyncio.run(watches.edgemodel_changed(body=drifting, type="ADDED"))
    series = "edgeops_model_drift_detected"
    assert _value(series, namespace="plant", model="motion", type="data") == 1
    assert _value(series, namespace="plant", model="motion", type="concept") == 0
    psi = "edgeops_model_feature_drift_psi"
    assert _value(psi, namespace="plant", model="motion", feature="accel_x") == 0.31

    # Drift over and a feature gone: the verdict drops to 0 and the feature's series goes.
    calm = _model("m1", data="False", concept=None, psi={"accel_x": 0.05})
    asyncio.run(watches.edgemodel_changed(body=calm, type="MODIFIED"))
    assert _value(series, namespace="plant", model="motion", type="data") == 0
    assert _value(series, namespace="plant", model="motion", type="concept") == 0
    assert _value(psi, namespace="plant", model="motion", feature="accel_x") == 0.05
    assert _value(psi, namespace="plant", model="motion", feature="gyro") is None

    asyncio.run(watches.edgemodel_changed(body=calm, type="DELETED"))
    assert _value(series, namespace="plant", model="motion", type="data") is None
    assert _value(psi, namespace="plant", model="motion", feature="accel_x") is None


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
