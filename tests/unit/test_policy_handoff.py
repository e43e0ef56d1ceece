"""A deleted FleetRollout's devices (edgeops.policy.handoff) and the EdgeModel's fleet record
(edgeops.policy.promotion.fleet_record): the trial deleted a rollout mid-way and its devices
silently went to an older rollout's version while status.fleetRollout named the deleted
rollout."""

from __future__ import annotations

from dataclasses import replace

from edgeops.policy.desired import RolloutView, desired_version, in_cohort
from edgeops.policy.handoff import handoff, handoff_message
from edgeops.policy.promotion import fleet_record
from edgeops.policy.rollout import FleetDevice

MODEL = {"edgeops.dev/model": "m"}
OLD = RolloutView("r1", "uid-1", "2026-01-01T00:00:00Z", "m", 2, "Succeeded", 100, None, 1)
NEW = RolloutView("r2", "uid-2", "2026-01-02T00:00:00Z", "m", 3, "Progressing", 50, None, 2)


def device(name: str, version: int | None, **fields: object) -> FleetDevice:
    base = FleetDevice(name, MODEL, True, "linux", None, version, None, None, None, None, 60)
    return replace(base, **fields)  # type: ignore[arg-type]


def fleet() -> list[FleetDevice]:
    """20 devices: those in r2's 50 % cohort run v3, the others v2."""
    return [device(f"d{i:02}", 3 if in_cohort(NEW.uid, f"d{i:02}", 50) else 2) for i in range(20)]


def test_mid_way_deletion_hands_the_devices_to_the_older_rollout_with_the_numbers() -> None:
    devices = fleet()
    moved = sum(d.version == 3 for d in devices)
    assert 0 < moved < 20
    extra = [
        device("off", 2, eligible=False),  # not served: not counted
        replace(device("other", 1), labels={"edgeops.dev/model": "x"}),  # another model
    ]
    result = handoff(NEW, [OLD, NEW], devices + extra, {"m": 2})
    assert (result.governed, result.moved) == (20, moved)
    [group] = result.groups
    assert (group.rollout, group.version, group.devices, group.updating) == ("r1", 2, 20, moved)
    # What the gateway now answers agrees: every one of them is told v2.
    assert all(desired_version(d.name, d.labels, {"m": 2}, [OLD]).version == 2 for d in devices)  # type: ignore[union-attr]
    message = handoff_message(NEW, result, [OLD])
    assert message == (
        f"FleetRollout r2 (v3, Progressing at 50 %) was deleted: it governed 20 device(s), "
        f"{moved} told v3; now 20 to FleetRollout r1 (Succeeded, v2): told v2, {moved} of "
        "them run another version and will install it"
    )


def test_deletion_without_an_older_rollout_falls_back_to_the_current_version() -> None:
    devices = fleet()
    result = handoff(NEW, [NEW], devices, {"m": 3})
    [group] = result.groups
    assert (group.rollout, group.version, group.devices) == (None, 3, 20)
    assert group.updating == sum(d.version != 3 for d in devices)
    assert "20 to no rollout (the EdgeModel's currentVersion): told v3" in handoff_message(
        NEW, result
    )
    nothing = handoff(NEW, [NEW], devices, {"m": None})
    assert nothing.groups[0].version is None
    assert "nothing assigned, they keep what they run" in handoff_message(NEW, nothing)


def test_a_rollout_that_governed_no_device_says_so() -> None:
    newer = replace(NEW, name="r3", uid="uid-3", created="2026-01-03T00:00:00Z")
    result = handoff(NEW, [OLD, NEW, newer], fleet(), {"m": 2})
    assert result.governed == 0 and result.groups == ()
    assert handoff_message(NEW, result).endswith("it governed no device; nothing changes")


def test_fleet_record_never_names_a_deleted_rollout() -> None:
    done = replace(NEW, phase="Succeeded", percent=100)
    assert fleet_record("m", [OLD, done], 3, "r2").reason is None  # unchanged
    moved_on = fleet_record("m", [OLD], 3, "r2")  # r2 deleted: back to r1
    assert (moved_on.version, moved_on.rollout, moved_on.reason) == (2, "r1", "FleetRecordCleared")
    assert "FleetRollout r2 no longer exists" in moved_on.message and "(was v3)" in moved_on.message
    cleared = fleet_record("m", [], 2, "r1")
    assert (cleared.version, cleared.rollout, cleared.reason) == (None, None, "FleetRecordCleared")
    assert "status.fleetVersion (was v2) and fleetRollout cleared" in cleared.message
    assert fleet_record("m", [], None, None).reason is None
    fresh = fleet_record("m", [OLD, done], 2, "r1")
    assert (fresh.version, fresh.rollout, fresh.reason) == (3, "r2", "FleetUpdated")
