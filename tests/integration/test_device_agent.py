"""The reference device agent against the session devcluster: the gateway pod from the Helm
chart, Devices in the API server, versions signed with the operator's key in S3, real ONNX
Runtime, telemetry scraped by Prometheus, samples collected into a Dataset version.

* a device enrolls with an auto-approving bootstrap token, installs the current version,
  its Device status shows slots, version and health, its inferences are in Prometheus and
  its low-confidence rows become a new version of the inbox Dataset;
* a tampered artifact, a tampered manifest and a foreign signature are never installed:
  ``Failed`` with the reason in Device status, the committed slot keeps running;
* a version that fails the health check on some devices is rolled back on exactly those;
* an agent *process* killed with SIGKILL while downloading, verifying/installing and
  health-checking boots its committed slot, reports the interrupted update and goes on to
  commit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgeops.device.agent import Agent
from edgeops.device.health import HealthCheckError, check_artifact
from edgeops.device.slots import SlotStore
from edgeops.signing import SigningKey, generate_key
from tests.conftest import Cluster, wait_for
from tests.integration.device_fleet import (
    CLASSES,
    FEATURES,
    AgentThread,
    DeviceWatch,
    Line,
    agent_config,
    cycle,
    device_status,
    edge_model,
    enroll,
    motion_rows,
    onnx_classifier,
    operator_signing_key,
    prometheus_value,
)
from tests.integration.gateway_client import token

pytestmark = pytest.mark.integration

INBOX = "field"


@dataclass(frozen=True)
class Env:
    cluster: Cluster
    ns: str
    key: SigningKey
    trusted: dict[str, str]
    home: Path


@pytest.fixture(scope="module")
def env(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    ns = cluster.namespace("agent")
    key, trusted = operator_signing_key(cluster)
    yield Env(cluster, ns, key, trusted, tmp_path_factory.mktemp("agents"))
    # EDGEOPS_TEST_KEEP_NAMESPACES=1 keeps the Devices and models for a look afterwards.
    if os.environ.get("EDGEOPS_TEST_KEEP_NAMESPACES") != "1":
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _enroll_token(env: Env, model: str, uses: int = 1) -> str:
    labels = f"edgeops.dev/model={model},site=plant-a,region=eu"
    return token(env.cluster, env.ns, "--auto-approve", "--max-uses", str(uses), "--labels", labels)


def _start(env: Env, name: str, grant: str, **kw: Any) -> AgentThread:
    config = agent_config(env.cluster, env.ns, name, env.home / name, env.trusted, grant)
    enroll(env.cluster, config)
    return AgentThread(Agent(config, cycle(motion_rows()), **kw)).start()


def _update(env: Env, name: str) -> dict[str, Any]:
    return dict(device_status(env.cluster, env.ns, name).get("update") or {})


def _terminal(env: Env, name: str, version: int) -> dict[str, Any] | None:
    update = _update(env, name)
    done = update.get("targetVersion") == version and update.get("phase") in (
        "Committed", "RolledBack", "Failed",
    )  # fmt: skip
    return update if done else None


def test_a_device_enrolls_installs_reports_telemetry_and_uploads_samples(env: Env) -> None:
    cluster, ns = env.cluster, env.ns
    dataset = {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": INBOX},
        "spec": {
            "sources": [{"inbox": {}}],
            "format": "jsonl",
            "schema": {
                "features": [{"name": f, "type": "float"} for f in FEATURES],
                "label": "activity",
            },
            "collection": {"onNewObjects": True},
            "governance": {"classification": "internal", "retentionDays": 30},
        },
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(dataset))
    # Small weights: confidences near 1/4, below the policy's threshold.
    sampling = {"datasetRef": {"name": INBOX}, "confidenceBelow": 0.5, "maxRowsPerHour": 40}
    line = Line.apply(cluster, ns, edge_model("motion-classifier", sampling=sampling), env.key)
    artifact = line.publish(1, onnx_classifier(seed=1))

    agent = _start(env, "pi-1", _enroll_token(env, line.name))
    try:
        update = wait_for(lambda: _terminal(env, "pi-1", 1), 90, "v1's outcome", interval=1)
        assert update["phase"] == "Committed", update
        status = wait_for(
            lambda: (s := device_status(cluster, ns, "pi-1")).get("health") == "Healthy" and s,
            60, "health Healthy",
        )  # fmt: skip
        assert status["enrollment"] == "Approved"
        assert (status["model"], status["version"]) == (line.name, 1)
        slots = status["slots"]
        assert slots["a"]["version"] == 1 and slots["a"]["sha256"] == artifact.sha256
        assert slots["active"] == "A" and "b" not in slots

        query = (
            f'sum(edgeops_device_inferences_total{{namespace="{ns}",'
            f'model="{line.name}",version="1"}})'
        )
        inferences = wait_for(
            lambda: prometheus_value(cluster, query), 90, "inferences in Prometheus", interval=2
        )
        assert inferences >= 20
        classes = prometheus_value(
            cluster,
            f'count(edgeops_device_predictions_total{{namespace="{ns}",model="{line.name}"}})',
        )
        assert classes is not None and 1 <= classes <= len(CLASSES)

        def collected() -> dict[str, Any] | None:
            found = cluster.get("dataset", INBOX, "-n", ns).get("status") or {}
            versions = found.get("versions") or []
            return versions[-1] if versions and versions[-1].get("sampleCount") else None

        version = wait_for(collected, 120, "a Dataset version of uploaded samples", interval=2)
        assert version.get("rejectedCount", 0) == 0
        assert set(version["classBalance"]) <= set(CLASSES)
    finally:
        agent.stop()


def _flip_byte(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def test_tampered_artifacts_manifests_and_foreign_signatures_are_never_installed(
    env: Env,
) -> None:
    cluster, ns = env.cluster, env.ns
    line = Line.apply(cluster, ns, edge_model("guarded"), env.key)
    good = line.publish(1, onnx_classifier(seed=2))
    agent = _start(env, "guard-1", _enroll_token(env, line.name))
    try:
        update = wait_for(lambda: _terminal(env, "guard-1", 1), 90, "v1's outcome", interval=1)
        assert update["phase"] == "Committed", update

        def manifest_byte(envelope: bytes) -> bytes:
            # One byte of the signed document: the artifact's size, 1 more.
            document = json.loads(envelope)
            document["manifest"]["artifacts"][0]["size"] += 1
            return json.dumps(document).encode()

        # A model of its own (a random seed): its stored blob is the one made corrupt.
        model = onnx_classifier(seed=int.from_bytes(os.urandom(4), "big"))
        cases = [
            # S3 serves the signed artifact's key with one byte changed.
            (2, "HashMismatch", {"served": _flip_byte(model, len(model) // 2)}),
            (3, "SignatureInvalid", {"after_sign": manifest_byte}),
            (4, "SignatureInvalid", {"key": generate_key()}),
        ]
        for number, reason, tamper in cases:
            line.publish(number, onnx_classifier(seed=10 + number) if number > 2 else model,
                         **tamper)  # fmt: skip
            update = wait_for(
                lambda n=number: _terminal(env, "guard-1", n), 60, f"v{number}'s outcome",
                interval=1,
            )  # fmt: skip
            assert (update["phase"], update.get("reasonCode")) == ("Failed", reason), update
            status = device_status(cluster, ns, "guard-1")
            assert status["version"] == 1 and status["health"] == "Healthy"
            assert status["slots"]["active"] == "A"
            assert status["slots"]["a"]["sha256"] == good.sha256
            assert "b" not in status["slots"], "a refused artifact stays out of the slots"
        journal = SlotStore(env.home / "guard-1").load()
        assert journal.committed == "A" and journal.committed_content() is not None
        assert journal.committed_content().version == 1  # type: ignore[union-attr]
        assert not any((env.home / "guard-1" / "slots" / "B").iterdir())
    finally:
        agent.stop()


def test_a_version_failing_the_health_check_on_some_devices_rolls_back_on_exactly_those(
    env: Env,
) -> None:
    cluster, ns = env.cluster, env.ns
    line = Line.apply(cluster, ns, edge_model("canary"), env.key)
    line.publish(1, onnx_classifier(seed=20))
    v2 = onnx_classifier(seed=21)

    def fails_on_v2(data: bytes, fmt: str) -> object:
        # These devices' hardware cannot run v2 (the hook stands in for, say, a missing op).
        if data == v2:
            raise HealthCheckError("v2 needs an operator this device's runtime lacks")
        return check_artifact(data, fmt, expected_classes=len(CLASSES))

    grant = _enroll_token(env, line.name, uses=4)
    names = ["can-1", "can-2", "can-3", "can-4"]
    failing = {"can-2", "can-4"}
    agents = [
        _start(env, n, grant, health_check=fails_on_v2 if n in failing else None) for n in names
    ]
    try:
        for n in names:
            wait_for(lambda n=n: _terminal(env, n, 1), 90, f"{n} on v1", interval=1)
        line.publish(2, v2)
        outcomes = {
            n: wait_for(lambda n=n: _terminal(env, n, 2), 60, f"{n}'s v2 outcome", interval=1)
            for n in names
        }
        rolled_back = {n for n, u in outcomes.items() if u["phase"] == "RolledBack"}
        assert rolled_back == failing
        for n in failing:
            assert outcomes[n]["reasonCode"] == "HealthCheckFailed"
            assert "operator this device's runtime lacks" in outcomes[n]["message"]
        for n in names:
            status = device_status(cluster, ns, n)
            assert status["version"] == (1 if n in failing else 2), (n, status)
            active = status["slots"]["active"].lower()
            assert status["slots"][active]["version"] == status["version"]
    finally:
        for agent in agents:
            agent.stop()


def _agent_process(env: Env, name: str, grant: str, log: Path) -> subprocess.Popen[bytes]:
    """``python -m edgeops.device`` (the device-agent image's entrypoint) as a process."""
    argv = [
        sys.executable, "-m", "edgeops.device", "--gateway", env.cluster.endpoints["gateway"],
        "--namespace", env.ns, "--name", name, "--token", grant,
        "--state-dir", str(env.home / name), "--trust-key", json.dumps(env.trusted),
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())


def _in_flight_phase(state: Path) -> str | None:
    try:
        flight = json.loads(state.read_text()).get("in_flight")
    except (OSError, ValueError):
        return None  # between the atomic rename's steps: try again
    return str(flight["phase"]) if flight else None


def test_an_agent_killed_during_an_update_boots_its_committed_slot_and_reports_it(
    env: Env,
) -> None:
    cluster, ns, name = env.cluster, env.ns, "sturdy-1"
    line = Line.apply(cluster, ns, edge_model("sturdy"), env.key)
    # ~20 MB models: each phase lasts long enough to be caught from the journal.
    line.publish(1, onnx_classifier(seed=30, hidden=200_000))
    grant = _enroll_token(env, line.name)
    log = env.home / f"{name}.log"
    state = env.home / name / "state.json"
    enroll(cluster, agent_config(cluster, ns, name, env.home / name, env.trusted, grant))
    proc = _agent_process(env, name, grant, log)
    interrupted: list[str] = []
    try:
        with DeviceWatch(cluster, ns) as watch:
            update = wait_for(lambda: _terminal(env, name, 1), 120, "v1's outcome", interval=1)
            assert update["phase"] == "Committed", update
            for number, phase in enumerate(("Downloading", "Installing", "HealthCheck"), 2):
                line.publish(number, onnx_classifier(seed=30 + number, hidden=200_000))
                order = ["Downloading", "Verifying", "Installing", "HealthCheck"]
                deadline = time.monotonic() + 60
                hit = None
                while hit is None and time.monotonic() < deadline:
                    seen = _in_flight_phase(state)
                    if seen is not None and order.index(seen) >= order.index(phase):
                        os.kill(proc.pid, signal.SIGKILL)
                        proc.wait(10)
                        hit = seen
                    time.sleep(0.001)
                assert hit is not None, f"v{number} never reached {phase}; see {log}"
                # What the journal says the agent was doing when it died.
                killed_in = _in_flight_phase(state)
                assert killed_in is not None
                interrupted.append(killed_in)
                proc = _agent_process(env, name, grant, log)
                update = wait_for(
                    lambda n=number: _terminal(env, name, n) if
                    _update(env, name).get("phase") == "Committed" else None,
                    120, f"v{number} committed after the restart", interval=1,
                )  # fmt: skip
                # The interrupted attempt's outcome reached the Device before the retry.
                reports = [u for u in watch.seen(name) if u["targetVersion"] == number]
                terminal = [u for u in reports if u.get("reasonCode") == "Interrupted"]
                expected = "RolledBack" if killed_in == "HealthCheck" else "Failed"
                assert [(u["phase"], u["attempt"]) for u in terminal] == [(expected, 1)], reports
                assert update["attempt"] == 2
                status = device_status(cluster, ns, name)
                assert status["version"] == number
                journal = SlotStore(env.home / name).load()
                assert journal.in_flight is None and not journal.pending_reports
                content = journal.committed_content()
                assert content is not None and content.version == number
                assert journal.active == journal.committed
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert interrupted[0] == "Downloading" and interrupted[-1] == "HealthCheck", interrupted
