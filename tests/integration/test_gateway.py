"""The fleet gateway as a local process on 127.0.0.1 against the session devcluster: gated
enrollment (token, approval, pinned keys), RFC 9421 signed requests (replay, age, another
device's path, tampered body), desired state with a manifest edgeops.signing verifies,
status reports with a monotonic sequence."""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from edgeops.signing import Binding, verify_manifest
from tests.conftest import Cluster
from tests.integration.gateway_client import (
    Device,
    edge_model,
    publish_model,
    running_gateway,
)
from tests.integration.gateway_client import cli as _cli
from tests.integration.gateway_client import reason as _reason
from tests.integration.gateway_client import token as _token

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(cluster: Cluster) -> Iterator[httpx.Client]:
    with running_gateway(cluster) as http:
        yield http


@pytest.fixture(scope="module")
def model_ns(cluster: Cluster) -> Iterator[tuple[str, str, str]]:
    """A namespace with EdgeModel gw-model whose version 1 is signed and current; returns
    (namespace, model uid, public keys JSON)."""
    ns = cluster.namespace("gw")
    published = publish_model(cluster, ns, edge_model("gw-model"))
    yield ns, published.uid, published.public_keys
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_openapi_and_json_errors(gateway: httpx.Client) -> None:
    doc = gateway.get("/openapi.json").json()
    assert {"/v1/enroll", "/v1/devices/{namespace}/{name}/desired"} <= set(doc["paths"])
    missing = gateway.get("/nope")
    assert missing.status_code == 404 and _reason(missing) == "NotFound"
    unsigned = gateway.get("/v1/devices/a/b/desired")
    assert unsigned.status_code == 401 and _reason(unsigned) == "Unsigned"
    big = gateway.post("/v1/enroll", content=b"x" * 70000)
    assert big.status_code == 413 and _reason(big) == "BodyTooLarge"


def test_enroll_approve_and_desired_state(
    cluster: Cluster, gateway: httpx.Client, model_ns: tuple[str, str, str]
) -> None:
    ns, uid, public_keys = model_ns
    token = _token(cluster, ns, "--max-uses", "1", "--labels", "edgeops.dev/model=gw-model,site=a")
    secret_items = cluster.get("secrets", "-n", ns, "-l", "edgeops.dev/bootstrap-token=true")
    assert token not in json.dumps(secret_items)  # only its hash is stored
    dev = Device(gateway, ns, "dev-a")
    unknown = dev.enroll(token, extra_field=1)
    assert unknown.status_code == 422 and _reason(unknown) == "InvalidRequest"
    enrolled = dev.enroll(token)
    assert enrolled.status_code == 201, enrolled.text
    assert enrolled.json()["enrollment"] == "Pending"
    obj = cluster.get("device", "dev-a", "-n", ns)
    assert obj["spec"]["approval"] == "Pending" and obj["status"]["enrollment"] == "Pending"
    assert obj["metadata"]["labels"] == {"edgeops.dev/model": "gw-model", "site": "a"}
    assert obj["status"]["capabilities"]["runtimes"] == ["onnxruntime"]
    pending = dev.desired()
    assert pending.status_code == 403 and _reason(pending) == "DevicePending"
    # Nor can it report: no health, version or update outcome from an unapproved device.
    report = {"sequence": 1, "health": "Healthy",
              "update": {"targetVersion": 1, "phase": "Committed", "attempt": 1}}  # fmt: skip
    claimed = dev.send("POST", f"{dev.path}/status", report)
    assert claimed.status_code == 403 and _reason(claimed) == "DevicePending"
    status = cluster.get("device", "dev-a", "-n", ns)["status"]
    assert "health" not in status and "version" not in status and "update" not in status

    # The token is used up.
    used_up = Device(gateway, ns, "dev-b").enroll(token)
    assert used_up.status_code == 401 and _reason(used_up) == "TokenUsedUp"

    _cli(cluster, "device", "approve", "dev-a", "-n", ns)
    got = dev.desired()
    assert got.status_code == 200, got.text
    document = got.json()
    assert (document["model"], document["version"], document["cohort"]) == (
        "gw-model", 1, "stable",
    )  # fmt: skip
    # The operator may sign the version again with its own key (published in its namespace).
    operator_ns = cluster.env.get("EDGEOPS_NAMESPACE", "edgeops-system")
    published = cluster.get("configmap", "edgeops-signing", "-n", operator_ns)
    keys = {**json.loads(published.get("data", {}).get("publicKeys.json", "{}")),
            **json.loads(public_keys)}  # fmt: skip
    manifest = verify_manifest(
        document["bundleManifest"].encode(),
        keys,
        expected=Binding(ns, "gw-model", 1, uid),
        now=datetime.now(UTC),
    )
    assert manifest["target"]["name"] == "pi"
    same = dev.desired(extra={"If-None-Match": got.headers["ETag"]})
    assert same.status_code == 304

    # Reports: a monotonic sequence (stored with every report), changed fields listed.
    path = f"/v1/devices/{ns}/dev-a/status"
    report = {"sequence": 1, "agentVersion": "0.1.0", "health": "Healthy", "model": "gw-model",
              "version": 1}  # fmt: skip
    first = dev.send("POST", path, report)
    assert first.status_code == 200, first.text
    assert "health" in first.json()["written"]
    again = dev.send("POST", path, {**report, "sequence": 2})
    assert again.status_code == 200 and again.json()["written"] == []
    stale = dev.send("POST", path, {**report, "sequence": 2})
    assert stale.status_code == 409 and _reason(stale) == "StaleSequence"
    status = cluster.get("device", "dev-a", "-n", ns)["status"]
    assert (status["health"], status["version"], status["enrollment"]) == ("Healthy", 1, "Approved")

    # Signed requests: replay, age, another device's path, tampered body.
    body = json.dumps({**report, "sequence": 10}).encode()
    headers = {**dev.headers("POST", path, body), "Content-Type": "application/json"}
    assert gateway.post(path, content=body, headers=headers).status_code == 200
    replay = gateway.post(path, content=body, headers=headers)
    assert replay.status_code == 401 and _reason(replay) == "Replayed"
    old = dev.send("POST", path, {**report, "sequence": 11}, created=time.time() - 600)
    assert old.status_code == 401 and _reason(old) == "SignatureExpired"
    other = dev.send("GET", f"/v1/devices/{ns}/dev-r/desired")
    assert other.status_code == 403 and _reason(other) == "WrongDevice"
    signed = dev.headers("POST", path, json.dumps({**report, "sequence": 12}).encode())
    tampered = gateway.post(
        path, content=json.dumps({**report, "sequence": 13, "health": "Unhealthy"}).encode(),
        headers={**signed, "Content-Type": "application/json"},
    )  # fmt: skip
    assert tampered.status_code == 401 and _reason(tampered) == "DigestMismatch"
    forged = Device(gateway, ns, "dev-a")  # the right name, another key
    assert _reason(forged.desired()) == "BadSignature"

    # Decommissioning revokes.
    cluster.kubectl(
        "patch", "device", "dev-a", "-n", ns, "--type=merge",
        "-p", json.dumps({"spec": {"decommissioned": True}}),
    )  # fmt: skip
    revoked = dev.desired()
    assert revoked.status_code == 403 and _reason(revoked) == "DeviceRevoked"


