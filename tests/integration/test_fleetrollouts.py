"""The FleetRollout controller against the session devcluster and a real gateway process.

Devices are created directly (approved, with a key so they can ask the gateway what to
run) and report through the status subresource as the gateway would write it. Each test
has its own namespace, model and fleet, since the newest rollout of a model governs its
devices:

- steps 10/50/100 without analysis: devices install what the gateway tells them; the
  rollout reaches Succeeded with each step's counts in status;
- failures above the threshold: RolledBack with the counts, and the gateway gives a device
  that had moved the stable version again;
- an analysis query with no data behind it (the devcluster's real Prometheus):
  Inconclusive, then Paused (Inconclusive), never rolled back;
- Prometheus stopped while a step is analysed: Error measurements (never a verdict), then
  Paused (AnalysisError) past errorLimit, and measuring goes on once it is back;
- the operator restarted while a step waits for approval: same step, same cohort, nothing
  announced twice, and it goes on after approval.

The 200-device acceptance with the fleet simulator is tests/integration/
test_fleetrollout_simulated.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from kubernetes import client

from edgeops.api.common import format_time
from edgeops.api.edgemodel import Target
from edgeops.devcluster import processes
from edgeops.signing import generate_key
from tests.conftest import Cluster, condition, wait_for
from tests.integration.gateway_client import (
    Device,
    edge_model,
    gateway_process,
    publish_version,
)

pytestmark = pytest.mark.integration

MODEL = "fr-model"
PI = Target(name="pi", target_type="linux", format="onnx")
STEPS = [{"percent": 10}, {"percent": 50}, {"percent": 100}]


@pytest.fixture(scope="module")
def gateway(cluster: Cluster) -> Iterator[httpx.Client]:
    with gateway_process(cluster, EDGEOPS_GATEWAY_REQUESTS_PER_MINUTE="6000") as (http, _):
        yield http


@dataclass
class Fleet:
    """A namespace with EdgeModel fr-model (v1 current, v2 signed) and approved devices."""

    cluster: Cluster
    namespace: str
    devices: dict[str, Device]
    api: client.CustomObjectsApi

    def rollout(self, name: str, **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": "edgeops.dev/v1alpha1",
            "kind": "FleetRollout",
            "metadata": {"name": name},
            "spec": {"modelRef": {"name": MODEL}, "version": 2, "steps": STEPS, **spec},
        }
        self.cluster.kubectl("apply", "-n", self.namespace, "-f", "-", input=json.dumps(body))
        return self.get(name)

    def get(self, name: str) -> dict[str, Any]:
        return self.cluster.get("fleetrollout", name, "-n", self.namespace)

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def desired(self, name: str) -> dict[str, Any]:
        """What the real gateway tells device ``name`` to run."""
        response = self.devices[name].desired()
        assert response.status_code == 200, response.text
        return dict(response.json())

    def report(self, name: str, phase: str, reason: str | None = None, attempt: int = 1) -> None:
        """The device's report of an update to v2, written as the gateway writes it."""
        now = format_time(datetime.now(UTC))
        # reasonCode null: a merge patch would otherwise keep an earlier attempt's reason.
        update = {"targetVersion": 2, "phase": phase, "time": now, "attempt": attempt,
                  "reasonCode": reason}  # fmt: skip
        status: dict[str, Any] = {
            "update": update,
            "lastSeen": now,
            "model": MODEL,
        }
        if phase == "Committed":
            status["version"] = 2
        self.api.patch_namespaced_custom_object_status(
            "edgeops.dev", "v1alpha1", self.namespace, "devices", name, {"status": status}
        )

    def running(self) -> dict[str, int | None]:
        listed = self.cluster.get("devices", "-n", self.namespace)
        return {
            d["metadata"]["name"]: (d.get("status") or {}).get("version")
            for d in listed.get("items", [])
        }

    def told(self) -> list[str]:
        """Devices the gateway gives v2 that do not run it yet."""
        running = self.running()
        return sorted(
            n for n in self.devices if running.get(n) != 2 and self.desired(n)["version"] == 2
        )


