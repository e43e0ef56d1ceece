"""Which dataset versions retention must keep: pure functions over EdgeModels and
TrainingRuns as the API server has them (plain dicts, from the operator's watch cache)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from edgeops.api.trainingrun import FINISHED_PHASES
from edgeops.policy.registry import PROMOTABLE

#: Version states whose dataset version is kept: a rollback can return to any approved
#: version, and a candidate may still be approved.
KEPT_STATES = (*PROMOTABLE, "Candidate")


#: Dataset version id -> who uses it ("EdgeModel fraud v3 (Approved)"), for Events.
Uses = dict[str, tuple[str, ...]]


def _add(uses: dict[str, list[str]], version: Any, user: str) -> None:
    if version:
        uses.setdefault(str(version), []).append(user)


def model_uses(model: Mapping[str, Any]) -> Uses:
    """The dataset versions behind the model's current, candidate, approved and candidate
    versions, and the one its training template pins, each with who uses it."""
    name = (model.get("metadata") or {}).get("name") or "?"
    status = model.get("status") or {}
    live = {status.get("currentVersion"), status.get("candidateVersion")} - {None}
    uses: dict[str, list[str]] = {}
    for entry in status.get("versions") or []:
        number, state = entry.get("number"), entry.get("state")
        if number in live or state in KEPT_STATES:
            role = "current" if number == status.get("currentVersion") else state
            _add(uses, entry.get("datasetVersion"), f"EdgeModel {name} v{number} ({role})")
    training = (model.get("spec") or {}).get("training") or {}
    pinned = (training.get("datasetRef") or {}).get("version")
    _add(uses, pinned, f"EdgeModel {name} (pinned in spec.training.datasetRef)")
    return {version: tuple(users) for version, users in uses.items()}


def run_uses(run: Mapping[str, Any]) -> Uses:
    """The dataset version an unfinished TrainingRun trains on (its Job reads it, maybe
    again on a retry), recorded or pinned, with who uses it; nothing once it finished."""
    status = run.get("status") or {}
    if status.get("phase") in FINISHED_PHASES:
        return {}
    name = (run.get("metadata") or {}).get("name") or "?"
    user = f"TrainingRun {name} ({status.get('phase') or 'Pending'})"
    pinned = ((run.get("spec") or {}).get("datasetRef") or {}).get("version")
    return {str(v): (user,) for v in {status.get("datasetVersion"), pinned} if v}


def versions_a_model_protects(model: Mapping[str, Any]) -> frozenset[str]:
    """Dataset versions behind the model's current, candidate, approved and candidate
    versions, and the dataset version its training template pins."""
    return frozenset(model_uses(model))


def versions_a_run_protects(run: Mapping[str, Any]) -> frozenset[str]:
    """The dataset version an unfinished TrainingRun trains on; nothing once it finished."""
    return frozenset(run_uses(run))


def merge_uses(all_uses: Iterable[Mapping[str, Sequence[str]]]) -> Uses:
    """One namespace's uses, from each model's and run's (an index's values)."""
    merged: dict[str, list[str]] = {}
    for uses in all_uses:
        for version, users in uses.items():
            merged.setdefault(version, []).extend(users)
    return {version: tuple(users) for version, users in merged.items()}


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
