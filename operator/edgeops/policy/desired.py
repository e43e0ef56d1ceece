"""What a device should run: a pure function of the device, its EdgeModel and the
FleetRollouts of its namespace. Used by the gateway (desired state) and by the FleetRollout
controller (which devices a step targets), so both always agree.

* The device's model is its ``edgeops.dev/model`` label (set at enrollment from the
  bootstrap token's labels, or by a person); a device without one follows the newest active
  rollout that selects it, if any.
* The device is *governed* by the newest FleetRollout of that model (by creationTimestamp,
  then name) whose selector matches the device's labels and whose phase is one of
  Progressing, Paused, Aborted, RolledBack or Succeeded (:data:`GOVERNING_PHASES`; a
  rollout not started yet, phase Pending or none, governs nothing). So of two rollouts
  selecting one device the newest wins, and the older one stops counting it.
* What the governing rollout says, by phase:

  - Progressing, Paused: its version when the cohort admits the device (the device's bucket
    ``int(sha256(rollout_uid + "/" + device_name)) % 10000`` is below ``100 * percent`` of
    the current step, or below ``status.admittedBuckets`` while a step ramps up at
    ``spec.maxUpdatesPerMinute``: cohort ``canary``) or the ``selector`` of the current or
    an earlier step chooses it (a lab, one device per site: chosen devices go first,
    whatever their bucket, and are not rate-limited), else the rollout's
    ``status.stableVersion``.
  - Aborted: the same with the percent frozen where it was aborted: devices already moved
    keep the version, no further device is moved.
  - RolledBack: ``status.stableVersion`` for every device it selects (moved devices return).
  - Succeeded: its version for every device it selects.

  ``stableVersion`` is what the controller recorded when the rollout started (the model's
  current version then, see :mod:`edgeops.policy.rollout`). It matters because promotion
  makes the new version current *before* its rollout moves the fleet: falling back to
  ``currentVersion`` would hand the new version to every device outside the cohort, and,
  after a rollback, back to the moved ones. Without a stableVersion the model's current
  version is used.
* No governing rollout: the model's ``status.currentVersion``. No per-device state: the same
  device stays in the cohort as the percent grows, and a new rollout (new uid) draws new
  cohorts.
* Its target is the EdgeModel target of the device's type whose ``hardware`` equals the
  device's, else the first one of its type without ``hardware``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import ValidationError

from edgeops.api.common import LabelSelector
from edgeops.api.constants import Labels
from edgeops.api.edgemodel import Target

BUCKETS: Final = 10000
ACTIVE_PHASES: Final = frozenset({"Progressing", "Paused"})
#: Phases in which a rollout decides what the devices it selects run.
GOVERNING_PHASES: Final = ACTIVE_PHASES | {"Aborted", "RolledBack", "Succeeded"}
Cohort = Literal["canary", "stable"]


def cohort_bucket(rollout_uid: str, device_name: str) -> int:
    """The device's bucket 0..9999 for one rollout."""
    digest = hashlib.sha256(f"{rollout_uid}/{device_name}".encode()).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def in_cohort(rollout_uid: str, device_name: str, percent: int) -> bool:
    """Whether a step at ``percent`` % targets the device."""
    return cohort_bucket(rollout_uid, device_name) < 100 * percent


