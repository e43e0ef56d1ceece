"""Telemetry into Prometheus: signed device reports checked against the version's reference
profile, exported by the gateway at /metrics and scraped by the devcluster's Prometheus,
labelled by namespace, model, version and cohort and never by device."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from edgeops.api.common import ArtifactRef
from edgeops.api.edgemodel import Target
from edgeops.api.wire import CONFIDENCE_BUCKETS, LATENCY_BUCKETS_SECONDS
from edgeops.metrics import fleet
from edgeops.signing import generate_key
from tests.conftest import Cluster, wait_for
from tests.integration.gateway_client import Device, gateway_process, publish_version, reason

pytestmark = pytest.mark.integration

MODEL_NAME = "tm-model"
TARGET = Target(name="pi", target_type="linux", format="onnx")
MODEL = {
    "apiVersion": "edgeops.dev/v1alpha1",
    "kind": "EdgeModel",
    "metadata": {"name": MODEL_NAME},
    "spec": {
        "training": {"datasetRef": {"name": "absent"}, "exports": ["onnx"]},
        "targets": [{"name": "pi", "targetType": "linux", "format": "onnx"}],
        "retrain": {"onNewDatasetVersion": False},
    },
}
# The reference profile format edgeops.datasets.profile.build_profile writes.
PROFILE = {
    "format": 1,
    "rows": 100,
    "features": {
        "temp": {
            "kind": "numeric",
            "edges": [10.0, 20.0, 30.0],
            "counts": [25, 25, 25, 25],
            "count": 100,
            "missing": 0,
        },
        "site": {"kind": "categorical", "counts": {"a": 60, "b": 40}, "count": 100, "missing": 0},
    },
    "label": {"column": "y", "distribution": {"cat": 50, "dog": 50}},
    "slices": {},
    "splits": {"train": 100},
}
#: Its own scrape job: the devcluster scrapes its gateway pod as job edgeops-gateway
#: (targets file edgeops-gateway.json), which this module must neither replace nor delete.
GATEWAY_JOB = "edgeops-gateway-telemetry"


@dataclass
class Fleet:
    namespace: str
    http: httpx.Client
    stable: list[Device]
    canary: Device


@pytest.fixture(scope="module")
def gateway(cluster: Cluster) -> Iterator[httpx.Client]:
    with gateway_process(cluster) as (http, port):
        cluster.dev.register_scrape_target(GATEWAY_JOB, f"127.0.0.1:{port}")
        yield http
    (cluster.dev.prometheus_targets_dir() / f"{GATEWAY_JOB}.json").unlink(missing_ok=True)


def _apply(cluster: Cluster, ns: str, obj: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))


def _patch_status(cluster: Cluster, kind: str, name: str, ns: str, status: Any) -> None:
    cluster.kubectl(
        "patch", kind, name, "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


@pytest.fixture(scope="module")
def devices(cluster: Cluster, gateway: httpx.Client) -> Iterator[Fleet]:
    """EdgeModel tm-model with versions 1 (current) and 2, both signed and with the
    reference profile; approved devices s1, s2 (stable on v1) and c1 (label group=canary),
    which a Progressing FleetRollout at 100 % of group=canary moves to v2."""
    ns = cluster.namespace("tm")
    _apply(cluster, ns, MODEL)
    uid = cluster.get("edgemodel", MODEL_NAME, "-n", ns)["metadata"]["uid"]
    store = cluster.store()
    blob = store.put_blob(json.dumps(PROFILE).encode())
    profile = ArtifactRef(
        uri=f"s3://{store.bucket}/{blob.key}", size=blob.size, sha256=blob.sha256,
        format="reference-profile", name="profile.json",
    )  # fmt: skip
    key = generate_key()
    versions = [
        publish_version(cluster, ns, MODEL_NAME, uid, n, key, [TARGET], [profile]) for n in (1, 2)
    ]
    _patch_status(cluster, "edgemodel", MODEL_NAME, ns,
                  {"currentVersion": 1, "latestVersion": 2, "versions": versions})  # fmt: skip

    def device(name: str, **labels: str) -> Device:
        client = Device(gateway, ns, name)
        _apply(cluster, ns, {
            "apiVersion": "edgeops.dev/v1alpha1", "kind": "Device",
            "metadata": {"name": name, "labels": {"edgeops.dev/model": MODEL_NAME, **labels}},
            "spec": {"targetType": "linux", "approval": "Approved",
                     "identity": {"publicKey": client.public_b64}},
        })  # fmt: skip
        return client

    stable = [device("s1"), device("s2")]
    canary = device("c1", group="canary")
    _apply(cluster, ns, {
        "apiVersion": "edgeops.dev/v1alpha1", "kind": "FleetRollout",
        "metadata": {"name": "tm-v2"},
        "spec": {"modelRef": {"name": MODEL_NAME}, "version": 2,
                 "selector": {"matchLabels": {"group": "canary"}}, "steps": [{"percent": 100}]},
    })  # fmt: skip
    _patch_status(cluster, "fleetrollout", "tm-v2", ns,
                  {"phase": "Progressing", "currentStep": 0, "currentPercent": 100})  # fmt: skip
    yield Fleet(ns, gateway, stable, canary)
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _report(sequence: int, version: int, **fields: Any) -> dict[str, Any]:
    return {"sequence": sequence, "model": MODEL_NAME, "version": version,
            "intervalSeconds": 60, **fields}  # fmt: skip


def _buckets(bounds: tuple[float, ...], **at: int) -> list[int]:
    counts = [0] * (len(bounds) + 1)
    for index, count in at.items():
        counts[int(index.removeprefix("i"))] = count
    return counts


def _query(cluster: Cluster, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(
        cluster.env["EDGEOPS_PROMETHEUS_URL"] + "/api/v1/query", params={"query": promql}
    )
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _by(results: list[dict[str, Any]], *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(r["metric"].get(k, "") for k in labels): float(r["value"][1]) for r in results}


def test_desired_state_carries_the_profile_and_cohort(devices: Fleet) -> None:
    got = devices.canary.desired()
    assert got.status_code == 200, got.text
    document = got.json()
    assert (document["version"], document["cohort"], document["rollout"]) == (2, "canary", "tm-v2")
    assert document["profile"] == {
        "site": {"categories": ["a", "b"]},
        "temp": {"edges": [10.0, 20.0, 30.0]},
    }
    stable = devices.stable[0].desired().json()
    assert (stable["version"], stable["cohort"]) == (1, "stable")


def test_refused_reports(devices: Fleet) -> None:
    s1, s2 = devices.stable
    unknown = s1.telemetry(_report(100, 1, features={"humidity": {"counts": [1]}}))
    assert unknown.status_code == 422 and reason(unknown) == "UnknownFeature"
    assert "humidity" in unknown.json()["message"]
    bins = s1.telemetry(_report(101, 1, features={"temp": {"counts": [1, 2, 3]}}))
    assert bins.status_code == 422 and reason(bins) == "BinMismatch"
    assert "features.temp" in bins.json()["message"]
    latency = s1.telemetry(_report(102, 1, inferences=3, latencySeconds={"counts": [1, 2]}))
    assert latency.status_code == 422 and reason(latency) == "BinMismatch"
    typo = s1.telemetry({**_report(103, 1), "inferencez": 3})
    assert typo.status_code == 422 and reason(typo) == "InvalidRequest"
    overcounted = s1.telemetry(_report(103, 1, inferences=2, predictions={"cat": 3}))
    assert overcounted.status_code == 422 and reason(overcounted) == "InvalidRequest"
    assert "more than inferences (2)" in overcounted.json()["message"]
    quoted = s1.telemetry({**_report(103, 1), "inferences": "3"})
    assert quoted.status_code == 422 and "inferences" in quoted.json()["message"]
    version = s1.telemetry(_report(104, 9))
    assert version.status_code == 422 and reason(version) == "UnknownVersion"
    model = s1.telemetry({**_report(105, 1), "model": "other-model"})
    assert model.status_code == 409 and reason(model) == "ModelNotAssigned"
    other = s1.telemetry(_report(106, 1, inferences=1000), of=s2.name)
    assert other.status_code == 403 and reason(other) == "WrongDevice"
    # A refused report does not use its sequence up: the same number, fixed, is accepted.
    fixed = s1.telemetry(_report(100, 1))
    assert fixed.status_code == 200, fixed.text
    replayed = s1.telemetry(_report(100, 1, inferences=1000))
    assert replayed.status_code == 409 and reason(replayed) == "StaleSequence"


def test_telemetry_reaches_prometheus_by_cohort_never_by_device(
    cluster: Cluster, devices: Fleet
) -> None:
    s1, s2 = devices.stable
    c1 = devices.canary
    sent = [
        (s1, _report(200, 1, inferences=10, errors=1,
                     predictions={"cat": 6, "dog": 3, "bird": 1},
                     latencySeconds={"counts": _buckets(LATENCY_BUCKETS_SECONDS, i2=4, i5=6),
                                     "sum": 0.1},
                     confidence={"counts": _buckets(CONFIDENCE_BUCKETS, i9=10), "sum": 9.5},
                     features={"temp": {"counts": [1, 2, 3, 4], "missing": 1},
                               "site": {"categories": {"a": 5, "zz": 2}}},
                     feedback={"correct": 5, "incorrect": 1})),
        (s2, _report(200, 1, inferences=20, predictions={"cat": 20},
                     latencySeconds={"counts": _buckets(LATENCY_BUCKETS_SECONDS, i2=20),
                                     "sum": 0.04},
                     features={"temp": {"counts": [0, 0, 10, 10]}},
                     feedback={"correct": 2})),
        (c1, _report(200, 2, inferences=7, errors=2, predictions={"dog": 7},
                     latencySeconds={"counts": _buckets(LATENCY_BUCKETS_SECONDS, i11=7),
                                     "sum": 9.0},
                     features={"temp": {"counts": [7, 0, 0, 0]}},
                     feedback={"incorrect": 3})),
        # The canary device still on the old version: stable traffic, not canary.
        (c1, _report(201, 1, inferences=3, predictions={"cat": 3})),
    ]  # fmt: skip
    cohorts = []
    for device, report in sent:
        answer = device.telemetry(report)
        assert answer.status_code == 200, answer.text
        cohorts.append(answer.json()["cohort"])
    assert cohorts == ["stable", "stable", "canary", "stable"]

    ns = devices.namespace
    selector = f'namespace="{ns}",job="{GATEWAY_JOB}"'
    series = ("version", "cohort")
    want = {("1", "stable"): 33.0, ("2", "canary"): 7.0}

    def scraped() -> dict[tuple[str, ...], float] | None:
        got = _by(_query(cluster, f"sum by (version, cohort) ({fleet.INFERENCES_TOTAL}"
                                  f"{{{selector}}})"), *series)  # fmt: skip
        return got if got == want else None

    wait_for(scraped, 45, "the devices' inferences in Prometheus", interval=2)

    raw = _query(cluster, f'{{__name__=~"edgeops_device_.*",{selector}}}')
    names = {r["metric"]["__name__"] for r in raw}
    assert {fleet.INFERENCES_TOTAL, fleet.PREDICTIONS_TOTAL, fleet.FEEDBACK_TOTAL,
            fleet.FEATURE_OBSERVATIONS_TOTAL, fleet.INFERENCE_ERRORS_TOTAL,
            fleet.TELEMETRY_REPORTS_TOTAL, f"{fleet.INFERENCE_LATENCY_SECONDS}_bucket",
            f"{fleet.PREDICTION_CONFIDENCE_RATIO}_count"} <= names  # fmt: skip
    allowed = {"__name__", "job", "instance", "namespace", "model", "version", "cohort",
               "class", "feature", "bin", "outcome", "le"}  # fmt: skip
    for result in raw:
        assert set(result["metric"]) <= allowed, result["metric"]
        assert result["metric"]["model"] == MODEL_NAME
        assert not {"s1", "s2", "c1"} & set(result["metric"].values()), result["metric"]

    def by(promql: str, *labels: str) -> dict[tuple[str, ...], float]:
        return _by(_query(cluster, promql), *labels)

    assert by(f"sum by (cohort) ({fleet.INFERENCE_ERRORS_TOTAL}{{{selector}}})", "cohort") == {
        ("stable",): 1.0, ("canary",): 2.0,
    }  # fmt: skip
    assert by(f"sum by (class) ({fleet.PREDICTIONS_TOTAL}{{{selector},cohort='stable'}})",
              "class") == {("cat",): 29.0, ("dog",): 3.0, ("other",): 1.0}  # fmt: skip
    assert by(f"sum by (outcome, cohort) ({fleet.FEEDBACK_TOTAL}{{{selector}}})",
              "outcome", "cohort") == {("correct", "stable"): 7.0, ("incorrect", "stable"): 1.0,
                                       ("correct", "canary"): 0.0,
                                       ("incorrect", "canary"): 3.0}  # fmt: skip
    temp = by(f"sum by (bin) ({fleet.FEATURE_OBSERVATIONS_TOTAL}{{{selector},feature='temp',"
              "cohort='stable'})", "bin")  # fmt: skip
    assert temp == {("0",): 1.0, ("1",): 2.0, ("2",): 13.0, ("3",): 14.0, ("missing",): 1.0}
    site = by(f"sum by (bin) ({fleet.FEATURE_OBSERVATIONS_TOTAL}{{{selector},feature='site'}})",
              "bin")  # fmt: skip
    assert site == {("a",): 5.0, ("other",): 2.0, ("missing",): 0.0}
    latency = fleet.INFERENCE_LATENCY_SECONDS
    assert by(f"sum by (cohort) ({latency}_count{{{selector}}})", "cohort") == {
        ("stable",): 30.0, ("canary",): 7.0,
    }  # fmt: skip
    assert by(f"sum by (le) ({latency}_bucket{{{selector},cohort='stable',le=~'0.0025|0.025'}})",
              "le") == {("0.0025",): 24.0, ("0.025",): 30.0}  # fmt: skip
    assert by(f"sum by (cohort) ({latency}_sum{{{selector}}})", "cohort") == pytest.approx(
        {("stable",): 0.14, ("canary",): 9.0}
    )
