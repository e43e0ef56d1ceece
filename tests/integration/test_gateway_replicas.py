"""Two fleet gateway processes (replicas A and B) against the session devcluster: what holds
across replicas without a shared store. A Device enrolled through A is served by B at once;
a signed report replayed to the other replica is refused (its sequence is stored in the
Device) and counted nowhere; the same sequence sent to both at once is accepted by exactly
one; a bootstrap token used concurrently through both enrolls exactly ``maxUses`` devices,
and an enrollment the API server refuses uses none of it. Both replicas are ready
(``/readyz``) only with their watch caches synced."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgeops.metrics import fleet
from tests.conftest import Cluster
from tests.integration.gateway_client import Device, edge_model, gateway_process, publish_model
from tests.integration.gateway_client import reason as _reason
from tests.integration.gateway_client import token as _token

pytestmark = pytest.mark.integration

MODEL = "rep-model"


@dataclass
class Replicas:
    a: httpx.Client
    b: httpx.Client
    namespace: str


@pytest.fixture(scope="module")
def replicas(cluster: Cluster) -> Iterator[Replicas]:
    ns = cluster.namespace("gwrep")
    publish_model(cluster, ns, edge_model(MODEL))
    with gateway_process(cluster) as (a, _), gateway_process(cluster) as (b, _):
        yield Replicas(a, b, ns)
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _uses(cluster: Cluster, ns: str, token: str) -> int:
    secret = cluster.get("secret", "edgeops-bootstrap-" + token.split(".")[1], "-n", ns)
    return int(base64.b64decode(secret["data"]["uses"]).decode())


def _reports_counted(http: httpx.Client, ns: str) -> float:
    """edgeops_device_telemetry_reports_total of ``ns`` in one replica's /metrics."""
    return sum(
        s.value
        for family in text_string_to_metric_families(http.get("/metrics").text)
        for s in family.samples
        if s.name == fleet.TELEMETRY_REPORTS_TOTAL and s.labels.get("namespace") == ns
    )


def test_both_replicas_are_ready(replicas: Replicas) -> None:
    for http in (replicas.a, replicas.b):
        ready = http.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ok"}


def test_a_device_enrolled_through_a_is_served_by_b_at_once(
    cluster: Cluster, replicas: Replicas
) -> None:
    ns = replicas.namespace
    token = _token(cluster, ns, "--auto-approve", "--labels", f"edgeops.dev/model={MODEL}")
    device = Device(replicas.a, ns, "roamer")
    enrolled = device.enroll(token)
    assert enrolled.status_code == 201 and enrolled.json()["enrollment"] == "Approved"
    # No wait: read-your-writes on A, and B has it from its watch or, if the request is
    # first, from a direct read.
    on_a = device.desired()
    device.http = replicas.b
    on_b = device.desired()
    assert on_a.status_code == on_b.status_code == 200, (on_a.text, on_b.text)
    assert on_a.json()["version"] == on_b.json()["version"] == 1
    assert on_a.headers["ETag"] == on_b.headers["ETag"]
    # Enrolling again with the same key (an agent that lost the answer, or a replay to the
    # other replica) changes nothing and uses no token.
    again = device.enroll(token)
    assert again.status_code == 201 and again.json()["enrollment"] == "Approved"
    assert _uses(cluster, ns, token) == 1


def test_a_report_replayed_to_the_other_replica_is_refused(
    cluster: Cluster, replicas: Replicas
) -> None:
    ns = replicas.namespace
    token = _token(cluster, ns, "--auto-approve", "--labels", f"edgeops.dev/model={MODEL}")
    device = Device(replicas.a, ns, "replayed")
    assert device.enroll(token).status_code == 201

    def captured(path: str, document: dict[str, object]) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(document).encode()
        return body, {**device.headers("POST", path, body), "Content-Type": "application/json"}

    # A status report: accepted by A, the same bytes refused by B (whose nonce cache never
    # saw them) because the sequence is stored in the Device.
    path = f"{device.path}/status"
    body, headers = captured(path, {"sequence": 5, "health": "Healthy", "model": MODEL})
    first = replicas.a.post(path, content=body, headers=headers)
    assert first.status_code == 200, first.text
    replay = replicas.b.post(path, content=body, headers=headers)
    assert replay.status_code == 409 and _reason(replay) == "StaleSequence", replay.text
    assert replay.json()["message"] == "sequence must exceed 5"
    again = replicas.a.post(path, content=body, headers=headers)  # A's nonce cache
    assert again.status_code == 401 and _reason(again) == "Replayed"
    assert cluster.get("device", "replayed", "-n", ns)["status"]["sequence"] == 5

    # Telemetry: counted by B once, refused and not counted by A.
    path = f"{device.path}/telemetry"
    report = {"sequence": 6, "model": MODEL, "version": 1, "intervalSeconds": 60,
              "inferences": 3}  # fmt: skip
    body, headers = captured(path, report)
    before = _reports_counted(replicas.a, ns), _reports_counted(replicas.b, ns)
    counted = replicas.b.post(path, content=body, headers=headers)
    assert counted.status_code == 200, counted.text
    replay = replicas.a.post(path, content=body, headers=headers)
    assert replay.status_code == 409 and _reason(replay) == "StaleSequence", replay.text
    after = _reports_counted(replicas.a, ns), _reports_counted(replicas.b, ns)
    assert (after[0] - before[0], after[1] - before[1]) == (0, 1)