def make_fleet(cluster: Cluster, gateway: httpx.Client, prefix: str, size: int) -> Fleet:
    ns = cluster.namespace(prefix)
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(edge_model(MODEL)))
    uid = cluster.get("edgemodel", MODEL, "-n", ns)["metadata"]["uid"]
    key = generate_key()
    versions = [publish_version(cluster, ns, MODEL, uid, n, key, [PI]) for n in (1, 2)]
    status = {"currentVersion": 1, "latestVersion": 2, "versions": versions}
    cluster.kubectl(
        "patch", "edgemodel", MODEL, "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip
    devices = {f"dev-{i:02}": Device(gateway, ns, f"dev-{i:02}") for i in range(size)}
    items = [
        {
            "apiVersion": "edgeops.dev/v1alpha1",
            "kind": "Device",
            "metadata": {"name": name, "labels": {"edgeops.dev/model": MODEL, "site": "a"}},
            "spec": {
                "targetType": "linux",
                "approval": "Approved",
                "identity": {"publicKey": device.public_b64},
            },
        }
        for name, device in devices.items()
    ]
    listing = {"apiVersion": "v1", "kind": "List", "items": items}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(listing))
    api = client.CustomObjectsApi(cluster.api_client())
    fleet = Fleet(cluster, ns, devices, api)
    now = format_time(datetime.now(UTC))
    for name in devices:  # every device runs v1 and reported recently
        api.patch_namespaced_custom_object_status(
            "edgeops.dev", "v1alpha1", ns, "devices", name,
            {"status": {"model": MODEL, "version": 1, "lastSeen": now, "health": "Healthy"}},
        )  # fmt: skip
    return fleet


def _reasons(cluster: Cluster, ns: str, name: str) -> list[str]:
    return [str(e.get("reason")) for e in cluster.events(ns, name)]


def test_steps_progress_to_succeeded(cluster: Cluster, gateway: httpx.Client) -> None:
    fleet = make_fleet(cluster, gateway, "fr-ok", 20)
    # successThreshold 100: every step waits for all of its devices, so the counts are exact
    # (95 % of 20 would complete the last step at 19).
    # maxUpdatesPerMinute 120 of 20 devices: each step's cohort is admitted over seconds
    # (status.admittedBuckets, which the gateway reads) rather than at once.
    fleet.rollout(
        "fr-ok", steps=[{**s, "successThreshold": 100} for s in STEPS], maxUpdatesPerMinute=120
    )
    seen_steps: set[int] = set()

    def advance() -> bool:
        status = fleet.status("fr-ok")
        if status.get("phase") == "Succeeded":
            return True
        if status.get("phase") == "Progressing":
            seen_steps.add(int(status["currentStep"]))
            for name in fleet.told():
                fleet.report(name, "Committed")
        assert status.get("phase") in (None, "Pending", "Progressing"), status
        return False

    wait_for(advance, 180, "the rollout to succeed", interval=1)
    status = fleet.status("fr-ok")
    assert status["stableVersion"] == 1 and status["targetVersion"] == 2
    assert status["counts"]["targeted"] == 20 and status["counts"]["updated"] == 20
    assert [s["step"] for s in status["steps"]] == [0, 1, 2]
    assert all(s["completedAt"] and s["counts"]["updated"] == s["counts"]["targeted"]
               for s in status["steps"])  # fmt: skip
    assert condition(status, "Succeeded")["status"] == "True"
    assert condition(status, "Ready")["reason"] == "Completed"
    assert {fleet.desired(n)["version"] for n in fleet.devices} == {2}
    # The EdgeModel (its own controller, reading the rollout's status) records the fleet.
    model = wait_for(
        lambda: (
            (m := cluster.get("edgemodel", MODEL, "-n", fleet.namespace)["status"]).get(
                "fleetVersion"
            )
            == 2
            and m
        ),
        30,
        "status.fleetVersion",
    )
    assert model["fleetRollout"] == "fr-ok" and model["currentVersion"] == 1
    reasons = wait_for(
        lambda: (
            (r := _reasons(cluster, fleet.namespace, "fr-ok")).count("StepCompleted") >= 3 and r
        ),
        30,
        "the step Events",
    )
    assert "RolloutStarted" in reasons and "Completed" in reasons
    assert reasons.count("StepStarted") >= 3
    started = [
        e["message"]
        for e in cluster.events(fleet.namespace, "fr-ok")
        if e.get("reason") == "StepStarted"
    ]
    assert all("admitted gradually at maxUpdatesPerMinute 120" in m for m in started), started
    assert status["admittedBuckets"] == 10000


