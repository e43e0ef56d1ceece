"""Shared by the device agent's and the fleet simulator's integration tests: real tiny
ONNX classifiers over the BasicMotions features, versions signed with the *operator's*
signing key (so the agent trusts exactly what the operator publishes in ConfigMap
``edgeops-signing``), agents run in a thread against the devcluster's gateway pod, a watch
that records every Device status the gateway wrote, and Prometheus queries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from onnx import TensorProto, helper, numpy_helper
from urllib3.exceptions import ProtocolError

from edgeops.api.common import ArtifactRef, format_time
from edgeops.api.edgemodel import Target
from edgeops.controllers import bundles
from edgeops.devcluster.cluster import SYSTEM_NAMESPACE
from edgeops.device.agent import Agent, AgentConfig
from edgeops.device.runtime import InputRow
from edgeops.policy.serving import PUBLIC_KEYS_KEY, SIGNING_CONFIG_MAP
from edgeops.signing import SigningKey
from tests.conftest import Cluster, wait_for

#: The BasicMotions summary features (edgeops.datasets.builtin), what the models consume.
CHANNELS = ("acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z")
FEATURES = [f"{c}_{s}" for c in CHANNELS for s in ("mean", "std", "min", "max")]
#: The chart's gateway.cacheSeconds (the devcluster runs the gateway pod from the chart).
GATEWAY_CACHE_SECONDS = 2.0
CLASSES = ["Badminton", "Running", "Standing", "Walking"]


def motion_rows() -> list[InputRow]:
    """The 80 BasicMotions recordings as agent input rows (features, vector, label)."""
    from edgeops.datasets.builtin import load

    rows = []
    for row in load("basic-motions").rows():
        features = {name: float(row[name]) for name in FEATURES}
        vector = np.asarray([features[n] for n in FEATURES], dtype=np.float32)
        rows.append(InputRow(vector=vector, features=features, label=str(row["activity"])))
    return rows


def cycle(rows: list[InputRow]) -> Iterator[InputRow]:
    """``rows`` forever."""
    while True:
        yield from rows


def onnx_classifier(seed: int = 0, *, hidden: int = 16, scale: float = 0.01) -> bytes:
    """A real two-layer softmax classifier ``[N, 24] → [N, 4]`` built with the onnx helper
    API. Small weights (``scale``) keep its confidence near 1/4 (so a sampling policy's
    ``confidenceBelow`` picks its rows); a large ``hidden`` makes a large artifact (slow
    to download, load and hash: room to kill an agent in each phase)."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((len(FEATURES), hidden)) * scale).astype(np.float32)
    w2 = (rng.standard_normal((hidden, len(CLASSES))) * scale).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "W1"], ["h"]),
            helper.make_node("Relu", ["h"], ["hr"]),
            helper.make_node("MatMul", ["hr", "W2"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        ],
        "motion",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, len(FEATURES)])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [None, len(CLASSES)])],
        [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def operator_signing_key(cluster: Cluster) -> tuple[SigningKey, dict[str, str]]:
    """The operator's signing key (its Secret, created once as the operator would) and the
    public keys it publishes in ConfigMap ``edgeops-signing`` of its namespace: what an
    agent is configured to trust. Uses the operator's own code, with its settings."""
    from edgeops.controllers.signing_key import publish_public_key

    with cluster.dev.environment():
        key = publish_public_key()
    published = cluster.get("configmap", SIGNING_CONFIG_MAP, "-n", SYSTEM_NAMESPACE)
    trusted = json.loads(published["data"][PUBLIC_KEYS_KEY])
    assert trusted.get(key.key_id) == key.public_b64
    return key, {str(k): str(v) for k, v in trusted.items()}


def edge_model(name: str, **spec: Any) -> dict[str, Any]:
    """An EdgeModel with a linux ``pi`` (onnx) target that never trains on its own."""
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


@dataclass
class Line:
    """One EdgeModel and the versions published for it."""

    cluster: Cluster
    namespace: str
    name: str
    uid: str
    key: SigningKey
    versions: list[dict[str, Any]] = field(default_factory=list)
    artifacts: dict[int, ArtifactRef] = field(default_factory=dict)
    _current: int | None = None

    @classmethod
    def apply(cls, cluster: Cluster, ns: str, model: dict[str, Any], key: SigningKey) -> Line:
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(model))
        name = model["metadata"]["name"]
        uid = cluster.get("edgemodel", name, "-n", ns)["metadata"]["uid"]
        return cls(cluster, ns, name, uid, key)

    def publish(
        self,
        number: int,
        content: bytes,
        *,
        key: SigningKey | None = None,
        served: bytes | None = None,
        after_sign: Callable[[bytes], bytes] | None = None,
        current: bool = True,
        dataset_version: str | None = None,
    ) -> ArtifactRef:
        """Signs version ``number`` of ``content`` (the operator's bundle code, ``key`` or
        the operator's key), records it in status and makes it current (unless
        ``current`` is false: a version a FleetRollout is to move the fleet to). Tampering:
        ``served`` is stored at the key the manifest points to instead of ``content``
        (S3 holding other bytes than were signed); ``after_sign`` rewrites the stored
        signed manifest."""
        store = self.cluster.store()
        blob = store.put_blob(content)
        artifact = ArtifactRef(
            uri=f"s3://{store.bucket}/{blob.key}", size=blob.size, sha256=blob.sha256,
            format="onnx",
        )  # fmt: skip
        now = datetime.now(UTC)
        signature = bundles.publish(
            store, key or self.key, namespace=self.namespace, model=self.name, uid=self.uid,
            number=number, targets=[Target(name="pi", target_type="linux", format="onnx")],
            artifacts=[artifact], now=now, validity=timedelta(days=30),
        )  # fmt: skip
        if served is not None:
            # The object at the signed artifact's key, overwritten behind the operator's back.
            store.put_bytes(blob.key, served)
        if after_sign is not None:
            prefix = bundles.version_prefix(self.namespace, self.name, self.uid, number)
            manifest_key = f"{prefix}/bundles/pi.json"
            store.put_bytes(manifest_key, after_sign(store.get_bytes(manifest_key)))
        self.versions.append(
            {
                "number": number,
                "trainingRun": f"{self.name}-{number}",
                "created": format_time(now),
                "state": "Approved",
                "artifacts": [artifact.model_dump(by_alias=True, exclude_none=True)],
                "signature": signature.model_dump(by_alias=True, exclude_none=True),
                **({"datasetVersion": dataset_version} if dataset_version else {}),
            }
        )
        self.artifacts[number] = artifact
        if current:
            self.set_current(number)
        else:
            self._write_status(self._current)
        return artifact

    def set_current(self, number: int) -> None:
        self._write_status(number)

    def _write_status(self, number: int | None) -> None:
        self._current = number
        status = {
            "currentVersion": number,
            "latestVersion": max(v["number"] for v in self.versions),
            "versions": self.versions,
        }
        self.cluster.kubectl(
            "patch", "edgemodel", self.name, "-n", self.namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": status}),
        )  # fmt: skip