def test_one_sequence_sent_to_both_replicas_at_once_is_accepted_once(
    cluster: Cluster, replicas: Replicas
) -> None:
    """Two differently signed requests (two nonces) with the same sequence race on the two
    replicas: the compare-and-swap on the Device lets exactly one through, every time."""
    ns = replicas.namespace
    token = _token(cluster, ns, "--auto-approve", "--labels", f"edgeops.dev/model={MODEL}")
    device = Device(replicas.a, ns, "racer")
    assert device.enroll(token).status_code == 201
    path = f"{device.path}/status"

    def send(job: tuple[httpx.Client, int]) -> tuple[int, str]:
        http, sequence = job
        body = json.dumps({"sequence": sequence, "health": "Healthy"}).encode()
        headers = {**device.headers("POST", path, body), "Content-Type": "application/json"}
        answer = http.post(path, content=body, headers=headers)
        return answer.status_code, answer.json().get("reason", "")

    rounds = 10
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = [
            Counter(pool.map(send, [(replicas.a, n), (replicas.b, n)]))
            for n in range(1, rounds + 1)
        ]
    assert all(o == {(200, ""): 1, (409, "StaleSequence"): 1} for o in outcomes), outcomes
    assert cluster.get("device", "racer", "-n", ns)["status"]["sequence"] == rounds


def test_a_token_used_through_both_replicas_enrolls_exactly_max_uses(
    cluster: Cluster, replicas: Replicas
) -> None:
    ns = replicas.namespace
    uses, tries = 5, 8
    token = _token(cluster, ns, "--max-uses", str(uses))

    def enroll(i: int) -> tuple[int, str]:
        # A connection per device, alternating replicas.
        base = (replicas.a if i % 2 else replicas.b).base_url
        with httpx.Client(base_url=str(base), timeout=60) as http:
            answer = Device(http, ns, f"crowd-{i}").enroll(token)
            return answer.status_code, answer.json().get("reason", "")

    with ThreadPoolExecutor(max_workers=tries) as pool:
        answers = list(pool.map(enroll, range(tries)))
    assert Counter(answers) == {(201, ""): uses, (401, "TokenUsedUp"): tries - uses}, answers
    devices = cluster.get("devices", "-n", ns)["items"]
    assert len([d for d in devices if d["metadata"]["name"].startswith("crowd-")]) == uses
    assert _uses(cluster, ns, token) == uses


def test_an_enrollment_the_api_server_refuses_uses_no_token(
    cluster: Cluster, replicas: Replicas
) -> None:
    ns = replicas.namespace
    token = _token(cluster, ns, "--max-uses", "1")
    # A label value Kubernetes refuses (spaces, over 63 characters) passes the wire model
    # and the token check; the API server refuses the Device.
    refused = Device(replicas.a, ns, "badlabel").enroll(token, labels={"site": "x y" * 30})
    assert refused.status_code == 422 and _reason(refused) == "InvalidRequest", refused.text
    assert "metadata.labels" in refused.json()["message"]
    assert _uses(cluster, ns, token) == 0
    assert Device(replicas.b, ns, "goodlabel").enroll(token).status_code == 201
    assert _uses(cluster, ns, token) == 1


def test_a_single_replica_remembers_sequences_without_writing_each_report(
    cluster: Cluster, replicas: Replicas
) -> None:
    """EDGEOPS_GATEWAY_REPLAY_SCOPE=replica: the replica checks sequences in memory and
    writes a Device only when a report changes it (or lastSeen is due), yet a replay or an
    old sequence is still refused."""
    ns = replicas.namespace
    with gateway_process(cluster, EDGEOPS_GATEWAY_REPLAY_SCOPE="replica") as (http, _):
        token = _token(cluster, ns, "--auto-approve", "--labels", f"edgeops.dev/model={MODEL}")
        device = Device(http, ns, "single")
        assert device.enroll(token).status_code == 201
        path = f"{device.path}/status"

        def send(
            sequence: int, health: str = "Healthy"
        ) -> tuple[httpx.Response, bytes, dict[str, str]]:
            # Status and telemetry reports take their sequence the same way
            # (Gateway.take_sequence); a repeated health changes nothing.
            body = json.dumps({"sequence": sequence, "health": health}).encode()
            headers = {**device.headers("POST", path, body), "Content-Type": "application/json"}
            return http.post(path, content=body, headers=headers), body, headers

        def stored() -> dict[str, Any]:
            return cluster.get("device", "single", "-n", ns)

        first, _, _ = send(1)
        assert first.status_code == 200 and first.json()["written"] == ["health"], first.text
        assert stored()["status"]["sequence"] == 1  # a change: written with its sequence
        version = stored()["metadata"]["resourceVersion"]
        for sequence in (2, 3, 4):
            assert send(sequence)[0].status_code == 200
        again, body, headers = send(5)
        assert again.status_code == 200 and again.json()["written"] == []
        # Nothing changed and lastSeen (60 s) is not due: no write.
        assert stored()["metadata"]["resourceVersion"] == version
        assert http.post(path, content=body, headers=headers).json()["reason"] == "Replayed"
        stale = send(4)[0]
        assert stale.status_code == 409 and stale.json()["message"] == "sequence must exceed 5"
        # A report that changes the status is written, with its sequence.
        changed = send(6, "Degraded")[0]
        assert changed.status_code == 200 and changed.json()["written"] == ["health"]
        written = stored()["status"]
        assert (written["sequence"], written["health"]) == (6, "Degraded")
