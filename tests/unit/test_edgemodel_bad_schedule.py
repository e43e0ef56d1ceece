"""A retrain.schedule the cron parser refuses (stored while the webhook was down) turns off
that trigger only (trial of issue 16, C8): ScheduleValid=False with reason InvalidSpec and
one Warning Event, while the rest of the EdgeModel is reconciled; fixed, the condition goes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import kopf
import pytest

from edgeops.api.edgemodel import EdgeModelSpec, EdgeModelStatus
from edgeops.controllers import edgemodel
from edgeops.policy import admission

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
SPEC = {
    "training": {"datasetRef": {"name": "d"}, "exports": ["onnx"]},
    "targets": [{"name": "pi", "targetType": "linux", "format": "onnx"}],
    "retrain": {"schedule": "0 0 * * FRI-MON"},
}


@pytest.fixture
def warnings(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []

    def warning(_: Any, *, reason: str, message: str) -> None:
        seen.append((reason, message))

    monkeypatch.setattr(edgemodel.events, "warning", warning)
    return seen


def _pass(old: dict[str, Any], problem: str) -> dict[str, Any]:
    """One reconcile's schedule handling and status write: the status after it."""
    spec = EdgeModelSpec.model_validate(SPEC)
    body = kopf.Body({"metadata": {"name": "m", "uid": "u"}})  # type: ignore[arg-type]
    tick = edgemodel.Tick(body, "ns", "m", spec, EdgeModelStatus.model_validate(old), NOW)
    edgemodel._schedule_condition(tick, old, problem)
    patch = kopf.Patch()
    edgemodel._write(
        patch, old, tick.status, 1, NOW, tick.conditions, dropped=tick.dropped_conditions
    )
    return {**old, **patch.get("status", {})}


def test_a_bad_schedule_is_its_own_condition_and_one_event(
    warnings: list[tuple[str, str]],
) -> None:
    # The models admit the spec (the CRD pattern only checks the shape); the parser does not.
    EdgeModelSpec.model_validate(SPEC)
    problem = "; ".join(admission.schedule_errors("edgemodels", SPEC))
    assert problem == (
        "spec.retrain.schedule: cron day-of-week 'FRI-MON': the range FRI-MON is reversed "
        "(5 > 1); cron ranges do not wrap around, write FRI-SAT,SUN-MON"
    )
    status = _pass({}, problem)
    valid = next(c for c in status["conditions"] if c["type"] == "ScheduleValid")
    assert (valid["status"], valid["reason"]) == ("False", "InvalidSpec")
    assert valid["message"] == (
        f"{problem}; the schedule trigger is off until it is fixed (the other triggers, gates, "
        "promotion and rollouts keep working)"
    )
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] != "InvalidSpec"  # the model itself is not blocked
    again = _pass(status, problem)
    assert warnings == [("InvalidSpec", valid["message"])]  # not one Event per pass
    fixed = _pass(again, "")
    assert "ScheduleValid" not in {c["type"] for c in fixed["conditions"]}
