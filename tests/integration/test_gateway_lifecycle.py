"""The fleet gateway as a local process against the session devcluster, beyond the first
enrollment: key rotation through ``nextPublicKey``, a bootstrap token's use count under
concurrent enrollments, the per-address budget of failed enrollments, and update outcomes
counted at ``/metrics``."""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client.parser import text_string_to_metric_families

from edgeops.metrics import fleet
from tests.conftest import Cluster
from tests.integration.gateway_client import (
    Device,
    edge_model,
    publish_model,
    running_gateway,
)
from tests.integration.gateway_client import reason as _reason
from tests.integration.gateway_client import token as _token

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(cluster: Cluster) -> Iterator[httpx.Client]:
    with running_gateway(cluster) as http:
        yield http


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> Iterator[str]:
    """A namespace with EdgeModel life-model whose version 1 is signed and current."""
    name = cluster.namespace("gwlife")
    publish_model(cluster, name, edge_model("life-model"))
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _enrolled(cluster: Cluster, gateway: httpx.Client, ns: str, name: str) -> Device:
    """An approved device enrolled with an auto-approving token for life-model."""
    token = _token(cluster, ns, "--auto-approve", "--labels", "edgeops.dev/model=life-model")
    device = Device(gateway, ns, name)
    enrolled = device.enroll(token)
    assert enrolled.status_code == 201, enrolled.text
    return device


def test_a_rotated_key_is_promoted_and_the_old_one_refused(
    cluster: Cluster, gateway: httpx.Client, ns: str
) -> None:
    device = _enrolled(cluster, gateway, ns, "rotating")
    old_key, new_key = device.key, Ed25519PrivateKey.generate()
    rotated = Device(gateway, ns, "rotating")
    rotated.key = new_key
    before = cluster.get("device", "rotating", "-n", ns)["spec"]["identity"]
    assert before["publicKey"] == device.public_b64

    # Before the rotation is announced, the new key is nobody's.
    assert _reason(rotated.desired()) == "BadSignature"
    cluster.kubectl(
        "patch", "device", "rotating", "-n", ns, "--type=merge",
        "-p", json.dumps({"spec": {"identity": {"nextPublicKey": rotated.public_b64}}}),
    )  # fmt: skip
    # Announced: the old key still works (the device may not have switched yet)...
    assert device.desired().status_code == 200
    assert cluster.get("device", "rotating", "-n", ns)["spec"]["identity"]["nextPublicKey"]
    # ...and the first request signed with the new one completes the rotation.
    first = rotated.desired()
    assert first.status_code == 200, first.text
    identity = cluster.get("device", "rotating", "-n", ns)["spec"]["identity"]
    raw = new_key.public_key().public_bytes_raw()
    assert identity == {
        "publicKey": rotated.public_b64,
        "fingerprint": hashlib.sha256(raw).hexdigest(),
    }
    report = {"sequence": 1, "health": "Healthy"}
    assert rotated.send("POST", f"{rotated.path}/status", report).status_code == 200
    device.key = old_key
    refused = device.send("POST", f"{device.path}/status", {**report, "sequence": 2})
    assert refused.status_code == 401 and _reason(refused) == "BadSignature"


def test_a_token_enrolls_exactly_max_uses_devices_under_concurrency(
    cluster: Cluster, gateway: httpx.Client, ns: str
) -> None:
    uses = 4
    token = _token(cluster, ns, "--max-uses", str(uses))

    def enroll(i: int) -> tuple[int, str]:
        # A client per thread: each enrollment is its own connection, as devices are.
        with httpx.Client(base_url=str(gateway.base_url), timeout=60) as http:
            answer = Device(http, ns, f"crowd-{i}").enroll(token)
            return answer.status_code, answer.json().get("reason", "")

    with ThreadPoolExecutor(max_workers=2 * uses) as pool:
        answers = list(pool.map(enroll, range(2 * uses)))
    assert Counter(answers) == {(201, ""): uses, (401, "TokenUsedUp"): uses}, answers
    devices = cluster.get("devices", "-n", ns)["items"]
    assert len([d for d in devices if d["metadata"]["name"].startswith("crowd-")]) == uses
    secret = cluster.get("secret", "edgeops-bootstrap-" + token.split(".")[1], "-n", ns)
    assert base64.b64decode(secret["data"]["uses"]).decode() == str(uses)


def test_failed_enrollments_from_one_address_are_rate_limited(cluster: Cluster, ns: str) -> None:
    # Made first: the bucket refills a token every 20 s, which a CLI call under load can take.
    good = _token(cluster, ns)
    with running_gateway(cluster, EDGEOPS_GATEWAY_ENROLLMENTS_PER_MINUTE="3") as http:
        guesser = Device(http, ns, "guesser")
        bad = "ebt.000000000000." + "x" * 43
        for _ in range(3):
            refused = guesser.enroll(bad)
            assert refused.status_code == 401 and _reason(refused) == "InvalidToken"
        limited = guesser.enroll(bad)
        assert limited.status_code == 429 and _reason(limited) == "RateLimited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 21
        # Even a good token waits: the address is out of budget, not the token.
        assert Device(http, ns, "patient").enroll(good).status_code == 429
        # So does a request for a Device the gateway does not know (an API read each).
        assert Device(http, ns, "nobody").desired().status_code == 429


def test_requests_for_unknown_devices_are_charged_to_the_address(cluster: Cluster, ns: str) -> None:
    with running_gateway(cluster, EDGEOPS_GATEWAY_ENROLLMENTS_PER_MINUTE="2") as http:
        for name in ("ghost-1", "ghost-2"):
            unknown = Device(http, ns, name).desired()
            assert unknown.status_code == 401 and _reason(unknown) == "UnknownDevice"
        limited = Device(http, ns, "ghost-3").desired()
        assert limited.status_code == 429 and _reason(limited) == "RateLimited"


def _outcomes(gateway: httpx.Client, ns: str) -> dict[tuple[str, str, str], float]:
    text = gateway.get("/metrics").text
    return {
        (s.labels["model"], s.labels["version"], s.labels["outcome"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == fleet.UPDATE_OUTCOMES_TOTAL and s.labels["namespace"] == ns
    }


def test_update_outcomes_are_counted_once_per_terminal_transition(
    cluster: Cluster, gateway: httpx.Client, ns: str
) -> None:
    device = _enrolled(cluster, gateway, ns, "updating")
    path = f"{device.path}/status"
    update = {"targetVersion": 1, "phase": "Installing", "attempt": 1}
    sequence = iter(range(1, 100))

    def report(**fields: object) -> None:
        body = {"sequence": next(sequence), "model": "life-model", "update": fields}
        answer = device.send("POST", path, body)
        assert answer.status_code == 200, answer.text

    report(**update)
    assert _outcomes(gateway, ns) == {}
    report(**{**update, "phase": "RolledBack", "reasonCode": "HealthCheckFailed"})
    report(**{**update, "phase": "RolledBack", "reasonCode": "HealthCheckFailed"})  # again
    report(**{**update, "phase": "RolledBack", "message": "said twice"})  # same outcome
    report(**{**update, "attempt": 2, "phase": "Committed"})
    report(**{"targetVersion": 7, "phase": "Failed", "reasonCode": "HashMismatch"})
    assert _outcomes(gateway, ns) == {
        ("life-model", "1", "RolledBack"): 1,
        ("life-model", "1", "Committed"): 1,
        ("life-model", "other", "Failed"): 1,  # version 7 is no version of life-model
    }
