"""What a status report writes into Device status (the gateway's pure decision)."""

from __future__ import annotations

from edgeops.api.wire import StatusReport
from edgeops.gateway.reports import wanted_status

DEVICE = {"metadata": {"name": "d1", "namespace": "ns"}, "spec": {"approval": "Approved"}}


def test_a_version_change_records_the_rollout_that_assigned_it() -> None:
    """status.rollout names the FleetRollout that last changed the version (`edgeops
    lineage` shows it); a report of the same version leaves it alone."""
    report = StatusReport.model_validate({"sequence": 3, "model": "m", "version": 2})
    wanted, _ = wanted_status(DEVICE, {"version": 1, "rollout": "to-v1"}, report, 0.0, "to-v2")
    assert (wanted["version"], wanted["rollout"]) == (2, "to-v2")
    same, _ = wanted_status(DEVICE, {"version": 2, "rollout": "to-v2"}, report, 0.0, None)
    assert "rollout" not in same
    # A version no rollout assigns (the model's current version, or set by hand): none.
    manual, _ = wanted_status(DEVICE, {"version": 1, "rollout": "to-v1"}, report, 0.0, None)
    assert manual["rollout"] is None
