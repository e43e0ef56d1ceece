"""The Device controller against the session devcluster: status written as the gateway
writes it, then approval (Ready, Event), a device that stops reporting (the sweep marks it
NotSeen with the numbers), an update that fails (condition, Event), an operator restart
(nothing announced twice) and decommissioning."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edgeops.api.common import format_time
from edgeops.devcluster import processes
from tests.conftest import Cluster, condition, wait_for

pytestmark = pytest.mark.integration

NAME = "cam-1"


def _device(cluster: Cluster, ns: str) -> dict[str, Any]:
    return cluster.get("device", NAME, "-n", ns)


def _patch(cluster: Cluster, ns: str, document: dict[str, Any], *, status: bool = False) -> None:
    args = ["patch", "device", NAME, "-n", ns, "--type=merge", "-p", json.dumps(document)]
    cluster.kubectl(*args, *(["--subresource=status"] if status else []))


def _ready(cluster: Cluster, ns: str, reason: str) -> dict[str, Any] | None:
    """The Device's Ready condition once its reason is ``reason``, else None."""
    status = _device(cluster, ns).get("status") or {}
    found = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
    return found[0] if found and found[0]["reason"] == reason else None


def _events(cluster: Cluster, ns: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in cluster.events(ns, NAME) if e.get("reason") == reason]


def _now(seconds_ago: float = 0) -> str:
    return format_time(datetime.now(UTC) - timedelta(seconds=seconds_ago))


def test_device_conditions_sweep_and_events(cluster: Cluster) -> None:
    ns = cluster.namespace("devctl")
    device = {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "Device",
        "metadata": {"name": NAME, "labels": {"site": "plant-a"}},
        "spec": {"targetType": "linux", "reportIntervalSeconds": 5},
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(device))
    # The gateway's write at enrollment and first report.
    _patch(
        cluster,
        ns,
        {"status": {"enrollment": "Pending", "lastSeen": _now(), "health": "Healthy"}},
        status=True,
    )
    pending = wait_for(lambda: _ready(cluster, ns, "EnrollmentPending"), 60, "Ready=False")
    assert pending["status"] == "False"
    assert condition(_device(cluster, ns)["status"], "Enrolled")["status"] == "False"

    # Approval: status.enrollment before the device calls again, Ready, one Event.
    _patch(cluster, ns, {"spec": {"approval": "Approved"}})
    ready = wait_for(lambda: _ready(cluster, ns, "Healthy"), 60, "Ready=True")
    assert ready["status"] == "True" and "threshold 180 s" in ready["message"]
    status = _device(cluster, ns)["status"]
    assert status["enrollment"] == "Approved"
    assert condition(status, "Enrolled")["reason"] == "Approved"
    assert status["observedGeneration"] == _device(cluster, ns)["metadata"]["generation"]
    wait_for(lambda: _events(cluster, ns, "Approved"), 30, "the Approved Event")
    listed = cluster.kubectl("get", "edev", "-n", ns, "-l", "site=plant-a").stdout
    header, row = (line.split() for line in listed.splitlines()[:2])
    assert header == [
        "NAME", "READY", "ENROLLMENT", "TYPE", "MODEL", "VERSION", "HEALTH", "LASTSEEN", "AGE",
    ]  # fmt: skip
    assert row[:3] == [NAME, "True", "Approved"] and "Healthy" in row

    # Seen 175 s ago: within 3 x max(5, 60 s) = 180 s now; no watch event says when that
    # ends, so the sweep (every 2 s here) is what marks the device NotSeen.
    _patch(cluster, ns, {"status": {"lastSeen": _now(175)}}, status=True)
    stale = wait_for(lambda: _ready(cluster, ns, "NotSeen"), 60, "Ready=Unknown (NotSeen)")
    assert stale["status"] == "Unknown"
    assert (
        "threshold 180 s = 3 x max(reportIntervalSeconds 5, gateway lastSeen" in (stale["message"])
    )
    assert _device(cluster, ns)["status"]["health"] == "Unknown"

    # Reporting again (the gateway writes lastSeen and the reported health).
    _patch(cluster, ns, {"status": {"lastSeen": _now(), "health": "Healthy"}}, status=True)
    wait_for(lambda: _ready(cluster, ns, "Healthy"), 60, "Ready=True again")

    # An update that fails: condition and one Warning Event with the reason code.
    update = {
        "targetVersion": 2,
        "phase": "Failed",
        "attempt": 1,
        "reasonCode": "HashMismatch",
        "message": "artifact sha256 differs from the manifest",
        "time": _now(),
    }
    _patch(cluster, ns, {"status": {"update": update}}, status=True)

    def failed() -> dict[str, Any] | None:
        status = _device(cluster, ns).get("status") or {}
        found = [c for c in status.get("conditions") or [] if c["type"] == "Updated"]
        return found[0] if found and found[0]["reason"] == "UpdateFailed" else None

    updated = wait_for(failed, 60, "Updated=False (UpdateFailed)")
    assert (
        updated["status"] == "False"
        and "v2 attempt 1: Failed (HashMismatch)" in (updated["message"])
    )
    posted = wait_for(lambda: _events(cluster, ns, "UpdateFailed"), 30, "the UpdateFailed Event")
    assert posted[0]["type"] == "Warning" and "HashMismatch" in posted[0]["message"]

    # A restarted operator evaluates every Device again, and reposts nothing: the
    # transitions are recorded in the conditions.
    operator = json.loads(cluster.dev.state_file.read_text())["components"]["operator"]
    assert processes.stop(int(operator["pid"]), operator["argv0"])
    cluster.dev.up(with_operator=True, report=lambda _: None)

    # Decommissioning revokes: Ready False, status.enrollment Revoked, an Event.
    _patch(cluster, ns, {"spec": {"decommissioned": True}})
    revoked = wait_for(lambda: _ready(cluster, ns, "Decommissioned"), 60, "Ready=False")
    assert revoked["status"] == "False"
    assert _device(cluster, ns)["status"]["enrollment"] == "Revoked"
    wait_for(lambda: _events(cluster, ns, "Decommissioned"), 30, "the Decommissioned Event")

    # Each transition was announced once, whatever number of watch events it took.
    for reason in ("Approved", "UpdateFailed", "Decommissioned"):
        found = _events(cluster, ns, reason)
        assert len(found) == 1 and found[0].get("count", 1) == 1, (reason, found)
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