def test_refused_enrollments(
    cluster: Cluster, gateway: httpx.Client, model_ns: tuple[str, str, str]
) -> None:
    ns = model_ns[0]
    expiring = _token(cluster, ns, "--ttl", "1s")
    time.sleep(1.5)
    expired = Device(gateway, ns, "dev-late").enroll(expiring)
    assert expired.status_code == 401 and _reason(expired) == "TokenExpired"
    wrong = Device(gateway, ns, "dev-x").enroll("ebt.000000000000." + secrets.token_urlsafe(32))
    assert wrong.status_code == 401 and _reason(wrong) == "InvalidToken"

    token = _token(cluster, ns, "--max-uses", "5")
    pinned_key = Device(gateway, ns, "pinned")
    pinned = {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "Device",
        "metadata": {"name": "pinned"},
        "spec": {"targetType": "linux", "identity": {"publicKey": pinned_key.public_b64}},
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pinned))
    impostor = Device(gateway, ns, "pinned").enroll(token)
    assert impostor.status_code == 403 and _reason(impostor) == "KeyMismatch"
    assert pinned_key.enroll(token).status_code == 201

    rejected = Device(gateway, ns, "dev-r")
    assert rejected.enroll(token).status_code == 201
    _cli(cluster, "device", "reject", "dev-r", "-n", ns)
    refused = rejected.desired()
    assert refused.status_code == 403 and _reason(refused) == "DeviceRejected"
    again = rejected.enroll(token)
    assert again.status_code == 403 and _reason(again) == "DeviceRejected"

    auto = _token(cluster, ns, "--auto-approve", "--max-uses", "2")
    approved = Device(gateway, ns, "dev-auto").enroll(auto)
    assert approved.status_code == 201 and approved.json()["enrollment"] == "Approved"

    # Approved before a key was bound: a plain token must not inherit that approval.
    keyless = {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "Device",
        "metadata": {"name": "keyless"},
        "spec": {"targetType": "linux", "approval": "Approved"},
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(keyless))
    claimant = Device(gateway, ns, "keyless")
    claim = claimant.enroll(token)
    assert claim.status_code == 403 and _reason(claim) == "IdentityRequired"
    assert "spec.identity" in claim.json()["message"]
    spec = cluster.get("device", "keyless", "-n", ns)["spec"]
    assert "identity" not in spec and spec["approval"] == "Approved"
    trusted = claimant.enroll(auto)
    assert trusted.status_code == 201 and trusted.json()["enrollment"] == "Approved"


def test_a_client_leaving_mid_body_is_not_a_gateway_error(gateway: httpx.Client) -> None:
    """Edge links drop: a body cut short is the client's doing, never a 5xx (which the
    chart's EdgeOpsGatewayErrors alert counts)."""
    url = httpx.URL(str(gateway.base_url))

    def errors() -> float:
        text = gateway.get("/metrics").text
        return sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("edgeops_gateway_requests_total") and 'code="5' in line
        )  # fmt: skip

    before = errors()
    for path in ("/v1/enroll", "/v1/devices/ns/d/status"):
        with socket.create_connection((url.host, url.port)) as raw:
            raw.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                'Content-Length: 1000\r\n\r\n{"a": '.encode()
            )
    time.sleep(1)
    assert gateway.get("/healthz").status_code == 200
    assert errors() == before
