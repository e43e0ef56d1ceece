"""A status the API server refuses for its content becomes a small, explained one."""

from __future__ import annotations

from datetime import UTC, datetime

from kubernetes.client.rest import ApiException

from edgeops.controllers.reconciler import STATUS_WRITE_REFUSED, refused_write_conditions
from edgeops.k8s import custom


def test_the_fallback_is_a_ready_false_condition_with_the_servers_answer() -> None:
    now = datetime(2026, 11, 29, 20, 0, tzinfo=UTC)
    status = {
        "conditions": [
            {"type": "Trained", "status": "True", "reason": "Succeeded", "message": "ok"},
            {"type": "Ready", "status": "True", "reason": "Ready", "message": "ok"},
        ],
        "versions": ["big"] * 1000,
    }
    answer = "status.triggers.retrainRequest: Too long: may not be more than 253 " + "x" * 900
    conditions = refused_write_conditions(status, 4, answer, 8, now)
    assert [c["type"] for c in conditions] == ["Trained", "Ready"]
    ready = conditions[1]
    assert (ready["status"], ready["reason"]) == ("False", STATUS_WRITE_REFUSED)
    assert ready["observedGeneration"] == 4
    assert "retrainRequest: Too long" in ready["message"] and "again in 8s" in ready["message"]
    assert len(ready["message"]) < 450  # the server's answer is cut, the fallback stays small


def test_which_answers_count_as_refused() -> None:
    assert custom.is_refused(ApiException(status=422, reason="Unprocessable Entity"))
    assert custom.is_refused(ApiException(status=413, reason="Request Entity Too Large"))
    too_large = ApiException(status=500, reason="Internal Server Error")
    too_large.body = '{"message":"etcdserver: request is too large"}'
    assert custom.is_refused(too_large)
    assert not custom.is_refused(ApiException(status=500, reason="Internal Server Error"))
    assert not custom.is_refused(ApiException(status=409, reason="Conflict"))
    assert not custom.is_refused(RuntimeError("connection reset"))