def test_deleting_rollouts_hands_their_devices_over_and_says_so(
    cluster: Cluster, gateway: httpx.Client
) -> None:
    """The trial: deleting a rollout mid-way silently handed its devices to the previous
    rollout's decision, and the EdgeModel's fleetRollout kept naming a deleted rollout."""
    fleet = make_fleet(cluster, gateway, "fr-del", 6)
    fleet.rollout("fr-a", steps=[{"percent": 100, "successThreshold": 100}])

    def succeeded() -> bool:
        if fleet.status("fr-a").get("phase") == "Succeeded":
            return True
        for name in fleet.told():
            fleet.report(name, "Committed")
        return False

    wait_for(succeeded, 60, "fr-a to succeed", interval=1)
    # A newer rollout back to v1, held at its first step (50 %) by a manual pause.
    fleet.rollout("fr-b", version=1, steps=[{"percent": 50, "pause": {"manual": True}},
                                            {"percent": 100}])  # fmt: skip
    wait_for(lambda: fleet.status("fr-b").get("phase") == "Progressing", 30, "fr-b to start")
    moved = sum(fleet.desired(n)["version"] == 1 for n in fleet.devices)
    cluster.kubectl("delete", "fleetrollout", "fr-b", "-n", fleet.namespace)

    def handed_over(name: str, deleted: str) -> str:
        """The DevicesHandedOver Event about ``name`` that says ``deleted`` was deleted."""
        found = [e["message"] for e in cluster.events(fleet.namespace, name)
                 if e.get("reason") == "DevicesHandedOver"
                 and e["message"].startswith(f"FleetRollout {deleted} (")]  # fmt: skip
        return found[0] if found else ""

    message = wait_for(lambda: handed_over("fr-b", "fr-b"), 30, "the hand-over Event of fr-b")
    assert message == (
        f"FleetRollout fr-b (v1, Progressing at 50 %) was deleted: it governed 6 device(s), "
        f"{moved} told v1; now 6 to FleetRollout fr-a (Succeeded, v2): told v2, 0 of them run "
        "another version and will install it"
    ), message
    assert handed_over("fr-a", "fr-b") == message  # the rollout that took them over too
    # ... which records it: its devices' timeouts run from now, not from its old step.
    recorded = wait_for(lambda: fleet.status("fr-a").get("handedOver"), 30, "handedOver")
    assert [h["rollout"] for h in recorded] == ["fr-b"], recorded
    assert {fleet.desired(n)["version"] for n in fleet.devices} == {2}
    # Deleting the Succeeded rollout: the devices follow currentVersion v1 again, and the
    # EdgeModel no longer names fr-a.
    cluster.kubectl("delete", "fleetrollout", "fr-a", "-n", fleet.namespace)
    message = wait_for(lambda: handed_over("fr-a", "fr-a"), 30, "the hand-over Event of fr-a")
    assert message.endswith(
        "it governed 6 device(s), 6 told v2; now 6 to no rollout (the EdgeModel's "
        "currentVersion): told v1, 6 of them run another version and will install it"
    ), message
    model = wait_for(
        lambda: "fleetRollout" not in (m := cluster.get("edgemodel", MODEL, "-n",
                                                        fleet.namespace)["status"]) and m,
        30, "status.fleetRollout cleared",
    )  # fmt: skip
    assert "fleetVersion" not in model
    cleared = [e["message"] for e in cluster.events(fleet.namespace, MODEL)
               if e.get("reason") == "FleetRecordCleared"]  # fmt: skip
    assert cleared and "FleetRollout fr-a no longer exists" in cleared[-1]