def selector_matches(selector: LabelSelector | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics; an absent or empty selector matches everything."""
    if selector is None:
        return True
    for key, value in (selector.match_labels or {}).items():
        if labels.get(key) != value:
            return False
    for req in selector.match_expressions or []:
        present = req.key in labels
        values = req.values or []
        if req.operator == "In" and not (present and labels[req.key] in values):
            return False
        if req.operator == "NotIn" and present and labels[req.key] in values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True


@dataclass(frozen=True)
class RolloutView:
    """What the decision needs of one FleetRollout."""

    name: str
    uid: str
    created: str  # RFC 3339 creationTimestamp; newer wins
    model: str
    version: int
    phase: str | None
    percent: int  # the current step's percent, 0 before the first step
    selector: LabelSelector | None
    stable_version: int | None = None  # status.stableVersion: where moved devices return
    #: status.admittedBuckets: the cohort buckets admitted now while a step ramps up at
    #: spec.maxUpdatesPerMinute; None: all of the step's, 100 * percent
    admitted: int | None = None
    #: selectors of the steps up to the current one (spec.steps[].selector): the devices
    #: they choose are moved whatever their cohort bucket
    chosen: tuple[LabelSelector, ...] = ()
    #: spec.deviceRetries: retries of a failed download after the first attempt, and the
    #: first wait (seconds) before one
    retry_limit: int = 2
    retry_backoff_seconds: int = 30


def step_selectors(steps: Sequence[Mapping[str, Any]], current: int | None) -> tuple[Any, ...]:
    """The ``selector`` values (raw) of ``steps[0..current]``; none before the first step."""
    if current is None:
        return ()
    return tuple(s["selector"] for s in steps[: current + 1] if s.get("selector") is not None)


def rollout_view(obj: Mapping[str, Any]) -> RolloutView | None:
    """What this module needs of a FleetRollout object (a dict or a Kopf body), or None if
    it is unreadable. The gateway and the FleetRollout controller's index both read
    rollouts through this, so they see the same phase, percent and stable version."""
    spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, obj.get("metadata") or {}
    try:
        selector = LabelSelector.model_validate(spec["selector"]) if spec.get("selector") else None
        percent = status.get("currentPercent")
        if percent is None and status.get("currentStep") is not None:
            percent = spec["steps"][int(status["currentStep"])]["percent"]
        stable = status.get("stableVersion")
        admitted = status.get("admittedBuckets")
        current = status.get("currentStep")
        chosen = tuple(
            LabelSelector.model_validate(raw)
            for raw in step_selectors(spec["steps"], None if current is None else int(current))
        )
        retries = spec.get("deviceRetries") or {}
        return RolloutView(
            retry_limit=int(retries.get("limit", 2)),
            retry_backoff_seconds=int(retries.get("backoffSeconds", 30)),
            name=meta["name"],
            uid=meta["uid"],
            created=meta.get("creationTimestamp", ""),
            model=spec["modelRef"]["name"],
            version=int(spec["version"]),
            phase=status.get("phase"),
            percent=int(percent or 0),
            selector=selector,
            stable_version=None if stable is None else int(stable),
            admitted=None if admitted is None else int(admitted),
            chosen=chosen,
        )
    except (KeyError, ValueError, IndexError, TypeError, ValidationError):
        return None


@dataclass(frozen=True)
class Desired:
    model: str
    version: int
    rollout: str | None  # the FleetRollout that chose the version, None for the baseline
    cohort: Cohort
    #: (limit, backoff seconds) of the rollout that chose the version; None: the agent's
    retries: tuple[int, int] | None = None
    #: UID of ``rollout``: with the version and manifest it names the update for the agent.
    rollout_uid: str | None = None


def governing_rollout(
    labels: Mapping[str, str],
    rollouts: Sequence[RolloutView],
    model: str | None,
) -> RolloutView | None:
    """The newest rollout (of ``model`` when given) in a :data:`GOVERNING_PHASES` phase
    whose selector matches ``labels``, or None."""
    chosen: RolloutView | None = None
    for rollout in rollouts:
        if rollout.phase not in GOVERNING_PHASES:
            continue
        if model is not None and rollout.model != model:
            continue
        if not selector_matches(rollout.selector, labels):
            continue
        if chosen is None or (rollout.created, rollout.name) > (chosen.created, chosen.name):
            chosen = rollout
    return chosen


def chosen(rollout: RolloutView, labels: Mapping[str, str]) -> bool:
    """Whether a step selector of ``rollout`` (up to its current step) chooses the device.
    An empty selector chooses none here (unlike spec.selector, where it means all)."""
    return any(
        (s.match_labels or s.match_expressions) and selector_matches(s, labels)
        for s in rollout.chosen
    )


def moved(rollout: RolloutView, device_name: str, labels: Mapping[str, str]) -> bool:
    """Whether ``rollout`` (governing the device) gives the device its version now: every
    selected device once Succeeded, none once RolledBack, otherwise the cohort and the
    devices a step selector chose (``labels``: the device's)."""
    if rollout.phase == "Succeeded":
        return True
    if rollout.phase not in ACTIVE_PHASES | {"Aborted"}:
        return False
    if chosen(rollout, labels):
        return True
    if rollout.percent <= 0:
        return False
    if rollout.admitted is None:
        return in_cohort(rollout.uid, device_name, rollout.percent)
    limit = min(rollout.admitted, 100 * rollout.percent)
    return cohort_bucket(rollout.uid, device_name) < limit


def active_rollout(
    device_name: str,
    labels: Mapping[str, str],
    rollouts: Sequence[RolloutView],
    model: str | None,
) -> RolloutView | None:
    """The rollout (of ``model`` when given) that moves the device to its version now: the
    governing rollout when it is active and its cohort admits the device, else None."""
    rollout = governing_rollout(labels, rollouts, model)
    if rollout is None or rollout.phase not in ACTIVE_PHASES:
        return None
    return rollout if moved(rollout, device_name, labels) else None


def desired_version(
    device_name: str,
    labels: Mapping[str, str],
    current_versions: Mapping[str, int | None],
    rollouts: Sequence[RolloutView],
) -> Desired | None:
    """What the device should run, or None when nothing is assigned to it (see the module
    docstring). ``current_versions`` maps EdgeModel names of the namespace to their current
    version."""
    model = labels.get(Labels.MODEL)
    rollout = governing_rollout(labels, rollouts, model)
    if rollout is not None:
        if moved(rollout, device_name, labels):
            cohort: Cohort = "stable" if rollout.phase == "Succeeded" else "canary"
            retries = (rollout.retry_limit, rollout.retry_backoff_seconds)
            return Desired(
                rollout.model, rollout.version, rollout.name, cohort, retries, rollout.uid
            )
        stable = rollout.stable_version or current_versions.get(rollout.model)
        if stable is None:
            return None
        return Desired(rollout.model, stable, None, "stable")
    if model is None:
        return None
    current = current_versions.get(model)
    if current is None:
        return None
    return Desired(model, current, None, "stable")


def choose_target(
    targets: Sequence[Target], target_type: str, hardware: str | None
) -> Target | None:
    """The model's target for a device: same type and hardware, else same type and no
    hardware constraint."""
    same_type = [t for t in targets if t.target_type == target_type]
    for target in same_type:
        if target.hardware is not None and target.hardware == hardware:
            return target
    return next((t for t in same_type if t.hardware is None), None)
