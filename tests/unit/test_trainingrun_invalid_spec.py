"""A TrainingRun spec the models refuse is InvalidSpec once, not a retry loop."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from edgeops.controllers import trainingrun


def _reconcile(body: kopf.Body) -> tuple[float | None, dict[str, Any]]:
    patch = kopf.Patch()
    requeue = trainingrun.reconcile_trainingrun(
        body=body,
        spec=body.spec,
        status=body.status,
        namespace="ns",
        name="run",
        patch=patch,
        observed=trainingrun.Observed(dataset=None, job=None),
    )
    return requeue, dict(patch.get("status", {}))


def test_an_invalid_spec_is_reported_and_waits_for_a_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warnings: list[tuple[str, str]] = []
    monkeypatch.setattr(
        trainingrun.events,
        "warning",
        lambda _b, reason, message: warnings.append((reason, message)),
    )
    raw: dict[str, Any] = {
        "metadata": {"name": "run", "uid": "u1", "generation": 4},
        # exports must name at least one known format: the models refuse an empty list.
        "spec": {"datasetRef": {"name": "d"}, "trainer": {}, "exports": []},
    }
    requeue, status = _reconcile(kopf.Body(raw))
    assert requeue is None  # no retry: only a new generation can change the verdict
    assert status["phase"] == "Pending" and status["observedGeneration"] == 4
    ready, succeeded = status["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "InvalidSpec")
    assert (succeeded["status"], succeeded["reason"]) == ("Unknown", "InvalidSpec")
    assert "exports" in ready["message"].lower() or "at least" in ready["message"].lower()
    assert [w[0] for w in warnings] == ["InvalidSpec"]
    # Reconciled again with that status (woken by its own write): no second Event.
    _reconcile(kopf.Body({**raw, "status": status}))
    assert len(warnings) == 1


def test_a_completed_training_job_removed_during_evaluation_is_not_trained_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The training Job finished and was deleted (by hand, a TTL) while the evaluation
    runs: the run goes on with its evaluation and never creates a second training Job."""

    def no_start(*_: Any, **__: Any) -> None:
        raise AssertionError("training started again")

    evaluated: list[dict[str, Any]] = []

    def evaluation(_body: Any, _spec: Any, current: dict[str, Any], *_: Any) -> Any:
        evaluated.append(current)
        return trainingrun.policy.JobState("Running", "Evaluating", "evaluating"), None

    monkeypatch.setattr(trainingrun, "start", no_start)
    monkeypatch.setattr(trainingrun, "_evaluation", evaluation)
    monkeypatch.setattr(trainingrun.objects, "read_job", lambda *_: None)
    status = {
        "phase": "Running",
        "jobName": "run-train",
        "datasetVersion": "v1",
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "Evaluating", "message": "e"},
            {"type": "Succeeded", "status": "Unknown", "reason": "Evaluating", "message": "e"},
        ],
    }
    raw: dict[str, Any] = {
        "metadata": {"name": "run", "uid": "u1", "generation": 1},
        "spec": {"datasetRef": {"name": "d"}, "trainer": {}, "exports": ["onnx"]},
        "status": status,
    }
    _reconcile(kopf.Body(raw))
    assert len(evaluated) == 1 and evaluated[0]["jobName"] == "run-train"
