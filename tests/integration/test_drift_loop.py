"""The closed loop on the devcluster, end to end, with real components only: a simulated
fleet (real agents, Linux and MCU) behind the gateway pod, Prometheus scraping it, the
operator training BasicMotions in Jobs with the real trainer, gates, signing and Auto
promotion rollouts.

v1 trained on the built-in recordings → signed → rolled out → data drift injected on a
share of devices → the drift monitor measures it (numbers in ``status.drift``, DataDrift
True) → the devices' random samples land in the Dataset's inbox → a new dataset version
with the field rows → a TrainingRun with reason ``Drift`` on it, its ``fieldData`` pinning
the version published before the drift (v2's reference profile is the rows since) → v2
passes its gates → the Auto rollout of v2 Succeeds → the fleet runs v2 and DataDrift is
False on two measurements in a row, at the default ``minEffect``. The time from the
injection to the whole fleet on v2 is printed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeops.device.simulator import (
    DataDrift,
    Simulation,
    SimulationConfig,
    load_rows,
    share_hit,
)
from tests.conftest import Cluster, condition, wait_for
from tests.integration.device_fleet import CLASSES, operator_signing_key
from tests.integration.gateway_client import token
from tests.integration.test_fleet_simulator import SimulationThread

pytestmark = pytest.mark.integration

MODEL = "loop-model"
DATASET = "motions-field"
DEVICES = 12
#: Devices whose input drifts, and the drifting feature (shifted by 4 of its standard
#: deviations on half the fleet: the hash of (injection, name) picks 6 of the 12).
DRIFT_SHARE, DRIFT_FEATURE, DRIFT_SIGMAS = 0.5, "acc_y_max", 4.0
#: Rows of the built-in BasicMotions recordings (the Dataset's first version).
RECORDINGS = 80
FEATURES = [
    f"{c}_{s}"
    for c in ("acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z")
    for s in ("mean", "std", "min", "max")
]

#: The lab recordings and the field: one Dataset with the built-in BasicMotions source and
#: the inbox the gateway writes device samples to, collected every 15 s.
DATASET_SPEC = {
    "apiVersion": "edgeops.dev/v1alpha1",
    "kind": "Dataset",
    "metadata": {"name": DATASET},
    "spec": {
        "sources": [{"builtin": {"name": "basic-motions"}}, {"inbox": {}}],
        "format": "jsonl",
        "schema": {
            "features": [{"name": f, "type": "float"} for f in FEATURES],
            "label": "activity",
        },
        "split": {"train": 0.6, "validation": 0.2, "test": 0.2},
        # Every 15 s rather than on every new inbox object: a collection is a Job whose
        # pod starts a Python process; on each object they ran back to back (40-odd Jobs
        # per run) and took a core from the training and evaluation pods on the path.
        "collection": {"schedule": "15s"},
        "governance": {"classification": "internal", "retentionDays": 30},
    },
}
MODEL_SPEC = {
    "apiVersion": "edgeops.dev/v1alpha1",
    "kind": "EdgeModel",
    "metadata": {"name": MODEL},
    "spec": {
        "training": {
            "datasetRef": {"name": DATASET},
            "trainer": {"hyperparameters": {"epochs": 15, "batchSize": 16, "seed": 7}},
            "exports": ["onnx", "tflite-int8", "tflm"],
            "backoffLimit": 0,
        },
        "targets": [
            {"name": "pi", "targetType": "linux", "hardware": "raspberry-pi-4", "format": "onnx"},
            {"name": "esp32", "targetType": "mcu", "hardware": "esp32-s3", "format": "tflm"},
        ],
        "gates": {
            "absolute": [{"metric": "accuracy", "op": ">=", "threshold": 0.5}],
            "requireInt8AccuracyWithin": 0.3,
        },
        "retrain": {
            # Only drift retrains here (the first run is the initial training).
            "onNewDatasetVersion": False,
            "onCodeChange": False,
            "cooldown": "1s",
            # Short window and interval keep the loop in minutes; Prometheus scrapes every 5 s.
            # A run for drift waits for data published a window after driftSince, so the
            # window is on the path twice: 20 s still holds 800+ samples (minSamples 300),
            # and the calibrated thresholds hardly move with n (the 80-row reference
            # dominates: 0.92 at n 1221, 0.90 at n 2024).
            # minEffect stays at its default (0.1): v2 learns mostly from the field rows
            # collected since driftSince and its reference profile is built from them
            # (TrainingRun spec.fieldData), so the fleet reads no residual drift against it.
            "onDrift": {
                "enabled": True,
                "window": "20s",
                "interval": "5s",
                "minSamples": 300,
            },
        },
        # A random share of every device's inputs goes to the Dataset's inbox: the field
        # data a retrained version learns the drifted world from.
        "sampling": {
            "datasetRef": {"name": DATASET},
            "confidenceBelow": 0,
            "misclassified": False,
            "randomShare": 0.15,
            "maxRowsPerHour": 5000,
        },
        "promotion": {
            "mode": "Auto",
            "rolloutTemplate": {
                "selector": {"matchLabels": {"edgeops.dev/model": MODEL}},
                "steps": [{"percent": 50, "pause": {"duration": "2s"}}, {"percent": 100}],
            },
        },
    },
}


def _apply(cluster: Cluster, ns: str, obj: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))


def _model(cluster: Cluster, ns: str) -> dict[str, Any]:
    return cluster.get("edgemodel", MODEL, "-n", ns)


def _status(cluster: Cluster, ns: str) -> dict[str, Any]:
    return dict(_model(cluster, ns).get("status") or {})


def _items(cluster: Cluster, ns: str, kind: str) -> list[dict[str, Any]]:
    return list(cluster.get(kind, "-n", ns).get("items", []))


def _succeeded_rollout(cluster: Cluster, ns: str, version: int) -> dict[str, Any] | None:
    for rollout in _items(cluster, ns, "fleetrollouts"):
        status = rollout.get("status") or {}
        if rollout["spec"]["version"] == version and status.get("phase") == "Succeeded":
            return rollout
    return None


def _wait_measured(
    cluster: Cluster, ns: str, version: int, verdict: str, timeout: float
) -> dict[str, Any]:
    """The model's status once ``status.drift`` is a ``verdict`` measurement of
    ``version``; on timeout the failure shows the last measurement."""
    last: dict[str, Any] = {}

    def check() -> dict[str, Any] | None:
        status = _status(cluster, ns)
        drift = status.get("drift") or {}
        last.update(drift)
        return (
            status if (drift.get("version"), drift.get("verdict")) == (version, verdict) else None
        )

    try:
        return dict(wait_for(check, timeout, f"a {verdict} measurement of v{version}", 2))
    except AssertionError as error:
        shown = {k: last.get(k) for k in ("version", "verdict", "reason", "measuredAt")}
        raise AssertionError(f"{error}; last status.drift: {shown}") from None


def _fleet_on(simulation: Simulation, version: int) -> bool:
    return all(v.version == version and v.phase == "Running" for v in simulation.views)


@pytest.fixture
def ns(cluster: Cluster) -> Iterator[str]:
    name = cluster.namespace("loop")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_drift_on_the_fleet_retrains_on_field_data_and_the_rollout_clears_it(
    cluster: Cluster, ns: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    _, trusted = operator_signing_key(cluster)
    _apply(cluster, ns, DATASET_SPEC)
    _apply(cluster, ns, MODEL_SPEC)
    grant = token(
        cluster, ns, "--auto-approve", "--max-uses", str(DEVICES),
        "--labels", f"edgeops.dev/model={MODEL}",
    )  # fmt: skip
    rows = load_rows("builtin:basic-motions")
    config = SimulationConfig(
        gateway=cluster.endpoints["gateway"], namespace=ns, devices=DEVICES, token=grant,
        trusted_keys=trusted, rows=rows, state_root=tmp_path, classes=CLASSES,
        mcu_share=0.25, interval_seconds=3.0, ramp_seconds=3.0,
        hardware=["raspberry-pi-4"], mcu_hardware=["esp32-s3"],
    )  # fmt: skip
    simulation = Simulation(config)
    assert {v.target_type for v in simulation.views} == {"linux", "mcu"}

    with SimulationThread(simulation):
        # --- v1: initial training, gates, signature, Auto rollout to the whole fleet.
        wait_for(lambda: _succeeded_rollout(cluster, ns, 1), 420, "v1's rollout", interval=3)
        wait_for(lambda: _fleet_on(simulation, 1), 60, "every device running v1", interval=1)
        v1 = _status(cluster, ns)
        first_run = v1["versions"][0]["trainingRun"]
        dataset_v1 = v1["versions"][0]["datasetVersion"]
        print(f"\nv1 on all {DEVICES} devices after {time.monotonic() - started:.0f} s")

        status = _wait_measured(cluster, ns, 1, "NoDrift", 60)
        assert condition(status, "DataDrift")["status"] == "False"

        # --- inject: the drifting feature moves on a share of the devices.
        hit = [
            v.name
            for v in simulation.views
            if share_hit(f"drift:{DRIFT_FEATURE}", v.name, DRIFT_SHARE)
        ]
        assert 3 <= len(hit) <= 9, hit  # the hash picks 6 of the 12 names
        std = float(rows.std[rows.features.index(DRIFT_FEATURE)])
        simulation.inject(
            "drift",
            DataDrift(DRIFT_FEATURE, simulation.elapsed(), DRIFT_SHARE, shift=DRIFT_SIGMAS * std),
        )
        injected = time.monotonic()

        # --- measured: DataDrift True on v1, the numbers in status.drift and in an Event.
        status = _wait_measured(cluster, ns, 1, "Drift", 120)
        measured = status["drift"]
        assert measured["version"] == 1 and measured["worstFeature"] == DRIFT_FEATURE
        worst = next(f for f in measured["features"] if f["feature"] == DRIFT_FEATURE)
        assert worst["verdict"] == "Drift" and worst["statistic"] > worst["threshold"]
        assert worst["samples"] >= 300
        data_drift = condition(status, "DataDrift")
        assert (data_drift["status"], data_drift["reason"]) == ("True", "DriftDetected")
        assert f"{DRIFT_FEATURE}: psi" in data_drift["message"]
        print(f"drift measured {time.monotonic() - injected:.0f} s after the injection: "
              f"{data_drift['message'][:200]}")  # fmt: skip

        # --- retrained on field data: a TrainingRun for Drift on a newer dataset version
        # that holds the devices' samples.
        def drift_run() -> dict[str, Any] | None:
            runs = [
                r for r in _items(cluster, ns, "trainingruns") if r["metadata"]["name"] != first_run
            ]
            return runs[0] if runs else None

        run = wait_for(drift_run, 180, "a TrainingRun for the drift", interval=2)
        assert run["spec"]["reason"] == "Drift"
        dataset_v2 = run["spec"]["datasetRef"]["version"]
        assert dataset_v2 != dataset_v1
        # Lineage: the run pins the version published before the drift as its baseline;
        # the rows dataset_v2 adds to it are the field data it mostly learns from.
        field_data = run["spec"]["fieldData"]
        assert field_data["baselineVersion"] not in (dataset_v2, None)
        assert field_data["driftSince"] and measured.get("driftSince")
        dataset = cluster.get("dataset", DATASET, "-n", ns)["status"]
        counts = {v["id"]: v["sampleCount"] for v in dataset["versions"]}
        # The 80 lab recordings, plus at least a hundred rows the devices uploaded.
        assert counts[dataset_v2] >= RECORDINGS + 100, counts
        rows_v2 = counts[dataset_v2]
        print(f"drift run on dataset {dataset_v2[:12]}: {rows_v2} rows, {rows_v2 - 80} field")
        trigger_events = [
            e["message"] for e in cluster.events(ns, MODEL) if e["reason"] == "RetrainTriggered"
        ]
        assert any(run["metadata"]["name"] in m and "Drift" in m for m in trigger_events)

        # --- the run says what it learnt from: status.fieldData and its Succeeded Event.
        name = run["metadata"]["name"]
        finished = wait_for(
            lambda: (
                (r := cluster.get("trainingrun", name, "-n", ns)).get("status", {}).get("phase")
                == "Succeeded"
                and r
            ),
            420,
            "the drift run Succeeded",
            interval=2,
        )
        trained = time.monotonic() - injected
        used = finished["status"]["fieldData"]
        assert used["baselineVersion"] == field_data["baselineVersion"]
        assert used["driftSince"] == field_data["driftSince"]
        assert used["fieldRows"] >= 100 and used["referenceFrom"] == "field"
        assert used["referenceRows"] == used["fieldRows"] and 0.5 <= used["weight"] <= 1
        done = [e["message"] for e in cluster.events(ns, name) if e["reason"] == "Evaluated"]
        assert any(f"{used['fieldRows']} field rows since" in m for m in done), done
        print(f"drift run Succeeded {trained:.0f} s after the injection: {used}")

        # --- v2 passes its gates, becomes current and its Auto rollout Succeeds.
        wait_for(lambda: _succeeded_rollout(cluster, ns, 2), 420, "v2's rollout", interval=3)
        wait_for(lambda: _fleet_on(simulation, 2), 60, "every device running v2", interval=1)
        to_v2 = time.monotonic() - injected
        # The model records the fleet's version from the Succeeded rollout (its own status).
        status = wait_for(
            lambda: (s := _status(cluster, ns)).get("fleetVersion") == 2 and s,
            30,
            "status.fleetVersion 2",
        )
        v2 = next(v for v in status["versions"] if v["number"] == 2)
        assert v2["state"] == "Approved" and v2["datasetVersion"] == dataset_v2
        assert v2["trainingRun"] == run["metadata"]["name"]
        assert condition(status, "GatesPassed")["status"] == "True"
        assert status["fleetVersion"] == 2 and status["currentVersion"] == 2
        print(f"drift injection -> whole fleet ({DEVICES} devices) on v2: {to_v2:.0f} s")

        # --- the drift clears: v2's reference profile describes the fleet as it is.
        status = _wait_measured(cluster, ns, 2, "NoDrift", 120)
        cleared = condition(status, "DataDrift")
        assert (cleared["status"], cleared["reason"]) == ("False", "NoDrift")
        assert "driftSince" not in status["drift"]
        print(f"v2 measured: {cleared['message'][:200]}")
        # And it stays clear: the next measurement of v2 is no drift either.
        first = status["drift"]["measuredAt"]
        status = wait_for(
            lambda: (s := _status(cluster, ns)).get("drift", {}).get("measuredAt") != first and s,
            30,
            "a second measurement of v2",
        )
        assert (status["drift"]["version"], status["drift"]["verdict"]) == (2, "NoDrift")
        print(f"v2 measured again: {condition(status, 'DataDrift')['message'][:200]}")
        # No further run: drift on the superseded v1 started nothing more.
        assert len(_items(cluster, ns, "trainingruns")) == 2
    print(f"loop test total {time.monotonic() - started:.0f} s")