class AgentThread:
    """A reference :class:`Agent` looping in its own thread and event loop against the
    gateway pod, until :meth:`stop`."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.agent.run(self._stop))
        except BaseException as exc:  # surfaced by stop(); the test fails on it
            self.error = exc
        finally:
            self._loop.close()

    def start(self) -> AgentThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop already ended
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert self.error is None, f"agent {self.agent.config.name} failed: {self.error!r}"


def agent_config(
    cluster: Cluster,
    ns: str,
    name: str,
    state_dir: Path,
    trusted: dict[str, str],
    token: str,
) -> AgentConfig:
    return AgentConfig(
        gateway=cluster.endpoints["gateway"], namespace=ns, name=name, state_dir=state_dir,
        target_type="linux", trusted_keys=trusted, token=token, classes=CLASSES,
        labels={"site": "plant-a"}, rows_per_cycle=20,
    )  # fmt: skip


def enroll(cluster: Cluster, config: AgentConfig, interval: int = 5) -> None:
    """Enrolls the device of ``config`` (its key in its state directory) the agent's own
    way, then sets its Device's ``spec.reportIntervalSeconds``: an agent started
    afterwards from that state directory cycles at ``interval`` from its first poll (a
    device enrolled by its running agent would first wait the default 60 s)."""

    async def main() -> None:
        agent = Agent(config)
        try:
            await agent.enroll()
        finally:
            await agent.client.aclose()

    asyncio.run(main())
    set_report_interval(cluster, config.namespace, config.name, interval)
    # The gateway caches Devices for EDGEOPS_GATEWAY_CACHE_SECONDS (2 s in the chart): a
    # poll sooner would still read the default interval, and wait that long.
    time.sleep(GATEWAY_CACHE_SECONDS + 0.5)


def device_status(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return dict(cluster.get("device", name, "-n", ns).get("status") or {})


def set_report_interval(cluster: Cluster, ns: str, name: str, seconds: int = 5) -> None:
    """The Device's ``spec.reportIntervalSeconds`` (the agent's cycle), once it exists."""
    wait_for(lambda: cluster.get("device", name, "-n", ns), 60, f"Device {name}")
    cluster.kubectl(
        "patch", "device", name, "-n", ns, "--type=merge",
        "-p", json.dumps({"spec": {"reportIntervalSeconds": seconds}}),
    )  # fmt: skip


class DeviceWatch:
    """Records every ``status.update`` the API server stored for the Devices of a namespace
    (a watch sees each write, so a terminal report followed at once by the next attempt's
    phases is still seen)."""

    def __init__(self, cluster: Cluster, ns: str) -> None:
        self.updates: list[tuple[str, dict[str, Any]]] = []
        self._api = client.CustomObjectsApi(cluster.api_client())
        self._ns = ns
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def _main(self) -> None:
        while not self._stopped.is_set():
            try:
                self._follow()
            except (ApiException, ProtocolError):
                # A dropped or expired watch: list and watch again (the list carries the
                # current state, so at worst an update overwritten meanwhile is missed).
                self._watch = watch.Watch()
                time.sleep(0.2)

    def _follow(self) -> None:
        stream = self._watch.stream(
            self._api.list_namespaced_custom_object, "edgeops.dev", "v1alpha1", self._ns,
            "devices", timeout_seconds=600,
        )  # fmt: skip
        for event in stream:
            obj = event["object"]
            update = (obj.get("status") or {}).get("update")
            if update:
                with self._lock:
                    name = obj["metadata"]["name"]
                    if not self.updates or self.updates[-1] != (name, update):
                        self.updates.append((name, dict(update)))

    def __enter__(self) -> DeviceWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._watch.stop()

    def seen(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [u for n, u in self.updates if n == name]


def prometheus_value(cluster: Cluster, query: str) -> float | None:
    """The first sample's value of an instant PromQL query at the devcluster's Prometheus,
    or None when the result is empty."""
    answer = httpx.get(
        cluster.endpoints["prometheus"] + "/api/v1/query", params={"query": query}, timeout=10
    ).json()
    assert answer["status"] == "success", answer
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None
