"""GitOps: what Argo CD and Flux rely on, against the devcluster's real operator.

- `kubectl wait --for=condition=Ready` works for every kind (the kstatus convention Flux's
  health assessment reads), and a Ready that is not True keeps it waiting;
- the Argo CD health checks (Lua, examples/gitops/argocd) on the live objects the operator
  produced agree with their Ready condition;
- the sensor-fleet example, applied and settled, shows no `kubectl diff` against its files:
  the operator never writes spec, so a GitOps tool never sees drift it caused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Cluster, wait_for
from tests.integration.gateway_client import gateway_process
from tests.integration.test_fleetrollouts import MODEL, make_fleet
from tests.unit.gitops_health import health

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sensor-fleet"
KINDS = ("datasets", "trainingruns", "edgemodels", "fleetrollouts", "devices")


def _objects(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for kind in KINDS:
        found += cluster.get(f"{kind}.edgeops.dev", "-n", ns).get("items", [])
    return found


def _ready(obj: dict[str, Any]) -> str | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == "Ready":
            return str(c["status"])
    return None


def _wait_ready(cluster: Cluster, ns: str, ref: str, timeout: int) -> Any:
    return cluster.kubectl(
        "wait", "--for=condition=Ready", ref, "-n", ns, f"--timeout={timeout}s",
        check=False, timeout=timeout + 30,
    )  # fmt: skip


def _health_agrees_with_ready(objects: list[dict[str, Any]]) -> dict[str, str]:
    """Argo CD's status of each object, checked against its Ready condition."""
    seen = {}
    for obj in objects:
        status, message = health(obj)
        ref = f"{obj['kind']}/{obj['metadata']['name']}"
        if status == "Healthy":
            assert _ready(obj) == "True", (ref, message)
        if _ready(obj) == "True" and obj["kind"] not in ("TrainingRun", "FleetRollout"):
            assert status in ("Healthy", "Degraded"), (ref, message)
        seen[ref] = status
    return seen


def test_kubectl_wait_for_ready_on_a_fleet(cluster: Cluster) -> None:
    """A FleetRollout that succeeded, its Devices and its EdgeModel reach Ready=True, so
    `kubectl wait` returns; Argo CD's health says Healthy for the same objects."""
    with gateway_process(cluster) as (gateway, _):
        fleet = make_fleet(cluster, gateway, "gitops-fleet", 3)
        fleet.rollout("to-v2", steps=[{"percent": 100}])

        def succeeded() -> bool:
            status = fleet.status("to-v2")
            if status.get("phase") == "Progressing":
                for name in fleet.told():
                    fleet.report(name, "Committed")
            return status.get("phase") == "Succeeded"

        wait_for(succeeded, 180, "the rollout to succeed", interval=1)
    ns = fleet.namespace
    for ref in ("fleetrollout/to-v2", "device/dev-00", "device/dev-02", f"edgemodel/{MODEL}"):
        waited = _wait_ready(cluster, ns, ref, 60)
        assert waited.returncode == 0 and "condition met" in waited.stdout, (ref, waited.stderr)
    statuses = _health_agrees_with_ready(_objects(cluster, ns))
    assert statuses["FleetRollout/to-v2"] == "Healthy"
    assert statuses["Device/dev-00"] == "Healthy"


def test_sensor_fleet_example_settles_with_no_diff(cluster: Cluster) -> None:
    ns = cluster.namespace("gitops")
    files = sorted(EXAMPLE.glob("0*.yaml"))
    assert len(files) == 5
    try:
        for path in files:
            cluster.kubectl("apply", "-n", ns, "-f", str(path))

        def settled() -> list[dict[str, Any]] | None:
            objects = _objects(cluster, ns)
            done = all(
                (o.get("status") or {}).get("observedGeneration") == o["metadata"]["generation"]
                for o in objects
            )
            # 8 in the files, and the runs the EdgeModel may have started by itself.
            return objects if done and len(objects) >= 8 else None

        wait_for(settled, 180, "every object observed by the operator", interval=2)
        dataset = _wait_ready(cluster, ns, "dataset/basic-motions", 180)
        assert dataset.returncode == 0, dataset.stderr
        # Not Ready (waiting for approval): `kubectl wait` keeps waiting, then times out.
        pending = _wait_ready(cluster, ns, "device/press-line-1-imu", 3)
        assert pending.returncode != 0 and "timed out" in pending.stderr

        _no_diff(cluster, ns, files)
        statuses = _health_agrees_with_ready(_objects(cluster, ns))
        assert statuses["Dataset/basic-motions"] == "Healthy"
        devices = {r: s for r, s in statuses.items() if r.startswith("Device/")}
        assert set(devices.values()) == {"Suspended"}, devices  # awaiting approval

        # Training really runs (TensorFlow in a Job on the local node): the run ends Ready.
        run = _wait_ready(cluster, ns, "trainingrun/motion-classifier-experiment-1", 900)
        assert run.returncode == 0, run.stderr
        statuses = _health_agrees_with_ready(_objects(cluster, ns))
        assert statuses["TrainingRun/motion-classifier-experiment-1"] == "Healthy"
        # Everything the operator wrote since (status, children, registry) is no spec drift.
        _no_diff(cluster, ns, files)
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _no_diff(cluster: Cluster, ns: str, files: list[Path]) -> None:
    for path in files:
        diff = cluster.kubectl("diff", "-n", ns, "-f", str(path), check=False)
        assert (diff.returncode, diff.stdout) == (0, ""), (path.name, diff.stdout, diff.stderr)


def test_examples_are_valid_gitops_objects() -> None:
    """The Argo CD and Flux examples name the chart and the example that exist here."""
    root = EXAMPLE.parent / "gitops"
    docs = [d for p in sorted(root.rglob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    by_kind = {d["kind"]: d for d in docs if d}
    paths = [d["spec"]["source"]["path"] for d in docs if d and d["kind"] == "Application"] + [
        by_kind["Kustomization"]["spec"]["path"],
        by_kind["HelmRelease"]["spec"]["chart"]["spec"]["chart"],
    ]
    for path in paths:
        assert (EXAMPLE.parents[1] / path.removeprefix("./")).is_dir(), path
    assert json.dumps(by_kind["ConfigMap"]["data"]).count("resource.customizations.health") == 5
