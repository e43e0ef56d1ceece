"""What happens to a deleted FleetRollout's devices, said with the numbers.

Deleting a rollout removes its decision; the devices it governed follow what governs them
next (:mod:`edgeops.policy.desired`): an older rollout of their model that selects them,
else the EdgeModel's ``currentVersion``. That is the only behaviour consistent with "the
newest rollout selecting a device governs it" and with GitOps (a rollout removed from Git
must stop deciding). The anchors do the same and are explicit about it: Flagger's
``revertOnDeletion`` puts the target back, Argo Rollouts deletes the workload with its
ReplicaSets, Mender and hawkBit leave devices on what they installed. What they do not
do is move devices without saying so, which is what EdgeOps did: a mid-way deletion
handed the canary cohort to an older Succeeded rollout's version (a silent downgrade).

:func:`handoff` computes, for the devices the deleted rollout governed, who governs them
now, which version each is told, and how many will install something because of it;
:func:`handoff_message` is the Event text (the FleetRollout controller posts it on the
deleted rollout and on each rollout that takes devices over).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from edgeops.api.constants import Labels
from edgeops.api.fleetrollout import HandOver
from edgeops.policy.desired import RolloutView, desired_version, governing_rollout, moved
from edgeops.policy.rollout import FleetDevice


@dataclass(frozen=True)
class HandoffGroup:
    """Devices that went to the same next decision."""

    rollout: str | None  # the rollout that governs them now; None: no rollout
    version: int | None  # the version they are told now; None: nothing assigned
    devices: int
    updating: int  # of them: told a version other than the one they run (they will install)


@dataclass(frozen=True)
class Handoff:
    """The deleted rollout's devices: how many it governed, how many it had given its
    version, and where they went (largest group first)."""

    governed: int
    moved: int
    groups: tuple[HandoffGroup, ...]


def handoff(
    deleted: RolloutView,
    remaining: Sequence[RolloutView],
    devices: Iterable[FleetDevice],
    current_versions: Mapping[str, int | None],
) -> Handoff:
    """Where the devices ``deleted`` governed go now that only ``remaining`` (the
    namespace's other rollouts) decide. ``devices``: the namespace's devices that may be
    the rollout's (its model's and unlabelled ones; only approved, not decommissioned ones
    are served, so only those count); ``current_versions``: EdgeModel name -> currentVersion."""
    others = [r for r in remaining if r.uid != deleted.uid]
    governed = moved_count = 0
    groups: Counter[tuple[str | None, int | None]] = Counter()
    updating: Counter[tuple[str | None, int | None]] = Counter()
    for device in devices:
        if not device.eligible:
            continue
        model = device.labels.get(Labels.MODEL)
        before = governing_rollout(device.labels, [*others, deleted], model)
        if before is None or before.uid != deleted.uid:
            continue
        governed += 1
        moved_count += moved(deleted, device.name, device.labels)
        after = desired_version(device.name, device.labels, current_versions, others)
        governor = governing_rollout(device.labels, others, model)
        key = (
            None if governor is None else governor.name,
            None if after is None else after.version,
        )
        groups[key] += 1
        if after is not None and device.version != after.version:
            updating[key] += 1
    ordered = sorted(groups.items(), key=lambda kv: (-kv[1], str(kv[0])))
    return Handoff(
        governed=governed,
        moved=moved_count,
        groups=tuple(HandoffGroup(r, v, n, updating[(r, v)]) for (r, v), n in ordered),
    )


def _group_text(group: HandoffGroup, rollouts: Mapping[str, RolloutView]) -> str:
    if group.rollout is not None:
        view = rollouts.get(group.rollout)
        where = f"FleetRollout {group.rollout}" + (
            f" ({view.phase}, v{view.version})" if view is not None else ""
        )
    else:
        where = "no rollout (the EdgeModel's currentVersion)"
    if group.version is None:
        return f"{group.devices} to {where}: nothing assigned, they keep what they run"
    return (
        f"{group.devices} to {where}: told v{group.version}, {group.updating} of them run "
        "another version and will install it"
    )


def handoff_message(
    deleted: RolloutView, result: Handoff, remaining: Sequence[RolloutView] = ()
) -> str:
    """The Event text: ``FleetRollout r2 (v3, Progressing at 50 %) was deleted: it governed
    20 device(s), 9 told v3; now 20 to FleetRollout r1 (Succeeded, v2): told v2, 9 of them
    run another version and will install it``."""
    state = f"v{deleted.version}, {deleted.phase or 'Pending'}" + (
        f" at {deleted.percent} %" if deleted.phase in ("Progressing", "Paused") else ""
    )
    head = f"FleetRollout {deleted.name} ({state}) was deleted"
    if not result.governed:
        return f"{head}: it governed no device; nothing changes"
    by_name = {r.name: r for r in remaining}
    return (
        f"{head}: it governed {result.governed} device(s), {result.moved} told "
        f"v{deleted.version}; now " + "; ".join(_group_text(g, by_name) for g in result.groups)
    )


#: status.handedOver keeps the newest records only (the CRD's maxItems).
MAX_HAND_OVERS = 10


def merge_hand_overs(recorded: Sequence[HandOver], noted: Iterable[HandOver]) -> list[HandOver]:
    """``status.handedOver`` with the hand-overs ``noted`` since (by the deletion handler)
    added once each (same rollout and time), oldest first, the newest
    :data:`MAX_HAND_OVERS` kept."""
    merged = {(r.rollout, r.at): r for r in recorded}
    for record in noted:
        merged.setdefault((record.rollout, record.at), record)
    ordered = sorted(merged.values(), key=lambda r: (r.at, r.rollout))
    return ordered[-MAX_HAND_OVERS:]
