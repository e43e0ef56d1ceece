"""What a device should run: a pure function of the device, its EdgeModel and the
FleetRollouts of its namespace. Used by the gateway (desired state) and by the FleetRollout
controller (which devices a step targets), so both always agree.

* The device's model is its ``edgeops.dev/model`` label (set at enrollment from the
  bootstrap token's labels, or by a person); a device without one follows the newest active
  rollout that selects it, if any.
* Its version is the model's ``status.currentVersion``, overridden by the newest active
  FleetRollout (phase Progressing or Paused) of that model whose selector matches the
  device's labels and whose cohort admits the device: the device's bucket
  ``int(sha256(rollout_uid + "/" + device_name)) % 10000`` is below ``100 * percent`` of the
  rollout's current step. No per-device state: the same device stays in the cohort as the
  percent grows, and a new rollout (new uid) draws new cohorts.
* Its target is the EdgeModel target of the device's type whose ``hardware`` equals the
  device's, else the first one of its type without ``hardware``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from edgeops.api.common import LabelSelector
from edgeops.api.constants import Labels
from edgeops.api.edgemodel import Target

BUCKETS: Final = 10000
ACTIVE_PHASES: Final = frozenset({"Progressing", "Paused"})
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


@dataclass(frozen=True)
class Desired:
    model: str
    version: int
    rollout: str | None  # the FleetRollout that chose the version, None for the baseline
    cohort: Cohort


def active_rollout(
    device_name: str,
    labels: Mapping[str, str],
    rollouts: Sequence[RolloutView],
    model: str | None,
) -> RolloutView | None:
    """The newest active rollout (of ``model`` when given) that targets the device now."""
    chosen: RolloutView | None = None
    for rollout in rollouts:
        if rollout.phase not in ACTIVE_PHASES or rollout.percent <= 0:
            continue
        if model is not None and rollout.model != model:
            continue
        if not selector_matches(rollout.selector, labels):
            continue
        if not in_cohort(rollout.uid, device_name, rollout.percent):
            continue
        if chosen is None or (rollout.created, rollout.name) > (chosen.created, chosen.name):
            chosen = rollout
    return chosen


def desired_version(
    device_name: str,
    labels: Mapping[str, str],
    current_versions: Mapping[str, int | None],
    rollouts: Sequence[RolloutView],
) -> Desired | None:
    """What the device should run, or None when nothing is assigned to it.
    ``current_versions`` maps EdgeModel names of the namespace to their current version."""
    model = labels.get(Labels.MODEL)
    rollout = active_rollout(device_name, labels, rollouts, model)
    if rollout is not None:
        return Desired(rollout.model, rollout.version, rollout.name, "canary")
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