def test_failures_above_the_threshold_roll_back(cluster: Cluster, gateway: httpx.Client) -> None:
    fleet = make_fleet(cluster, gateway, "fr-rb", 30)
    fleet.rollout("fr-rb", failureThreshold={"percent": 20, "minDevices": 2})
    moved: list[str] = []
    failed: list[str] = []

    def advance() -> bool:
        status = fleet.status("fr-rb")
        if status.get("phase") == "RolledBack":
            return True
        assert status.get("phase") in (None, "Pending", "Progressing"), status
        if status.get("phase") != "Progressing":
            return False
        told = fleet.told()
        told = [n for n in told if n not in failed]
        if len(told) >= 3 and not failed:
            # One commits, the rest fail: far above 20 %.
            fleet.report(told[0], "Committed")
            moved.append(told[0])
            for name in told[1:]:
                fleet.report(name, "Failed")
                failed.append(name)
        elif not failed:
            for name in told:
                fleet.report(name, "Committed")
                moved.append(name)
        return False

    wait_for(advance, 180, "the rollback", interval=1)
    status = fleet.status("fr-rb")
    # Counts are those of the decision: reports that arrived later do not change them.
    counts = status["counts"]
    assert 2 <= counts["failed"] <= len(failed) and counts["updated"] >= 1
    assert condition(status, "Ready")["reason"] == "RolledBack"
    assert (
        f"{counts['failed']} of {counts['failed'] + counts['updated']} devices"
        in (condition(status, "Ready")["message"])
    )
    assert "return to v1" in status["message"]
    # The devices that moved get the stable version back; no device is told v2 any more.
    for name in moved:
        answer = fleet.desired(name)
        assert (answer["version"], answer["cohort"]) == (1, "stable"), answer
    assert {fleet.desired(n)["version"] for n in fleet.devices} == {1}
    wait_for(lambda: "RolledBack" in _reasons(cluster, fleet.namespace, "fr-rb"), 30, "the Event")


def test_failed_downloads_are_retried_before_they_count(
    cluster: Cluster, gateway: httpx.Client
) -> None:
    """spec.deviceRetries reaches the devices in their desired state; a device whose
    download failed is in progress while it has retries left, and Failed (counted against
    the threshold) only once its last attempt failed."""
    fleet = make_fleet(cluster, gateway, "fr-retry", 4)
    fleet.rollout(
        "fr-retry",
        steps=[{"percent": 100, "successThreshold": 100}],
        failureThreshold={"percent": 0, "minDevices": 1},
        deviceRetries={"limit": 1, "backoffSeconds": 5},
    )
    told = wait_for(lambda: len(fleet.told()) == 4 and fleet.told(), 60, "all devices told")
    assert fleet.desired(told[0])["retries"] == {"limit": 1, "backoffSeconds": 5}
    first, *others = told
    for name in told:
        fleet.report(name, "Failed", "DownloadFailed", attempt=1)
    wait_for(
        lambda: (fleet.status("fr-retry").get("counts") or {}).get("inProgress") == 4,
        30,
        "four devices retrying",
    )
    status = fleet.status("fr-retry")
    assert status["phase"] == "Progressing" and status["counts"]["failed"] == 0
    assert status["counts"]["retrying"] == 4
    assert "4 in progress (4 retrying a failed download)" in status["message"]
    for name in others:
        fleet.report(name, "Committed", attempt=2)
    fleet.report(first, "Failed", "DownloadFailed", attempt=2)  # its last attempt
    try:
        wait_for(lambda: fleet.status("fr-retry").get("phase") == "RolledBack", 180, "rollback")
    except AssertionError:
        raise AssertionError(json.dumps(fleet.status("fr-retry"))) from None
    counts = fleet.status("fr-retry")["counts"]
    assert (counts["failed"], counts["updated"]) == (1, 3)


