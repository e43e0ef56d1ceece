"""The drift monitor on the devcluster: devices send telemetry through a gateway that
Prometheus scrapes; the EdgeModel controller measures the fleet's per-feature histograms
against the version's reference profile every interval and writes status.drift, the
DataDrift / ConceptDrift conditions and an Event per verdict change; a Drift verdict is a
retraining signal."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from edgeops.api.common import ArtifactRef
from edgeops.api.edgemodel import Target
from edgeops.drift import numeric_entry
from edgeops.signing import generate_key
from tests.conftest import Cluster, condition, wait_for
from tests.integration.gateway_client import Device, cli, gateway_process, publish_version

pytestmark = pytest.mark.integration

MODEL_NAME = "dm-model"
GATEWAY_JOB = "edgeops-gateway-drift"
TARGET = Target(name="pi", target_type="linux", format="onnx")
MODEL = {
    "apiVersion": "edgeops.dev/v1alpha1",
    "kind": "EdgeModel",
    "metadata": {"name": MODEL_NAME},
    "spec": {
        "training": {"datasetRef": {"name": "absent"}, "exports": ["onnx"]},
        "targets": [{"name": "pi", "targetType": "linux", "format": "onnx"}],
        "retrain": {
            "onNewDatasetVersion": False,
            "cooldown": "1s",
            # A small window and interval keep the test short; Prometheus scrapes every 5s.
            "onDrift": {"enabled": True, "window": "30s", "interval": "3s", "minSamples": 300},
        },
    },
}
RNG = np.random.default_rng(3)
PROFILE = {
    "format": 2,
    "rows": 5000,
    "features": {
        "temp": numeric_entry(list(RNG.normal(20.0, 5.0, 5000))),
        "hum": numeric_entry(list(RNG.normal(50.0, 10.0, 5000))),
    },
    "label": {"column": "y", "distribution": {"a": 50, "b": 50}},
}
EDGES = {name: np.asarray(entry["edges"]) for name, entry in PROFILE["features"].items()}


def _counts(name: str, values: np.ndarray[Any, Any]) -> list[int]:
    index = np.searchsorted(EDGES[name], values, side="right")
    return [int(c) for c in np.bincount(index, minlength=len(EDGES[name]) + 1)]


@dataclass
class Sender:
    """Devices reporting telemetry every ``period`` seconds in a background thread, with
    ``temp`` drawn around ``shift`` + 20."""

    devices: list[Device]
    shift: float = 0.0
    period: float = 1.0
    errors: list[str] | None = None

    def __post_init__(self) -> None:
        self.stop = threading.Event()
        self.errors = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = np.random.default_rng(11)
        sequence = 0
        while not self.stop.wait(self.period):
            sequence += 1
            for device in self.devices:
                n = 100
                report = {
                    "sequence": sequence, "model": MODEL_NAME, "version": 1,
                    "intervalSeconds": 1, "inferences": n,
                    "features": {
                        "temp": {"counts": _counts("temp", rng.normal(20 + self.shift, 5, n))},
                        "hum": {"counts": _counts("hum", rng.normal(50, 10, n))},
                    },
                    "feedback": {"correct": 90, "incorrect": 10},
                }  # fmt: skip
                try:
                    answer = device.telemetry(report)
                    if answer.status_code != 200:
                        assert self.errors is not None
                        self.errors.append(answer.text)
                except httpx.HTTPError as error:
                    assert self.errors is not None
                    self.errors.append(str(error))


def _apply(cluster: Cluster, ns: str, obj: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))


@pytest.fixture(scope="module")
def fleet(cluster: Cluster) -> Iterator[tuple[str, Sender]]:
    """EdgeModel dm-model with onDrift enabled and v1 (signed, with a real reference
    profile, test accuracy 0.9) current; two approved devices reporting through a gateway
    Prometheus scrapes."""
    with gateway_process(cluster) as (http, port):
        cluster.dev.register_scrape_target(GATEWAY_JOB, f"127.0.0.1:{port}")
        ns = cluster.namespace("dm")
        _apply(cluster, ns, MODEL)
        uid = cluster.get("edgemodel", MODEL_NAME, "-n", ns)["metadata"]["uid"]
        # The controller's first status write (an empty registry) must not land after ours.
        wait_for(lambda: _status(cluster, ns).get("conditions"), 60, "the first status")
        store = cluster.store()
        blob = store.put_blob(json.dumps(PROFILE).encode())
        profile = ArtifactRef(
            uri=f"s3://{store.bucket}/{blob.key}", size=blob.size, sha256=blob.sha256,
            format="reference-profile", name="profile.json",
        )  # fmt: skip
        version = publish_version(cluster, ns, MODEL_NAME, uid, 1, generate_key(), [TARGET],
                                  [profile])  # fmt: skip
        version["metrics"] = {"overall": {"accuracy": 0.9}}
        status = {"currentVersion": 1, "latestVersion": 1, "versions": [version]}
        cluster.kubectl(
            "patch", "edgemodel", MODEL_NAME, "-n", ns, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}),
        )  # fmt: skip
        devices = []
        for name in ("d1", "d2"):
            client = Device(http, ns, name)
            _apply(cluster, ns, {
                "apiVersion": "edgeops.dev/v1alpha1", "kind": "Device",
                "metadata": {"name": name, "labels": {"edgeops.dev/model": MODEL_NAME}},
                "spec": {"targetType": "linux", "approval": "Approved",
                         "identity": {"publicKey": client.public_b64}},
            })  # fmt: skip
            devices.append(client)
        sender = Sender(devices)
        sender.thread.start()
        try:
            yield ns, sender
        finally:
            sender.stop.set()
            sender.thread.join(10)
            (cluster.dev.prometheus_targets_dir() / f"{GATEWAY_JOB}.json").unlink(missing_ok=True)
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _status(cluster: Cluster, ns: str) -> dict[str, Any]:
    return dict(cluster.get("edgemodel", MODEL_NAME, "-n", ns).get("status") or {})


def test_matching_telemetry_is_no_drift_then_a_shift_is_drift(
    cluster: Cluster, fleet: tuple[str, Sender]
) -> None:
    ns, sender = fleet

    def verdict(want: str) -> dict[str, Any] | None:
        status = _status(cluster, ns)
        drift = status.get("drift") or {}
        return status if drift.get("verdict") == want else None

    status = wait_for(lambda: verdict("NoDrift"), 90, "a NoDrift measurement", interval=2)
    assert sender.errors == [], sender.errors[:3] if sender.errors else None
    drift = status["drift"]
    assert drift["version"] == 1 and drift["window"] == "30s" and drift["samples"] >= 300
    features = {f["feature"]: f for f in drift["features"]}
    assert set(features) == {"temp", "hum"}
    for f in features.values():
        assert f["verdict"] == "NoDrift" and f["samples"] >= 300
        assert {"statistic", "threshold", "pValue"} <= set(f)
    data = condition(status, "DataDrift")
    assert (data["status"], data["reason"]) == ("False", "NoDrift")
    assert "psi" in data["message"] and "samples" in data["message"]
    # 9 of 10 answers right against a test accuracy of 0.9: no concept drift.
    assert drift["conceptVerdict"] == "NoDrift"
    assert drift["accuracy"] == pytest.approx(0.9, abs=0.02)
    assert condition(status, "ConceptDrift")["status"] == "False"

    sender.shift = 15.0  # three reference standard deviations
    status = wait_for(lambda: verdict("Drift"), 90, "a Drift measurement", interval=2)
    drift = status["drift"]
    assert drift["worstFeature"] == "temp" and drift["driftSince"]
    temp = next(f for f in drift["features"] if f["feature"] == "temp")
    assert temp["verdict"] == "Drift" and temp["statistic"] > temp["threshold"]
    data = condition(status, "DataDrift")
    assert (data["status"], data["reason"]) == ("True", "DriftDetected")
    assert "temp: psi" in data["message"]

    def event() -> list[str]:
        return [
            e["message"] for e in cluster.events(ns, MODEL_NAME)
            if e["reason"] == "DriftDetected" and e["type"] == "Warning"
        ]  # fmt: skip

    messages = wait_for(event, 30, "a DriftDetected Event")
    assert "temp: psi" in messages[0] and "vs threshold" in messages[0]
    assert "(was NoDrift)" in messages[0]

    # The Drift verdict is a retraining signal; without a dataset version the run waits.
    def pending() -> list[str]:
        return [
            e["message"] for e in cluster.events(ns, MODEL_NAME)
            if e["reason"] == "DatasetVersionNotFound" and "Drift (v1: temp" in e["message"]
        ]  # fmt: skip

    wait_for(pending, 30, "the Drift signal waiting for a dataset version")


def _prometheus(cluster: Cluster, query: str) -> list[dict[str, Any]]:
    response = httpx.get(
        cluster.env["EDGEOPS_PROMETHEUS_URL"] + "/api/v1/query", params={"query": query}
    )
    response.raise_for_status()
    return list(response.json()["data"]["result"])


def test_the_drift_series_reach_prometheus_and_the_report_plots_them(
    cluster: Cluster, fleet: tuple[str, Sender], tmp_path: Path
) -> None:
    """Runs after the shift above: the operator exports the measurement as
    edgeops_model_drift_* series, Prometheus scrapes them, and `edgeops report` draws them
    next to the last measurement, the versions and the Events."""
    ns, _ = fleet
    selector = f'{{namespace="{ns}",model="{MODEL_NAME}"}}'
    # Prometheus scrapes every 5 s: the NoDrift measurement before the shift may still be
    # the newest sample for a moment.
    drifting = f'edgeops_model_drift_detected{selector[:-1]},type="data"}} == 1'
    wait_for(lambda: _prometheus(cluster, drifting), 60, "drift_detected 1 in Prometheus", 2)
    statistic = _prometheus(cluster, f"edgeops_model_drift_statistic{selector}")
    threshold = _prometheus(cluster, f"edgeops_model_drift_threshold{selector}")
    by_feature = {s["metric"]["feature"]: float(s["value"][1]) for s in statistic}
    limits = {s["metric"]["feature"]: float(s["value"][1]) for s in threshold}
    assert set(by_feature) == {"temp", "hum"} and by_feature["temp"] > limits["temp"]
    assert {s["metric"]["version"] for s in statistic} == {"1"}

    out = tmp_path / "report"
    index = cli(cluster, "report", MODEL_NAME, "-n", ns, "--since", "10m", "--output", str(out))
    assert Path(index) == out / "index.html"
    html = (out / "index.html").read_text()
    pngs = {p.name for p in out.glob("*.png")}
    assert {"drift-over-time.png", "drift-last.png", "traffic.png"} <= pngs, pngs
    for name in pngs:
        assert (out / name).read_bytes().startswith(b"\x89PNG") and f'src="{name}"' in html
    # The last measurement's row for temp (the monitor measures every 3 s, so the numbers
    # are the page's own): the shift is still on, so its statistic is above its threshold.
    row = re.search(r"<td>temp</td><td>(\w+)</td><td>([\d.e+-]+)</td>\s*<td>([\d.e+-]+)</td>", html)
    assert row is not None, html
    assert float(row[2]) > float(row[3])
    assert "DriftDetected" in html and "could not be read" not in html

    missing = subprocess.run(
        [sys.executable, "-m", "edgeops", "report", "absent", "-n", ns, "--output", str(out)],
        env={**os.environ, **cluster.env, "KUBECONFIG": cluster.kubeconfig},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert missing.returncode == 1
    assert f"EdgeModel {ns}/absent not found" in missing.stderr


def test_switching_on_drift_off_removes_the_drift_conditions(
    cluster: Cluster, fleet: tuple[str, Sender]
) -> None:
    ns, _ = fleet
    wait_for(lambda: condition(_status(cluster, ns), "DataDrift"), 60, "a DataDrift condition")
    cluster.kubectl(
        "patch", "edgemodel", MODEL_NAME, "-n", ns, "--type=merge",
        "-p", json.dumps({"spec": {"retrain": {"onDrift": {"enabled": False}}}}),
    )  # fmt: skip

    def cleared() -> dict[str, Any] | None:
        status = _status(cluster, ns)
        types = {c["type"] for c in status.get("conditions") or []}
        gone = not types & {"DataDrift", "ConceptDrift"} and "drift" not in status
        return status if gone else None

    status = wait_for(cleared, 30, "the drift conditions and status.drift removed")
    assert status["currentVersion"] == 1  # the rest of the status stays
    messages = [
        e["message"] for e in cluster.events(ns, MODEL_NAME)
        if e["reason"] == "DriftMonitoringDisabled"
    ]  # fmt: skip
    assert len(messages) == 1 and "removed DataDrift=" in messages[0], messages
