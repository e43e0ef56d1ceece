"""Which dataset versions retention must keep in a namespace."""

from __future__ import annotations

from typing import Any

from edgeops.api.constants import EDGE_MODELS, TRAINING_RUNS
from edgeops.policy import retention

V = {n: str(n) * 64 for n in range(1, 8)}


def _run(phase: str | None, recorded: str | None, pinned: str | None = None) -> dict[str, Any]:
    return {
        "spec": {"datasetRef": {"name": "d", **({"version": pinned} if pinned else {})}},
        "status": {"phase": phase, **({"datasetVersion": recorded} if recorded else {})},
    }


OBJECTS: dict[str, list[dict[str, Any]]] = {
    TRAINING_RUNS: [
        _run("Running", V[1]),
        _run("Pending", None, V[2]),
        _run("Succeeded", V[3]),
        _run("Failed", V[4]),
    ],
    EDGE_MODELS: [
        {
            "spec": {"training": {"datasetRef": {"name": "d"}}},
            "status": {
                "currentVersion": 2,
                "versions": [
                    {"number": 1, "state": "Rejected", "datasetVersion": V[5]},
                    {"number": 2, "state": "Approved", "datasetVersion": V[6]},
                ],
            },
        }
    ],
}


def test_unfinished_runs_and_deployable_model_versions_are_protected() -> None:
    protected = retention.protected_versions(OBJECTS[EDGE_MODELS], OBJECTS[TRAINING_RUNS])
    assert protected == {V[1], V[2], V[6]}