def test_analysis_without_data_pauses_inconclusive(cluster: Cluster, gateway: httpx.Client) -> None:
    fleet = make_fleet(cluster, gateway, "fr-nd", 6)
    query = (
        'sum(edgeops_device_feedback_total{namespace="{{namespace}}",model="{{model}}",'
        'version="{{version}}",cohort="{{cohort}}",outcome="correct"})'
    )
    fleet.rollout(
        "fr-nd",
        steps=[{"percent": 100, "analysis": True}],
        analysis={
            "interval": "2s",
            "inconclusiveLimit": 1,
            "metrics": [
                {"name": "accuracy", "query": query, "threshold": 0.9, "op": ">=", "minSamples": 10}
            ],
        },
    )

    def paused() -> dict[str, Any] | None:
        status = fleet.status("fr-nd")
        assert status.get("phase") not in ("RolledBack", "Aborted", "Succeeded"), status
        if status.get("phase") == "Progressing":
            for name in fleet.told():
                fleet.report(name, "Committed")
        return status if status.get("phase") == "Paused" else None

    status = wait_for(paused, 120, "the Inconclusive pause", interval=1)
    assert status["pausedReason"] == "Inconclusive", status
    (metric,) = status["metrics"]
    assert metric["verdict"] == "Inconclusive", metric
    assert metric["inconclusive"] >= 2 and metric["passes"] == 0 and metric["failures"] == 0
    assert 'namespace="' + fleet.namespace + '"' in metric["query"]
    assert 'cohort="canary"' in metric["query"] and 'version="2"' in metric["query"]
    assert "canary inferences" in metric["message"]
    assert {r["verdict"] for r in status["analysisResults"]} == {"Inconclusive"}
    assert status["pauseId"] and condition(status, "Progressing")["reason"] == (
        "AnalysisInconclusive"
    )
    # Measuring goes on while paused; it never becomes a pass or a rollback.
    wait_for(
        lambda: len(fleet.status("fr-nd")["analysisResults"]) > len(status["analysisResults"]),
        30,
        "a measurement during the pause",
    )
    later = fleet.status("fr-nd")
    assert later["phase"] == "Paused" and {r["verdict"] for r in later["analysisResults"]} == {
        "Inconclusive"
    }
    reasons = _reasons(cluster, fleet.namespace, "fr-nd")
    assert "AnalysisInconclusive" in reasons and "RolledBack" not in reasons


def test_prometheus_stopped_during_analysis_is_error_not_a_verdict(
    cluster: Cluster, gateway: httpx.Client
) -> None:
    """The devcluster's Prometheus is stopped before the analysis starts: each measurement
    is Error with the reason (connection refused), never Pass, Fail or Inconclusive; past
    errorLimit the rollout pauses with reason AnalysisError and is never rolled back. With
    Prometheus started again, measuring goes on during the pause."""
    fleet = make_fleet(cluster, gateway, "fr-pe", 6)
    query = (
        'sum(edgeops_device_inferences_total{namespace="{{namespace}}",model="{{model}}",'
        'version="{{version}}",cohort="{{cohort}}"})'
    )
    prometheus = json.loads(cluster.dev.state_file.read_text())["components"]["prometheus"]
    assert processes.stop(int(prometheus["pid"]), prometheus["argv0"])
    try:
        fleet.rollout(
            "fr-pe",
            steps=[{"percent": 100, "analysis": True}],
            analysis={
                "interval": "2s",
                "metrics": [
                    {"name": "traffic", "query": query, "threshold": 1, "op": ">=",
                     "minSamples": 1, "errorLimit": 2},
                ],
            },
        )  # fmt: skip

        def paused() -> dict[str, Any] | None:
            status = fleet.status("fr-pe")
            assert status.get("phase") not in ("RolledBack", "Aborted", "Succeeded"), status
            if status.get("phase") == "Progressing":
                for name in fleet.told():
                    fleet.report(name, "Committed")
            return status if status.get("phase") == "Paused" else None

        status = wait_for(paused, 120, "the AnalysisError pause", interval=1)
        assert status["pausedReason"] == "AnalysisError", status
        (metric,) = status["metrics"]
        # Measuring goes on while paused, so a few more Errors may be in already.
        assert metric["verdict"] == "Error" and metric["errors"] >= 3, metric
        assert (metric["passes"], metric["failures"], metric["inconclusive"]) == (0, 0, 0)
        assert "value" not in metric
        results = status["analysisResults"]
        assert len(results) >= 3 and {r["verdict"] for r in results} == {"Error"}
        assert all("prometheus" in r["message"].lower() for r in results), results
        ready = condition(status, "Progressing")
        assert ready["reason"] == "AnalysisError"
        assert "3 times in a row (Error), more than errorLimit 2" in ready["message"]
        assert "AnalysisError" in status["pauseId"]
    finally:
        cluster.dev.up(with_operator=True, report=lambda _: None)
    # Back: the next measurements reach Prometheus (no canary traffic here: Inconclusive,
    # still not a verdict), and the rollout stays paused until acknowledged.
    later = wait_for(
        lambda: (s := fleet.status("fr-pe"))["analysisResults"][-1]["verdict"] != "Error" and s,
        90,
        "a measurement after Prometheus is back",
        interval=1,
    )
    assert later["analysisResults"][-1]["verdict"] == "Inconclusive", later["analysisResults"]
    assert later["phase"] == "Paused" and later["pausedReason"] == "AnalysisError"
    reasons = _reasons(cluster, fleet.namespace, "fr-pe")
    assert "AnalysisError" in reasons and "RolledBack" not in reasons


