"""The fleet gateway as a local process on 127.0.0.1 against the session devcluster: gated
enrollment (token, approval, pinned keys), RFC 9421 signed requests (replay, age, another
device's path, tampered body), desired state with a manifest edgeops.signing verifies,
status reports with a monotonic sequence."""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edgeops.api.common import ArtifactRef, format_time
from edgeops.api.edgemodel import Target
from edgeops.controllers import bundles
from edgeops.httpsig import sign_request
from edgeops.signing import Binding, generate_key, verify_manifest
from tests.conftest import Cluster, wait_for

pytestmark = pytest.mark.integration

MODEL = {
    "apiVersion": "edgeops.dev/v1alpha1",
    "kind": "EdgeModel",
    "metadata": {"name": "gw-model"},
    "spec": {
        "training": {"datasetRef": {"name": "absent"}, "exports": ["onnx"]},
        "targets": [{"name": "pi", "targetType": "linux", "format": "onnx"}],
        "retrain": {"onNewDatasetVersion": False},
    },
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Device:
    """A minimal device client: an Ed25519 key and RFC 9421 signed requests."""

    def __init__(self, http: httpx.Client, namespace: str, name: str) -> None:
        self.http, self.namespace, self.name = http, namespace, name
        self.key = Ed25519PrivateKey.generate()

    @property
    def public_b64(self) -> str:
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def headers(
        self, method: str, path: str, body: bytes, *, created: float | None = None
    ) -> dict[str, str]:
        return sign_request(
            self.key,
            f"{self.namespace}/{self.name}",
            method,
            path,
            body,
            created=int(created if created is not None else time.time()),
        )

    def send(
        self,
        method: str,
        path: str,
        document: Any = None,
        *,
        created: float | None = None,
        extra: dict[str, str] | None = None,
    ) -> httpx.Response:
        body = b"" if document is None else json.dumps(document).encode()
        headers = {**self.headers(method, path, body, created=created), **(extra or {})}
        if body:
            headers["Content-Type"] = "application/json"
        return self.http.request(method, path, content=body, headers=headers)

    def enroll(self, token: str, **fields: Any) -> httpx.Response:
        document = {
            "token": token,
            "namespace": self.namespace,
            "name": self.name,
            "publicKey": self.public_b64,
            "targetType": "linux",
            "capabilities": {
                "arch": "aarch64",
                "runtimes": ["onnxruntime"],
                "agentVersion": "0.1.0",
            },
            **fields,
        }
        return self.send("POST", "/v1/enroll", document)

    def desired(self, **kw: Any) -> httpx.Response:
        return self.send("GET", f"/v1/devices/{self.namespace}/{self.name}/desired", **kw)


def _reason(response: httpx.Response) -> str:
    return str(response.json()["reason"])


@pytest.fixture(scope="module")
def gateway(cluster: Cluster) -> Iterator[httpx.Client]:
    port = _free_port()
    env = {
        **os.environ,
        **cluster.env,
        "KUBECONFIG": cluster.kubeconfig,
        "EDGEOPS_GATEWAY_CACHE_SECONDS": "0",
        "EDGEOPS_GATEWAY_REQUESTS_PER_MINUTE": "600",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeops", "gateway", "run", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def up() -> bool:
        try:
            return http.get("/openapi.json").status_code == 200
        except httpx.HTTPError:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            return False

    wait_for(up, 60, "the gateway")
    yield http
    http.close()
    proc.terminate()
    proc.wait(10)


def _cli(cluster: Cluster, *args: str) -> str:
    env = {**os.environ, **cluster.env, "KUBECONFIG": cluster.kubeconfig}
    done = subprocess.run(
        [sys.executable, "-m", "edgeops", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def _token(cluster: Cluster, ns: str, *args: str) -> str:
    return _cli(cluster, "device", "token", "create", "-n", ns, *args)


@pytest.fixture(scope="module")
def model_ns(cluster: Cluster) -> Iterator[tuple[str, str, str]]:
    """A namespace with EdgeModel gw-model whose version 1 is signed and current; returns
    (namespace, model uid, public keys JSON)."""
    ns = cluster.namespace("gw")
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(MODEL))
    uid = cluster.get("edgemodel", "gw-model", "-n", ns)["metadata"]["uid"]
    store = cluster.store()
    blob = store.put_blob(b"not really onnx, but signed and hashed like it")
    artifact = ArtifactRef(
        uri=f"s3://{store.bucket}/{blob.key}", size=blob.size, sha256=blob.sha256, format="onnx"
    )
    key = generate_key()
    now = datetime.now(UTC)
    signature = bundles.publish(
        store, key, namespace=ns, model="gw-model", uid=uid, number=1,
        targets=[Target(name="pi", target_type="linux", format="onnx")], artifacts=[artifact],
        now=now, validity=timedelta(days=30),
    )  # fmt: skip
    status = {
        "currentVersion": 1,
        "latestVersion": 1,
        "versions": [
            {
                "number": 1,
                "trainingRun": "gw-model-1",
                "created": format_time(now),
                "state": "Approved",
                "artifacts": [artifact.model_dump(by_alias=True, exclude_none=True)],
                "signature": signature.model_dump(by_alias=True, exclude_none=True),
            }
        ],
    }
    cluster.kubectl(
        "patch", "edgemodel", "gw-model", "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip
    yield ns, uid, json.dumps({key.key_id: key.public_b64})
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

    # Reports: a monotonic sequence, status written only when something changed.
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

    auto = _token(cluster, ns, "--auto-approve")
    approved = Device(gateway, ns, "dev-auto").enroll(auto)
    assert approved.status_code == 201 and approved.json()["enrollment"] == "Approved"
