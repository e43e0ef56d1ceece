"""FleetRollout acceptance with 200 simulated devices (edgeops.device.simulator: real
agents enrolled through the devcluster's gateway pod, installing signed ONNX versions,
health-checking them and sending telemetry that Prometheus scrapes).

One fleet, two rollouts of the same EdgeModel:

1. v1 → v2 in steps 0 % + lab devices (a step selector), 10 %, 50 %, 100 % with
   analysis on the canary cohort's real latency histogram (and a dry-run metric), a bake
   after the last step: ten devices lose the network just before it starts, time out
   (``deviceTimeout``) and count as ``timedOut``, and every step still completes on its
   success threshold; the rollout reaches ``Succeeded`` with each step's counts and
   measurements in status; once the offline devices are back, every device runs v2 and
   ``edgeops lineage`` names version, run and dataset version of each.
2. v2 → v3, a version that fails the health check on 30 % of the devices: rolled back at
   the failure threshold (15 %) in its 10 % or 50 % step, the moved devices run v2 again,
   no device outside the cohort reached by then was ever told to install v3, and none
   started installing it after the rollback.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeops.api.common import parse_time
from edgeops.device.simulator import (
    FailingVersion,
    Offline,
    Simulation,
    SimulationConfig,
    load_rows,
    share_hit,
)
from edgeops.policy.desired import cohort_bucket
from tests.conftest import Cluster, condition, wait_for
from tests.integration.device_fleet import (
    CLASSES,
    GATEWAY_CACHE_SECONDS,
    DeviceWatch,
    Line,
    edge_model,
    onnx_classifier,
    operator_signing_key,
)
from tests.integration.gateway_client import token
from tests.integration.test_fleet_simulator import SimulationThread

#: The session's 600 s per-test timeout (pyproject) is too short for 200 real agents on a
#: shared 2-core machine: enrollment and the v1 install alone took 5 minutes there.
# About 25 min on a loaded 2-core machine: longer than the whole suite should take in CI,
# so it runs on request (EDGEOPS_ACCEPTANCE=1); the same behaviours are covered at 6-20
# devices in test_fleetrollouts.py and test_fleet_simulator.py.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(2700),
    pytest.mark.skipif(
        os.environ.get("EDGEOPS_ACCEPTANCE") != "1",
        reason="the 200-device acceptance run takes ~25 min: set EDGEOPS_ACCEPTANCE=1",
    ),
]

DEVICES = 200
MODEL = "sim-rollout"
OFFLINE_SHARE = 0.05
#: The canary cohort's 90th percentile inference latency over 30 s, from the gateway's
#: histogram (real device telemetry).
LATENCY = (
    "histogram_quantile(0.9, sum by (le) (rate(edgeops_device_inference_latency_seconds_bucket"
    '{namespace="{{namespace}}",model="{{model}}",version="{{version}}",cohort="{{cohort}}"}'
    "[30s])))"
)
RATE = (
    'sum(rate(edgeops_device_inferences_total{namespace="{{namespace}}",model="{{model}}",'
    'version="{{version}}",cohort="{{cohort}}"}[30s]))'
)


@pytest.fixture
def ns(cluster: Cluster) -> Iterator[str]:
    name = cluster.namespace("frsim")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _devices(cluster: Cluster, ns: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in cluster.get("devices", "-n", ns).get("items", [])}


def _versions(cluster: Cluster, ns: str) -> dict[str, int | None]:
    return {n: (d.get("status") or {}).get("version") for n, d in _devices(cluster, ns).items()}


def _edgeops(cluster: Cluster, *args: str) -> str:
    env = {**os.environ, **cluster.env, "KUBECONFIG": cluster.kubeconfig}
    done = subprocess.run(
        [sys.executable, "-m", "edgeops", *args], env=env, capture_output=True, text=True,
        check=True, timeout=120,
    )  # fmt: skip
    return done.stdout


def _rollout(cluster: Cluster, ns: str, name: str, version: int, **spec: Any) -> None:
    body = {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "FleetRollout",
        "metadata": {"name": name},
        "spec": {"modelRef": {"name": MODEL}, "version": version, **spec},
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(body))


def _status(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return dict(cluster.get("fleetrollout", name, "-n", ns).get("status") or {})


def test_200_simulated_devices_through_two_rollouts(
    cluster: Cluster, ns: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    key, trusted = operator_signing_key(cluster)
    line = Line.apply(cluster, ns, edge_model(MODEL), key)
    datasets = {n: hashlib.sha256(f"motions-{n}".encode()).hexdigest() for n in (1, 2, 3)}
    line.publish(1, onnx_classifier(seed=60), dataset_version=datasets[1])
    # Four tokens of 50 uses: each use is a compare-and-swap on its Secret.
    grants = [
        token(
            cluster,
            ns,
            "--auto-approve",
            "--max-uses",
            str(DEVICES // 4),
            "--labels",
            f"edgeops.dev/model={MODEL}",
        )
        for _ in range(4)
    ]
    offline: list[Offline] = []  # filled and emptied below: the simulator reads it per request
    config = SimulationConfig(
        gateway=cluster.endpoints["gateway"], namespace=ns, devices=DEVICES, token=grants,
        trusted_keys=trusted, rows=load_rows("builtin:basic-motions"), state_root=tmp_path,
        classes=CLASSES, fail_versions=[FailingVersion(3, 0.3)], offline=offline,
        interval_seconds=10.0, ramp_seconds=45.0, rows_per_cycle=10,
    )  # fmt: skip
    simulation = Simulation(config)
    names = [v.name for v in simulation.views]
    away = {n for n in names if share_hit("offline", n, OFFLINE_SHARE)}
    failing = {n for n in names if share_hit("fail:3", n, 0.3)}
    assert 4 <= len(away) <= 20 and 40 <= len(failing) <= 80, (len(away), len(failing))
    lab = [n for n in names[7::37] if n not in away][:3]  # the lab: three online devices

    with SimulationThread(simulation), DeviceWatch(cluster, ns) as watch:
        wait_for(
            lambda: list(_versions(cluster, ns).values()) == [1] * DEVICES, 900,
            "200 devices enrolled and on v1", interval=3,
        )  # fmt: skip
        enrolled = time.monotonic()
        for name in lab:
            cluster.kubectl("label", "device", name, "-n", ns, "ring=lab")
        line.publish(2, onnx_classifier(seed=61), current=False, dataset_version=datasets[2])
        offline.append(Offline(OFFLINE_SHARE))  # from now on, until removed
        lab_step = {"percent": 0, "selector": {"matchLabels": {"ring": "lab"}},
                    "successThreshold": 100}  # fmt: skip
        _rollout(
            cluster, ns, "to-v2", 2,
            steps=[
                lab_step,
                {"percent": 10, "analysis": True, "successThreshold": 75},
                {"percent": 50, "analysis": True, "successThreshold": 85},
                {"percent": 100, "successThreshold": 90},
            ],
            analysis={
                "interval": "15s",
                "metrics": [
                    {"name": "latency-p90", "query": LATENCY, "op": "<=", "threshold": 1.0,
                     "minSamples": 20, "count": 2, "initialDelay": "20s"},
                    {"name": "inference-rate", "query": RATE, "op": ">=", "threshold": 0.1,
                     "minSamples": 20, "dryRun": True},
                ],
            },
            bakeTime="60s", deviceTimeout="60s",
            failureThreshold={"percent": 10, "minDevices": 3,
                              "outcomes": ["Failed", "RolledBack"]},
        )  # fmt: skip

        def finished(name: str) -> dict[str, Any] | None:
            status = _status(cluster, ns, name)
            assert status.get("phase") not in ("Paused", "Aborted"), status.get("message")
            return status if status.get("phase") in ("Succeeded", "RolledBack") else None

        status = wait_for(lambda: finished("to-v2"), 1200, "to-v2 Succeeded", interval=5)
        rolled_out = time.monotonic()
        assert status["phase"] == "Succeeded", status["message"]
        assert condition(status, "Succeeded")["status"] == "True"
        steps = status["steps"]
        assert [s["step"] for s in steps] == [0, 1, 2, 3] and all(s["completedAt"] for s in steps)
        assert steps[0]["counts"]["targeted"] == len(lab) == steps[0]["counts"]["updated"]
        assert [s["percent"] for s in steps] == [0, 10, 50, 100]
        targeted = [s["counts"]["targeted"] for s in steps]
        assert targeted[0] < targeted[1] < targeted[2] < targeted[3] == DEVICES, targeted
        final = steps[3]["counts"]
        # The offline devices were told and never answered: TimedOut, counted, and the
        # steps completed on their success thresholds without them.
        # (An online device still installing on a loaded machine may count as timed out
        # too; it is counted as updated once it commits.)
        assert final["timedOut"] >= len(away), final
        assert final["updated"] >= 0.9 * DEVICES, final
        assert status["counts"] == final
        for record in steps:
            counts = record["counts"]
            assert (
                counts["updated"] + counts["timedOut"] + counts["pending"] + counts["inProgress"]
                == counts["targeted"]
            ), record
        # Measurements of every analysed step (and the bake) with their numbers.
        results = status["analysisResults"]
        gating = [r for r in results if r["metric"] == "latency-p90"]
        assert {r["step"] for r in gating} == {1, 2, 3}, results
        for step in (1, 2):
            passes = [r for r in gating if r["step"] == step and r["verdict"] == "Pass"]
            assert len(passes) >= 2, (step, gating)
            assert all(r["samples"] >= 20 and r["value"] <= 1.0 for r in passes)
        assert {m["name"] for m in status["metrics"]} == {"latency-p90", "inference-rate"}
        assert all(m["query"].count(ns) == 1 and 'cohort="canary"' in m["query"]
                   for m in status["metrics"])  # fmt: skip
        assert all(r["verdict"] != "Fail" for r in gating)

        # The offline devices come back: the Succeeded rollout gives every device v2.
        offline.clear()
        wait_for(
            lambda: list(_versions(cluster, ns).values()) == [2] * DEVICES, 600,
            "every device on v2 once the offline ones are back", interval=3,
        )  # fmt: skip
        converged = time.monotonic()
        rows = json.loads(_edgeops(cluster, "lineage", MODEL, "-n", ns, "-o", "json"))["devices"]
        assert len(rows) == DEVICES
        assert {
            (r["version"], r["rollout"], r["trainingRun"], r["datasetVersion"]) for r in rows
        } == {(2, "to-v2", f"{MODEL}-2", datasets[2])}
        shown = json.loads(_edgeops(cluster, "rollout", "status", "to-v2", "-n", ns, "-o", "json"))
        assert shown["status"]["phase"] == "Succeeded"

        # --- a version that fails its health check on 30 % of the devices ---------------
        line.set_current(2)  # as promotion would have: v2 is what the fleet runs
        line.publish(3, onnx_classifier(seed=62), current=False, dataset_version=datasets[3])
        _rollout(
            cluster, ns, "to-v3", 3,
            # A 10 % cohort of ~20 devices may hold only 3 or 4 of the failing ones (a
            # run had 3 of 21): the first step moves on at 60 %, so the threshold is
            # reached at the latest in the 50 % step, where the 30 % show.
            steps=[{"percent": 10, "successThreshold": 60},
                   {"percent": 50, "successThreshold": 60}, {"percent": 100}],
            failureThreshold={"percent": 15, "minDevices": 3,
                              "outcomes": ["Failed", "RolledBack"]},
        )  # fmt: skip
        status = wait_for(lambda: finished("to-v3"), 900, "to-v3 rolled back", interval=2)
        assert status["phase"] == "RolledBack", status["message"]
        assert status["currentStep"] in (0, 1) and status["stableVersion"] == 2
        counts = status["counts"]
        assert counts["rolledBack"] >= 3 and counts["targeted"] <= 130, counts
        assert "return to v2" in status["message"] and "threshold of 15 %" in status["message"]
        uid = cluster.get("fleetrollout", "to-v3", "-n", ns)["metadata"]["uid"]
        reached = 100 * status["currentPercent"]
        cohort = {n for n in names if cohort_bucket(uid, n) < reached}
        # Every device ends on v2: the moved ones are told v2 again, the rest never moved.
        wait_for(
            lambda: list(_versions(cluster, ns).values()) == [2] * DEVICES, 400,
            "every device back on v2", interval=3,
        )  # fmt: skip
        rolled_back = time.monotonic()
        told = {n for n, u in watch.updates if u.get("targetVersion") == 3}
        assert told and told <= cohort, told - cohort
        agent_rolled_back = {
            n for n, u in watch.updates
            if u.get("targetVersion") == 3 and u.get("phase") == "RolledBack"
        }  # fmt: skip
        assert len(agent_rolled_back) >= 3 and agent_rolled_back <= failing, agent_rolled_back
        finished_at = parse_time(status["finishedAt"])
        assert finished_at is not None
        first_report: dict[str, Any] = {}
        for name, update in watch.updates:
            if update.get("targetVersion") == 3 and name not in first_report:
                first_report[name] = parse_time(update.get("time"))
        # The gateway reads rollouts through its cache; a device told just before the
        # rollback reports its first phase within its cycle's requests.
        slack = GATEWAY_CACHE_SECONDS + 5
        late = {
            n for n, at in first_report.items()
            if at is not None and (at - finished_at).total_seconds() > slack
        }  # fmt: skip
        assert not late, late
    print(
        f"\n200 devices: enrolled and on v1 in {enrolled - started:.0f} s; to-v2 Succeeded "
        f"after {rolled_out - enrolled:.0f} s; all on v2 {converged - rolled_out:.0f} s after "
        f"the offline devices returned; to-v3 rolled back and all on v2 again in "
        f"{rolled_back - converged:.0f} s; v3 told to {len(told)} devices, "
        f"{counts['rolledBack']} rolled back when the threshold was reached"
    )
