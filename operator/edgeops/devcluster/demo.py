"""`edgeops dev demo`: the sensor-fleet example, applied and followed until it settles.

It applies `examples/sensor-fleet/` into its own namespace on the local control plane and
prints every change of phase or Ready condition, with the operator's message, until each
Dataset is Ready, each TrainingRun has finished and each EdgeModel has a current version.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeops.api.conditions import get_condition
from edgeops.api.trainingrun import FINISHED_PHASES
from edgeops.devcluster.cluster import DevCluster, DevClusterError, repo_root

Reporter = Callable[[str], None]
DEMO_NAMESPACE = "sensor-fleet"


def _ready(obj: dict[str, Any]) -> dict[str, Any]:
    return get_condition((obj.get("status") or {}).get("conditions"), "Ready") or {}


def _settled(obj: dict[str, Any]) -> bool:
    kind = obj["kind"]
    status = obj.get("status") or {}
    if kind == "Dataset":
        # Reconciled once: Ready (a version) or not (e.g. an inbox still waiting for devices).
        return _ready(obj).get("status") in ("True", "False")
    if kind == "TrainingRun":
        return status.get("phase") in FINISHED_PHASES
    if kind == "EdgeModel":
        return bool(status.get("currentVersion"))
    return True  # Devices and FleetRollouts are followed by the fleet components


def describe(obj: dict[str, Any]) -> str:
    status = obj.get("status") or {}
    ready = _ready(obj)
    phase = status.get("phase") or (
        f"v{status['currentVersion']}" if status.get("currentVersion") else ""
    )
    head = f"{obj['kind']}/{obj['metadata']['name']}"
    state = " ".join(p for p in (phase, f"Ready={ready.get('status', '-')}") if p)
    message = ready.get("message", "")
    return f"{head:<45} {state:<22} {message}"


def run_demo(
    cluster: DevCluster,
    examples: Path | None = None,
    timeout: float = 900,
    report: Reporter = print,
) -> bool:
    """Applies the example and follows it; True when everything settled successfully."""
    examples = examples or repo_root() / "examples" / "sensor-fleet"
    ns = cluster.kubectl("create", "namespace", DEMO_NAMESPACE, "--dry-run=client", "-o", "json")
    cluster.kubectl("apply", "-f", "-", input=ns.stdout)
    applied = cluster.kubectl("apply", "-n", DEMO_NAMESPACE, "-f", str(examples))
    for line in applied.stdout.splitlines():
        report(f"applied {line}")
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    objects: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        out = cluster.kubectl("get", "edgeops", "-n", DEMO_NAMESPACE, "-o", "json")
        objects = json.loads(out.stdout)["items"]
        for obj in objects:
            key = f"{obj['kind']}/{obj['metadata']['name']}"
            line = describe(obj)
            if seen.get(key) != line:
                seen[key] = line
                report(line)
        if objects and all(_settled(o) for o in objects):
            failed = [o for o in objects if (o.get("status") or {}).get("phase") == "Failed"]
            return not failed
        time.sleep(3)
    unsettled = [f"{o['kind']}/{o['metadata']['name']}" for o in objects if not _settled(o)]
    raise DevClusterError(f"demo did not settle within {timeout:.0f}s: {', '.join(unsettled)}")
