"""The condition helper follows metav1.Condition semantics and never mutates its input."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone

import pytest

from edgeops.api import Condition, ConditionType, Reason
from edgeops.api.conditions import (
    Verdict,
    get_condition,
    is_true,
    set_condition,
    unknown_conditions,
    update_conditions,
)

T0 = datetime(2025, 6, 2, 8, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_first_sight_appends_with_now() -> None:
    result = set_condition([], "Ready", "Unknown", "Reconciling", "starting", 1, T0)
    assert result == [
        {
            "type": "Ready",
            "status": "Unknown",
            "reason": "Reconciling",
            "message": "starting",
            "lastTransitionTime": "2025-06-02T08:00:00Z",
            "observedGeneration": 1,
        }
    ]
    Condition.model_validate(result[0])  # the shape the CRD schema accepts


def test_same_status_keeps_transition_time_but_updates_the_rest() -> None:
    first = set_condition(None, "Ready", "False", "JobRunning", "epoch 1", 1, T0)
    second = set_condition(first, "Ready", "False", "JobFailed", "epoch 9 died", 2, T1)
    assert second[0]["lastTransitionTime"] == "2025-06-02T08:00:00Z"
    assert (second[0]["reason"], second[0]["message"]) == ("JobFailed", "epoch 9 died")
    assert second[0]["observedGeneration"] == 2


def test_status_flip_moves_transition_time() -> None:
    first = set_condition(None, "Ready", "Unknown", "Reconciling", "", 1, T0)
    second = set_condition(first, "Ready", "True", "Collected", "80 samples", 1, T1)
    assert second[0]["lastTransitionTime"] == "2025-06-02T08:05:00Z"
    assert second[0]["status"] == "True"


def test_input_is_not_mutated_and_other_types_keep_their_order() -> None:
    start = unknown_conditions(["Ready", "DataDrift", "ConceptDrift"], 3, T0)
    snapshot = copy.deepcopy(start)
    result = set_condition(start, "DataDrift", "True", "DriftDetected", "psi 0.4 > 0.25", 3, T1)
    assert start == snapshot
    assert [c["type"] for c in result] == ["Ready", "DataDrift", "ConceptDrift"]
    assert result[0] == start[0] and result[2] == start[2]
    assert result[1]["lastTransitionTime"] == "2025-06-02T08:05:00Z"


def test_unknown_conditions() -> None:
    result = unknown_conditions([ConditionType.READY, ConditionType.SUCCEEDED], 4, T0)
    assert [(c["type"], c["status"], c["reason"]) for c in result] == [
        ("Ready", "Unknown", Reason.RECONCILING),
        ("Succeeded", "Unknown", Reason.RECONCILING),
    ]
    assert all(c["observedGeneration"] == 4 for c in result)


def test_get_and_is_true() -> None:
    conditions = set_condition(None, "Ready", "True", "Reconciled", "", None, T0)
    found = get_condition(conditions, "Ready")
    assert found is not None and "observedGeneration" not in found
    found["status"] = "False"  # a copy: changing it does not touch the list
    assert is_true(conditions, "Ready")
    assert get_condition(conditions, "Succeeded") is None
    assert not is_true(conditions, "Succeeded")
    assert not is_true(None, "Ready")


def test_time_is_normalised_to_utc() -> None:
    cest = timezone(timedelta(hours=2))
    result = set_condition(None, "Ready", "True", "Reconciled", "", 1, T0.astimezone(cest))
    assert result[0]["lastTransitionTime"] == "2025-06-02T08:00:00Z"


@pytest.mark.parametrize(
    ("status", "reason", "now"),
    [
        ("true", "Reconciled", T0),  # status is case-sensitive
        ("True", "not camel case", T0),
        ("True", "", T0),
        ("True", "Reconciled", datetime(2025, 1, 1)),  # naive time is ambiguous
    ],
)
def test_rejects_what_the_api_server_would(status: str, reason: str, now: datetime) -> None:
    with pytest.raises(ValueError):
        set_condition(None, "Ready", status, reason, "", 1, now)


def test_long_message_is_truncated_to_the_api_limit() -> None:
    result = set_condition(None, "Ready", "False", "JobFailed", "x" * 40000, 1, T0)
    assert len(result[0]["message"]) == 32768
    Condition.model_validate(result[0])


def test_update_conditions_shows_every_type_in_order_from_the_first_write() -> None:
    result = update_conditions(
        None,
        {"StorageAvailable": Verdict("False", "StorageUnavailable", "S3 down")},
        3,
        T0,
        ensure=("Ready", "Validated", "StorageAvailable"),
    )
    assert [(c["type"], c["status"], c["reason"]) for c in result] == [
        ("Ready", "Unknown", "Reconciling"),
        ("Validated", "Unknown", "Reconciling"),
        ("StorageAvailable", "False", "StorageUnavailable"),
    ]
    assert all(c["observedGeneration"] == 3 for c in result)


def test_update_conditions_keeps_transition_times_of_unflipped_types() -> None:
    first = update_conditions(None, {"Ready": ("True", "Reconciled", "a")}, 1, T0)
    later = T0 + timedelta(minutes=5)
    again = update_conditions(
        first, {"Ready": ("True", "Reconciled", "b"), "Degraded": ("True", "X", "c")}, 2, later
    )
    ready = get_condition(again, "Ready")
    assert ready is not None and ready["lastTransitionTime"] == "2025-06-02T08:00:00Z"
    assert ready["message"] == "b" and ready["observedGeneration"] == 2
    degraded = get_condition(again, "Degraded")
    assert degraded is not None and degraded["lastTransitionTime"] == "2025-06-02T08:05:00Z"
    assert first[0]["message"] == "a"  # the input list is not mutated


def test_update_conditions_refuses_a_reason_that_is_not_camel_case() -> None:
    with pytest.raises(ValueError):
        update_conditions(None, {"Ready": ("False", "not camel", "")}, 1, T0)
