"""Shared by the gateway's integration tests: the gateway as a local process against the
session devcluster, a signing test device, the ``edgeops`` CLI, an EdgeModel whose
version 1 is signed and current, and signed versions to patch into a status."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edgeops.api.common import ArtifactRef, format_time
from edgeops.api.edgemodel import Target
from edgeops.controllers import bundles
from edgeops.httpsig import sign_request
from edgeops.signing import SigningKey, generate_key
from tests.conftest import Cluster, wait_for


def free_port() -> int:
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

    @property
    def path(self) -> str:
        """``/v1/devices/<namespace>/<name>``."""
        return f"/v1/devices/{self.namespace}/{self.name}"

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
        return self.send("GET", f"{self.path}/desired", **kw)

    def telemetry(self, document: Any, *, of: str | None = None) -> httpx.Response:
        """POST a telemetry report, to the device's own path or ``of``'s."""
        return self.send(
            "POST", f"/v1/devices/{self.namespace}/{of or self.name}/telemetry", document
        )


def reason(response: httpx.Response) -> str:
    """The ``reason`` of a JSON error answer."""
    return str(response.json()["reason"])


@contextlib.contextmanager
def gateway_process(cluster: Cluster, **env: str) -> Iterator[tuple[httpx.Client, int]]:
    """``edgeops gateway run`` on a free port of 127.0.0.1 with the cluster's settings, no
    bundle/Dataset cache and generous request and failed-enrollment rates (every test client shares
    127.0.0.1) (plus ``env``); a client of it."""
    port = free_port()
    environment = {
        **os.environ,
        **cluster.env,
        "KUBECONFIG": cluster.kubeconfig,
        "EDGEOPS_GATEWAY_CACHE_SECONDS": "0",
        "EDGEOPS_GATEWAY_REQUESTS_PER_MINUTE": "600",
        "EDGEOPS_GATEWAY_ENROLLMENTS_PER_MINUTE": "600",
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeops", "gateway", "run", "--port", str(port)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def up() -> bool:
        try:
            # Ready: its watch caches of the fleet are synced.
            return http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            return False

    try:
        wait_for(up, 60, "the gateway")
        yield http, port
    finally:
        http.close()
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def running_gateway(cluster: Cluster, **env: str) -> Iterator[httpx.Client]:
    """:func:`gateway_process`, yielding only the client."""
    with gateway_process(cluster, **env) as (http, _):
        yield http


def cli(cluster: Cluster, *args: str) -> str:
    """The last line ``edgeops <args>`` prints."""
    env = {**os.environ, **cluster.env, "KUBECONFIG": cluster.kubeconfig}
    done = subprocess.run(
        [sys.executable, "-m", "edgeops", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def token(cluster: Cluster, ns: str, *args: str) -> str:
    """A new bootstrap token of namespace ``ns``."""
    return cli(cluster, "device", "token", "create", "-n", ns, *args)


def edge_model(name: str, **spec: Any) -> dict[str, Any]:
    """An EdgeModel with one linux target ``pi`` (onnx) that never trains on its own."""
    return {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "EdgeModel",
        "metadata": {"name": name},
        "spec": {
            "training": {"datasetRef": {"name": "absent"}, "exports": ["onnx"]},
            "targets": [{"name": "pi", "targetType": "linux", "format": "onnx"}],
            "retrain": {"onNewDatasetVersion": False},
            **spec,
        },
    }


@dataclass(frozen=True)
class PublishedModel:
    """An EdgeModel whose version 1 is signed and current."""

    uid: str
    public_keys: str  # JSON {keyId: base64 public key} of the key that signed it
    artifact: ArtifactRef
    content: bytes  # the artifact's bytes


def publish_model(cluster: Cluster, ns: str, model: dict[str, Any]) -> PublishedModel:
    """Applies ``model`` (see :func:`edge_model`), stores an artifact, signs version 1's
    bundle with a fresh key and makes it current in status."""
    name = model["metadata"]["name"]
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(model))
    uid = cluster.get("edgemodel", name, "-n", ns)["metadata"]["uid"]
    store = cluster.store()
    content = f"not really onnx, but signed and hashed like it ({ns}/{name})".encode()
    blob = store.put_blob(content)
    artifact = ArtifactRef(
        uri=f"s3://{store.bucket}/{blob.key}", size=blob.size, sha256=blob.sha256, format="onnx"
    )
    key = generate_key()
    now = datetime.now(UTC)
    signature = bundles.publish(
        store, key, namespace=ns, model=name, uid=uid, number=1,
        targets=[Target(name="pi", target_type="linux", format="onnx")], artifacts=[artifact],
        now=now, validity=timedelta(days=30),
    )  # fmt: skip
    status = {
        "currentVersion": 1,
        "latestVersion": 1,
        "versions": [
            {
                "number": 1,
                "trainingRun": f"{name}-1",
                "created": format_time(now),
                "state": "Approved",
                "artifacts": [artifact.model_dump(by_alias=True, exclude_none=True)],
                "signature": signature.model_dump(by_alias=True, exclude_none=True),
            }
        ],
    }
    cluster.kubectl(
        "patch", "edgemodel", name, "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip
    return PublishedModel(uid, json.dumps({key.key_id: key.public_b64}), artifact, content)


def publish_version(
    cluster: Cluster,
    namespace: str,
    model: str,
    uid: str,
    number: int,
    key: SigningKey,
    targets: Sequence[Target],
    extra_artifacts: Sequence[ArtifactRef] = (),
) -> dict[str, Any]:
    """Signs bundles of version ``number`` (a stand-in ONNX blob plus ``extra_artifacts``)
    and returns its ``status.versions[]`` entry; the caller patches it into the status."""
    store = cluster.store()
    blob = store.put_blob(f"not really onnx, but signed and hashed like it ({number})".encode())
    artifact = ArtifactRef(
        uri=f"s3://{store.bucket}/{blob.key}", size=blob.size, sha256=blob.sha256, format="onnx"
    )
    now = datetime.now(UTC)
    signature = bundles.publish(
        store, key, namespace=namespace, model=model, uid=uid, number=number,
        targets=list(targets), artifacts=[artifact], now=now, validity=timedelta(days=30),
    )  # fmt: skip
    return {
        "number": number,
        "trainingRun": f"{model}-{number}",
        "created": format_time(now),
        "state": "Approved",
        "artifacts": [
            a.model_dump(by_alias=True, exclude_none=True) for a in (artifact, *extra_artifacts)
        ],
        "signature": signature.model_dump(by_alias=True, exclude_none=True),
    }