def test_operator_restart_mid_step_continues_the_same_step(
    cluster: Cluster, gateway: httpx.Client
) -> None:
    """Everything a rollout decides from is in its status and the cohort hash: a restarted
    operator carries on at the same step, with the same step start and cohort (no device is
    told anything new), and posts nothing again."""
    fleet = make_fleet(cluster, gateway, "fr-rs", 12)
    steps = [
        {"percent": 10, "successThreshold": 100},
        {"percent": 50, "successThreshold": 100, "pause": {"manual": True}},
        {"percent": 100, "successThreshold": 100},
    ]
    fleet.rollout("fr-rs", steps=steps)

    def waiting_for_approval() -> dict[str, Any] | None:
        status = fleet.status("fr-rs")
        if status.get("phase") == "Progressing":
            for name in fleet.told():
                fleet.report(name, "Committed")
        waiting = status.get("currentStep") == 1 and status.get("stepCompletedAt")
        return status if waiting and "approvedStep" in status.get("message", "") else None

    before = wait_for(waiting_for_approval, 120, "step 2 waiting for approval", interval=1)
    given = {n: fleet.desired(n)["version"] for n in fleet.devices}
    started_events = _reasons(cluster, fleet.namespace, "fr-rs").count("StepStarted")

    operator = json.loads(cluster.dev.state_file.read_text())["components"]["operator"]
    assert processes.stop(int(operator["pid"]), operator["argv0"])
    cluster.dev.up(with_operator=True, report=lambda _: None)

    # Give the new operator time to run its first pass over the rollout.
    wait_for(
        lambda: condition(fleet.status("fr-rs"), "Ready")["lastTransitionTime"] and True,
        30,
        "the restarted operator",
    )
    time.sleep(5)
    after = fleet.status("fr-rs")
    for key in ("phase", "currentStep", "stepStartedAt", "stepCompletedAt", "stableVersion"):
        assert after.get(key) == before.get(key), key
    assert [s["startedAt"] for s in after["steps"]] == [s["startedAt"] for s in before["steps"]]
    assert {n: fleet.desired(n)["version"] for n in fleet.devices} == given
    assert _reasons(cluster, fleet.namespace, "fr-rs").count("StepStarted") == started_events

    fleet.cluster.kubectl(
        "patch", "fleetrollout", "fr-rs", "-n", fleet.namespace, "--type=merge",
        "-p", json.dumps({"spec": {"approvedStep": 1}}),
    )  # fmt: skip

    def succeeded() -> bool:
        status = fleet.status("fr-rs")
        if status.get("phase") == "Progressing":
            for name in fleet.told():
                fleet.report(name, "Committed")
        return status.get("phase") == "Succeeded"

    wait_for(succeeded, 120, "the rollout to succeed after approval", interval=1)
