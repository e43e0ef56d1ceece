"""The gateway's artifact downloads and sample uploads against the session devcluster (the
gateway as a local process, the operator collecting the Dataset): a presigned redirect to
an artifact of the device's desired manifest; rows validated against the Dataset's schema,
written once per distinct upload into its inbox and collected into a new version; invalid
rows, a model without sampling and rows over the cap refused."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import Cluster, wait_for
from tests.integration.gateway_client import (
    Device,
    PublishedModel,
    edge_model,
    publish_model,
    reason,
    running_gateway,
    token,
)

pytestmark = pytest.mark.integration

DATASET = "field"
CAP = 8  # sampling.maxRowsPerHour
SCHEMA = {
    "features": [
        {"name": "ax", "type": "float", "min": -20, "max": 20},
        {"name": "ay", "type": "float", "min": -20, "max": 20},
    ],
    "label": "label",
    "sliceColumns": ["site"],
}


@dataclass(frozen=True)
class Fleet:
    ns: str
    sampler: PublishedModel
    devices: dict[str, Device]


@pytest.fixture(scope="module")
def gateway(cluster: Cluster) -> Iterator[httpx.Client]:
    with running_gateway(cluster, EDGEOPS_GATEWAY_PRESIGN_SECONDS="60") as http:
        yield http


@pytest.fixture(scope="module")
def fleet(cluster: Cluster, gateway: httpx.Client) -> Iterator[Fleet]:
    """Dataset ``field`` (inbox source, collected on new objects); EdgeModel ``sampler``
    sampling into it and ``plain`` without sampling, both at a signed version 1; approved
    devices ``a`` and ``capped`` on sampler (site berlin), ``p`` on plain."""
    ns = cluster.namespace("gws")
    dataset = {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": DATASET},
        "spec": {
            "sources": [{"inbox": {}}],
            "format": "jsonl",
            "schema": SCHEMA,
            "collection": {"onNewObjects": True},
            "governance": {"classification": "internal", "retentionDays": 30},
        },
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(dataset))
    sampling = {"datasetRef": {"name": DATASET}, "maxRowsPerHour": CAP, "confidenceBelow": 0.5}
    sampler = publish_model(cluster, ns, edge_model("sampler", sampling=sampling))
    publish_model(cluster, ns, edge_model("plain"))
    devices = {}
    for name, model in (("a", "sampler"), ("capped", "sampler"), ("p", "plain")):
        labels = f"edgeops.dev/model={model},site=berlin"
        grant = token(cluster, ns, "--auto-approve", "--labels", labels)
        device = Device(gateway, ns, name)
        enrolled = device.enroll(grant)
        assert enrolled.status_code == 201 and enrolled.json()["enrollment"] == "Approved"
        devices[name] = device
    yield Fleet(ns, sampler, devices)
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _features(i: int) -> dict[str, float]:
    """Row i's features: within the schema's range, distinct for every i below 20000."""
    return {"ax": (i % 40) / 4 - 5, "ay": -i / 1000}


def _rows(start: int, count: int, **override: Any) -> list[dict[str, Any]]:
    return [
        {
            "features": _features(i),
            "prediction": "walk",
            "confidence": 0.3,
            "label": "run" if i % 2 else "walk",
            "reason": "LowConfidence",
            **override,
        }
        for i in range(start, start + count)
    ]


def _upload(
    device: Device, sequence: int, rows: list[dict[str, Any]], model: str = "sampler"
) -> httpx.Response:
    document = {"sequence": sequence, "model": model, "version": 1, "rows": rows}
    return device.send("POST", f"{device.path}/samples", document)


def test_an_artifact_of_the_desired_manifest_downloads_through_a_presigned_redirect(
    cluster: Cluster, gateway: httpx.Client, fleet: Fleet
) -> None:
    paths = set(gateway.get("/openapi.json").json()["paths"])
    assert {"/v1/devices/{namespace}/{name}/artifacts/{sha256}",
            "/v1/devices/{namespace}/{name}/samples"} <= paths  # fmt: skip
    device = fleet.devices["a"]
    desired = device.desired()
    assert desired.status_code == 200, desired.text
    document = desired.json()
    assert document["sampling"] == {
        "confidenceBelow": 0.5, "misclassified": True, "randomShare": 0.0, "maxRowsPerHour": CAP,
    }  # fmt: skip
    manifest = json.loads(document["bundleManifest"])["manifest"]
    [entry] = manifest["artifacts"]
    assert entry["sha256"] == fleet.sampler.artifact.sha256

    path = f"{device.path}/artifacts/{entry['sha256']}"
    redirect = device.send("GET", path)
    assert redirect.status_code == 307, redirect.text
    assert redirect.headers["Cache-Control"] == "no-store"
    location = redirect.headers["Location"]
    assert "X-Amz-Signature=" in location and "X-Amz-Expires=60" in location
    # The URL alone fetches the bytes (no credentials); they hash to the manifest's sha256.
    download = httpx.get(location, timeout=30)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == entry["sha256"]
    assert len(download.content) == entry["size"]

    other = device.send("GET", f"{device.path}/artifacts/{'0' * 64}")
    assert other.status_code == 404 and reason(other) == "ArtifactNotAssigned"
    # Another model's artifact, in the same bucket, is not this device's to download.
    plain = fleet.devices["p"].desired().json()
    [plain_entry] = json.loads(plain["bundleManifest"])["manifest"]["artifacts"]
    foreign = device.send("GET", f"{device.path}/artifacts/{plain_entry['sha256']}")
    assert foreign.status_code == 404 and reason(foreign) == "ArtifactNotAssigned"
    unsigned = gateway.get(path)
    assert unsigned.status_code == 401 and reason(unsigned) == "Unsigned"
    assert "Location" not in unsigned.headers
    # Another device's path, signed with this device's key.
    wrong = device.send("GET", f"{fleet.devices['p'].path}/artifacts/{entry['sha256']}")
    assert wrong.status_code == 403 and reason(wrong) == "WrongDevice"


def test_uploaded_rows_land_once_in_the_inbox_and_become_a_dataset_version(
    cluster: Cluster, fleet: Fleet
) -> None:
    device = fleet.devices["a"]
    store = cluster.store()
    inbox = f"inbox/{fleet.ns}/{DATASET}/"
    first = _upload(device, 1, _rows(0, 3))
    assert first.status_code == 200, first.text
    assert first.json()["written"] is True and first.json()["rows"] == 3
    retried = _upload(device, 2, _rows(0, 3))  # the answer was lost: sent again
    assert retried.status_code == 200, retried.text
    assert retried.json() == {**first.json(), "sequence": 2, "written": False}
    stale = _upload(device, 2, _rows(3, 1))
    assert stale.status_code == 409 and reason(stale) == "StaleSequence"
    assert [o.key for o in store.list(inbox)] == [f"{inbox}{first.json()['sha256']}.jsonl"]
    second = _upload(device, 3, _rows(3, 2))
    assert second.status_code == 200 and second.json()["written"] is True
    objects = store.list(inbox)
    assert len(objects) == 2

    # The object is JSON Lines of the schema's columns, the label and the device's site.
    lines = store.get_bytes(f"{inbox}{first.json()['sha256']}.jsonl").decode().splitlines()
    assert [json.loads(line) for line in lines] == [
        {**_features(i), "label": "run" if i % 2 else "walk", "site": "berlin"} for i in range(3)
    ]

    def collected() -> dict[str, Any] | None:
        out = cluster.kubectl("get", "dataset", DATASET, "-n", fleet.ns, "-o", "json")
        versions = (json.loads(out.stdout).get("status") or {}).get("versions") or []
        return versions[-1] if versions and versions[-1]["sampleCount"] == 5 else None

    version = wait_for(collected, 90, "a Dataset version with the 5 uploaded rows", interval=1)
    assert version.get("rejectedCount", 0) == 0
    assert version["classBalance"] == {"run": 2, "walk": 3}


def test_invalid_rows_a_model_without_sampling_and_rows_over_the_cap_are_refused(
    fleet: Fleet,
) -> None:
    device = fleet.devices["capped"]
    invalid = _upload(device, 1, [*_rows(100, 1), *_rows(101, 1, features={"ax": 99.0, "ay": 0})])
    assert invalid.status_code == 422 and reason(invalid) == "InvalidSample"
    assert "rows[1].features.ax: outside [-20, 20]" in invalid.json()["message"]
    unknown = _upload(device, 2, _rows(100, 1, features={"ax": 1.0, "ay": 1.0, "az": 1.0}))
    assert reason(unknown) == "InvalidSample" and "rows[0].features.az" in unknown.text
    unlabelled = _upload(device, 3, _rows(100, 1, label=None))
    assert reason(unlabelled) == "InvalidSample" and "rows[0].label" in unlabelled.text
    extra = _upload(device, 4, [{**_rows(100, 1)[0], "secret": 1}])
    assert extra.status_code == 422 and reason(extra) == "InvalidRequest"
    other_model = _upload(device, 5, _rows(100, 1), model="plain")
    assert other_model.status_code == 409 and reason(other_model) == "ModelNotAssigned"
    too_many = _upload(device, 6, _rows(100, CAP + 1))
    assert too_many.status_code == 422 and reason(too_many) == "TooManyRows"

    plain = fleet.devices["p"]
    disabled = _upload(plain, 1, _rows(100, 1), model="plain")
    assert disabled.status_code == 409 and reason(disabled) == "SamplingDisabled"

    # The cap: CAP rows an hour per device; refused rows above cost nothing.
    assert _upload(device, 7, _rows(200, CAP - 2)).status_code == 200
    over = _upload(device, 8, _rows(300, 3))
    assert over.status_code == 429 and reason(over) == "RateLimited"
    assert int(over.headers["Retry-After"]) > 0
    assert _upload(device, 9, _rows(400, 2)).status_code == 200  # what is left still fits
    # A retry of a stored upload writes nothing and is not charged.
    again = _upload(device, 10, _rows(200, CAP - 2))
    assert again.status_code == 200 and again.json()["written"] is False
