"""Device decisions: Ready/Enrolled/Updated, health Unknown once stale, what the sweep
looks at, and which transitions are announced with an Event (once)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from edgeops.api.common import format_time
from edgeops.api.conditions import get_condition
from edgeops.api.device import DeviceSpec
from edgeops.policy import device as policy

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
WRITE = 60.0  # the gateway's lastSeen write interval


def _body(
    spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "plant-a",
            "name": "cam-1",
            "uid": "u-1",
            "generation": 2,
            "resourceVersion": "7",
        },
        "spec": {"targetType": "linux", **(spec or {})},
        "status": status or {},
    }


def _seen(seconds_ago: float) -> str:
    return format_time(NOW - timedelta(seconds=seconds_ago))


def _apply(body: dict[str, Any], now: datetime = NOW) -> policy.Evaluation:
    """Evaluates ``body`` and writes the result into it, as the API server would."""
    outcome = policy.evaluate(policy.view_of(body), now, WRITE)
    body["status"] = {**body["status"], **outcome.status}
    return outcome


def _condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    found = get_condition(body["status"].get("conditions"), type_)
    assert found is not None, type_
    return found


def test_the_report_interval_defaults_and_is_bounded() -> None:
    assert DeviceSpec(target_type="linux").report_interval_seconds == 60
    schema = DeviceSpec.model_json_schema(by_alias=True)["properties"]["reportIntervalSeconds"]
    assert (schema["minimum"], schema["maximum"]) == (5, 86400)


def test_threshold_is_three_intervals_of_the_coarser_of_report_and_lastseen_write() -> None:
    assert policy.staleness_threshold(5, 60) == 180
    assert policy.staleness_threshold(600, 60) == 1800


def test_an_approved_healthy_device_seen_recently_is_ready() -> None:
    body = _body({"approval": "Approved"}, {"lastSeen": _seen(10), "health": "Healthy"})
    outcome = _apply(body)
    ready = _condition(body, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Healthy")
    assert "threshold 180 s = 3 x max(reportIntervalSeconds 60" in ready["message"]
    assert _condition(body, "Enrolled")["reason"] == "Approved"
    assert _condition(body, "Updated")["reason"] == "NoUpdate"
    assert body["status"]["enrollment"] == "Approved"
    assert body["status"]["observedGeneration"] == 2
    assert [a.reason for a in outcome.announcements] == ["Approved"]


def test_enrollment_decides_ready_first() -> None:
    cases = [
        ({"approval": "Pending"}, "EnrollmentPending", "Pending"),
        ({"approval": "Rejected"}, "EnrollmentRejected", "Rejected"),
        ({"approval": "Approved", "decommissioned": True}, "Decommissioned", "Revoked"),
    ]
    for spec, reason, enrollment in cases:
        body = _body(spec, {"lastSeen": _seen(1), "health": "Healthy"})
        _apply(body)
        ready = _condition(body, "Ready")
        assert (ready["status"], ready["reason"]) == ("False", reason), spec
        assert _condition(body, "Enrolled")["reason"] == reason
        assert body["status"]["enrollment"] == enrollment


def test_health_decides_ready_of_an_approved_device_seen_recently() -> None:
    for health, expected in [
        ("Degraded", ("True", "Degraded")),
        ("Unhealthy", ("False", "Unhealthy")),
        (None, ("Unknown", "HealthNotReported")),
    ]:
        status = {"lastSeen": _seen(1), **({"health": health} if health else {})}
        body = _body({"approval": "Approved"}, status)
        _apply(body)
        ready = _condition(body, "Ready")
        assert (ready["status"], ready["reason"]) == expected


def test_an_approved_device_that_never_reported_is_unknown() -> None:
    body = _body({"approval": "Approved"})
    _apply(body)
    ready = _condition(body, "Ready")
    assert (ready["status"], ready["reason"]) == ("Unknown", "NeverSeen")
    assert "health" not in body["status"]


def test_a_device_not_seen_for_three_intervals_is_unknown_with_the_numbers() -> None:
    spec = {"approval": "Approved", "reportIntervalSeconds": 5}
    body = _body(spec, {"lastSeen": _seen(3600), "health": "Healthy"})
    _apply(body)
    ready = _condition(body, "Ready")
    assert (ready["status"], ready["reason"]) == ("Unknown", "NotSeen")
    assert ready["message"].startswith(f"last seen at {_seen(3600)}, 3600 s before")
    assert (
        "threshold 180 s = 3 x max(reportIntervalSeconds 5, gateway lastSeen interval 60 s)"
        in (ready["message"])
    )
    assert body["status"]["health"] == "Unknown"


def test_the_threshold_is_exclusive() -> None:
    body = _body({"approval": "Approved"}, {"lastSeen": _seen(180), "health": "Healthy"})
    _apply(body)
    assert _condition(body, "Ready")["status"] == "True"
    _apply(body, NOW + timedelta(seconds=1))
    assert _condition(body, "Ready")["reason"] == "NotSeen"


def test_a_stale_device_is_written_once_and_not_again_while_it_stays_away() -> None:
    body = _body({"approval": "Approved"}, {"lastSeen": _seen(10), "health": "Healthy"})
    _apply(body)
    assert policy.evaluate(policy.view_of(body), NOW, WRITE).status == {}  # nothing changed
    later = NOW + timedelta(seconds=600)
    view = policy.view_of(body)
    assert policy.needs_sweep(view, later, WRITE)
    assert set(_apply(body, later).status) == {"conditions", "health"}
    # Later sweeps: marked already, nothing to write (the message keeps its numbers).
    view = policy.view_of(body)
    assert not policy.needs_sweep(view, later + timedelta(seconds=600), WRITE)
    assert policy.evaluate(view, later + timedelta(seconds=600), WRITE).status == {}


def test_the_device_reporting_again_makes_it_ready() -> None:
    body = _body({"approval": "Approved"}, {"lastSeen": _seen(3600), "health": "Healthy"})
    _apply(body)
    body["status"].update(lastSeen=_seen(0), health="Healthy")  # the gateway's write
    _apply(body)
    assert _condition(body, "Ready")["reason"] == "Healthy"


def test_the_sweep_looks_only_at_stale_unmarked_devices() -> None:
    fresh = _body({"approval": "Approved"}, {"lastSeen": _seen(10), "health": "Healthy"})
    stale = _body({"approval": "Approved"}, {"lastSeen": _seen(900), "health": "Healthy"})
    never = _body({"approval": "Approved"})
    pending = _body({}, {"lastSeen": _seen(900), "health": "Unknown"})
    views = [policy.view_of(b) for b in (fresh, stale, never, pending)]
    assert policy.stale_views(views, NOW, WRITE) == [views[1]]


def test_update_outcomes_set_updated_and_are_announced_once() -> None:
    body = _body({"approval": "Approved"}, {"lastSeen": _seen(1), "health": "Healthy"})
    _apply(body)
    body["status"]["update"] = {"targetVersion": 3, "phase": "Downloading", "time": _seen(1)}
    outcome = _apply(body)
    assert _condition(body, "Updated")["reason"] == "UpdateInProgress"
    assert outcome.announcements == []
    body["status"]["update"] = {
        "targetVersion": 3,
        "phase": "Failed",
        "attempt": 2,
        "reasonCode": "HashMismatch",
        "message": "sha256 differs",
        "time": _seen(0),
    }
    outcome = _apply(body)
    updated = _condition(body, "Updated")
    assert (updated["status"], updated["reason"]) == ("False", "UpdateFailed")
    expected = f"v3 attempt 2: Failed (HashMismatch) at {_seen(0)}: sha256 differs"
    assert updated["message"] == expected
    assert [(a.type, a.reason, a.message) for a in outcome.announcements] == [
        ("Warning", "UpdateFailed", updated["message"])
    ]
    # The same status evaluated again (a restarted operator): nothing written or posted.
    again = policy.evaluate(policy.view_of(body), NOW + timedelta(seconds=5), WRITE)
    assert again.status == {} and again.announcements == []
    body["status"]["update"] = {"targetVersion": 3, "phase": "Committed", "attempt": 3}
    outcome = _apply(body)
    assert _condition(body, "Updated")["status"] == "True"
    assert [(a.type, a.reason) for a in outcome.announcements] == [("Normal", "UpdateCommitted")]


def test_enrollment_transitions_are_announced_once_each() -> None:
    body = _body({"approval": "Pending"}, {"enrollment": "Pending"})
    assert _apply(body).announcements == []
    body["spec"]["approval"] = "Approved"
    assert [a.reason for a in _apply(body).announcements] == ["Approved"]
    body["status"].update(lastSeen=_seen(1), health="Healthy")  # unrelated change
    assert _apply(body).announcements == []
    body["spec"]["decommissioned"] = True
    outcome = _apply(body)
    assert [(a.type, a.reason) for a in outcome.announcements] == [("Normal", "Decommissioned")]
    assert _condition(body, "Ready")["reason"] == "Decommissioned"
    rejected = _body({"approval": "Pending"})
    _apply(rejected)
    rejected["spec"]["approval"] = "Rejected"
    assert [(a.type, a.reason) for a in _apply(rejected).announcements] == [
        ("Warning", "EnrollmentRejected")
    ]


def test_old_decisions_are_not_announced_on_a_first_evaluation() -> None:
    # A device approved and updated long before this controller first saw it.
    old = {
        "enrollment": "Approved",
        "lastSeen": _seen(1),
        "health": "Healthy",
        "update": {"targetVersion": 2, "phase": "Committed", "time": _seen(86400)},
    }
    outcome = _apply(_body({"approval": "Approved"}, old))
    assert outcome.status and outcome.announcements == []


def test_conditions_keep_their_transition_time_while_the_status_holds() -> None:
    body = _body({"approval": "Approved"}, {"lastSeen": _seen(1), "health": "Healthy"})
    _apply(body)
    first = _condition(body, "Ready")["lastTransitionTime"]
    body["status"]["health"] = "Degraded"
    _apply(body, NOW + timedelta(seconds=30))
    ready = _condition(body, "Ready")
    assert (ready["reason"], ready["lastTransitionTime"]) == ("Degraded", first)
