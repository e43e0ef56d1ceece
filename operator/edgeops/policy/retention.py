"""Which dataset versions retention must keep: pure functions over EdgeModels and
TrainingRuns as the API server has them (plain dicts, from the operator's watch cache)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from edgeops.api.trainingrun import FINISHED_PHASES
from edgeops.policy.registry import PROMOTABLE

#: Version states whose dataset version is kept: a rollback can return to any approved
#: version, and a candidate may still be approved.
KEPT_STATES = (*PROMOTABLE, "Candidate")


def versions_a_model_protects(model: Mapping[str, Any]) -> frozenset[str]:
    """Dataset versions behind the model's current, candidate, approved and candidate
    versions, and the dataset version its training template pins."""
    status = model.get("status") or {}
    live = {status.get("currentVersion"), status.get("candidateVersion")} - {None}
    versions: set[str] = set()
    for entry in status.get("versions") or []:
        keep = entry.get("number") in live or entry.get("state") in KEPT_STATES
        if keep and entry.get("datasetVersion"):
            versions.add(str(entry["datasetVersion"]))
    training = (model.get("spec") or {}).get("training") or {}
    pinned = (training.get("datasetRef") or {}).get("version")
    if pinned:
        versions.add(str(pinned))
    return frozenset(versions)


def versions_a_run_protects(run: Mapping[str, Any]) -> frozenset[str]:
    """The dataset version an unfinished TrainingRun trains on (its Job reads it, maybe
    again on a retry), recorded or pinned; nothing once the run finished."""
    status = run.get("status") or {}
    if status.get("phase") in FINISHED_PHASES:
        return frozenset()
    pinned = ((run.get("spec") or {}).get("datasetRef") or {}).get("version")
    return frozenset(str(v) for v in (status.get("datasetVersion"), pinned) if v)


def protected_versions(
    models: Iterable[Mapping[str, Any]], runs: Iterable[Mapping[str, Any]]
) -> set[str]:
    """Every dataset version the models and unfinished runs of a namespace still need."""
    versions: set[str] = set()
    for model in models:
        versions |= versions_a_model_protects(model)
    for run in runs:
        versions |= versions_a_run_protects(run)
    return versions
