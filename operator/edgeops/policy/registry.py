"""The model registry kept in EdgeModel status: immutable, never renumbered versions.

Pure: numbering, building a version from a finished TrainingRun, pruning the bounded status
list, and which versions may become current. The full, unpruned index lives in S3.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from edgeops.api.common import format_time
from edgeops.api.conditions import Verdict
from edgeops.api.constants import Labels, Reason
from edgeops.api.edgemodel import (
    EdgeModelStatus,
    GateVerdict,
    ModelVersion,
    Signature,
    Target,
    VersionState,
)
from edgeops.api.trainingrun import TrainingRunStatus

#: Versions that may be made current (promoted or rolled back to).
PROMOTABLE: tuple[VersionState, ...] = ("Approved",)


def next_number(status: EdgeModelStatus) -> int:
    """Never reuses a number, even one pruned from the bounded status list."""
    highest = max((v.number for v in status.versions), default=0)
    return max(highest, status.latest_version or 0) + 1


def find(status: EdgeModelStatus, number: int | None) -> ModelVersion | None:
    if number is None:
        return None
    return next((v for v in status.versions if v.number == number), None)


def sizes_per_target(targets: Sequence[Target], run: TrainingRunStatus) -> dict[str, int]:
    by_format = {a.format: a.size for a in run.artifacts}
    return {t.name: by_format[t.format] for t in targets if t.format in by_format}


def from_run(
    number: int,
    run_name: str,
    run: TrainingRunStatus,
    targets: Sequence[Target],
    verdict: GateVerdict,
    signature: Signature | None,
    reason: str,
    now: datetime,
) -> ModelVersion:
    """A version for a succeeded run: Approved when its gates passed (and it was signed),
    Rejected otherwise. Never changed afterwards."""
    approved = verdict.passed and signature is not None
    return ModelVersion(
        number=number,
        training_run=run_name,
        dataset_version=run.dataset_version,
        code_version=run.code_version,
        metrics=run.metrics,
        artifacts=list(run.artifacts),
        sizes=sizes_per_target(targets, run),
        gates=verdict,
        signature=signature,
        created=format_time(now),
        state="Approved" if approved else "Rejected",
        reason=reason[:1024],
    )


def failed(
    number: int, run_name: str, run: TrainingRunStatus, reason: str, now: datetime
) -> ModelVersion:
    """A failed run is still recorded (Rejected, with the trainer's reason), so the
    registry shows every attempt and its number is never handed out again."""
    return ModelVersion(
        number=number,
        training_run=run_name,
        dataset_version=run.dataset_version,
        code_version=run.code_version,
        created=format_time(now),
        state="Rejected",
        reason=f"training failed: {reason}"[:1024],
    )


def append(status: EdgeModelStatus, version: ModelVersion, limit: int) -> list[ModelVersion]:
    """The status list with ``version`` added and pruned to ``limit``: Rejected and Retired
    versions go first, then the oldest Approved ones; current and candidate always stay."""
    if find(status, version.number) is not None:
        raise ValueError(f"version {version.number} is already registered")
    versions = [*status.versions, version]
    keep = {status.current_version, status.candidate_version, version.number}
    for states in (("Rejected", "Retired"), ("Candidate", "Approved")):
        for old in list(versions):
            if len(versions) <= limit:
                return versions
            if old.state in states and old.number not in keep:
                versions.remove(old)
    return versions


def promotable(status: EdgeModelStatus, number: int) -> str | None:
    """None when ``number`` may become current, else why not."""
    version = find(status, number)
    if version is None:
        known = ", ".join(str(v.number) for v in status.versions) or "none"
        return f"version {number} is not in the registry (known: {known})"
    if version.state not in PROMOTABLE:
        return f"version {number} is {version.state}: {version.reason or 'not approved'}"
    return None


def rollback_target(status: EdgeModelStatus) -> int | None:
    """The newest approved version older than the current one."""
    current = status.current_version or 0
    older = [v.number for v in status.versions if v.state in PROMOTABLE and v.number < current]
    return max(older, default=None)


def readiness(status: EdgeModelStatus, training: Sequence[tuple[str, str | None]]) -> Verdict:
    """The EdgeModel's Ready condition: True once a version is current (reason Training
    while runs are active); otherwise False with what it waits for: a run (Training), a
    person's approval (AwaitingApproval), or a first version (NoVersion). ``training`` is
    (run name, trigger reason) of each active TrainingRun."""
    parts = []
    if status.current_version:
        parts.append(f"v{status.current_version} current")
    if status.candidate_version:
        parts.append(f"v{status.candidate_version} awaiting promotion")
    parts.append(f"{len(status.versions)} version(s) registered")
    if training:
        names = ", ".join(f"{name} ({reason or '?'})" for name, reason in training)
        parts.append(f"training {names}")
    message = "; ".join(parts)
    if status.current_version:
        return Verdict("True", Reason.TRAINING if training else Reason.RECONCILED, message)
    if training:
        return Verdict("False", Reason.TRAINING, message)
    if status.candidate_version:
        return Verdict("False", Reason.AWAITING_APPROVAL, message)
    return Verdict("False", Reason.NO_VERSION, message)


def lineage(model: Mapping[str, Any], devices: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per Device of ``model`` (its ``edgeops.dev/model`` label, or the model it reports):
    the version it runs and that version's TrainingRun, dataset version and signing key,
    from the EdgeModel's registry (``status.versions``); sorted by device name. A version the
    registry does not know (or no version) leaves those fields None."""
    name = (model.get("metadata") or {}).get("name")
    versions = {
        int(v["number"]): v
        for v in (model.get("status") or {}).get("versions") or ()
        if isinstance(v, Mapping) and "number" in v
    }
    rows = []
    for device in devices:
        meta, status = device.get("metadata") or {}, device.get("status") or {}
        labelled = (meta.get("labels") or {}).get(Labels.MODEL)
        if name not in (labelled, status.get("model")):
            continue
        running = status.get("version")
        entry = versions.get(int(running)) if running is not None else None
        rows.append(
            {
                "device": meta.get("name"),
                "version": running,
                "rollout": status.get("rollout"),
                "update": (status.get("update") or {}).get("phase"),
                "trainingRun": (entry or {}).get("trainingRun"),
                "datasetVersion": (entry or {}).get("datasetVersion"),
                "signedBy": ((entry or {}).get("signature") or {}).get("keyId"),
            }
        )
    return sorted(rows, key=lambda r: str(r["device"]))
