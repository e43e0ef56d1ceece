"""Issue 17 item 8: repeated Events are counted on one Event (client-go's correlator), not
posted again; a different message, object or an expired window starts a new one."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from edgeops.controllers import events


@pytest.fixture
def posted(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    state: dict[str, Any] = {"created": [], "bumped": [], "clock": 1000.0}
    monkeypatch.setattr(events, "_enabled", True)
    monkeypatch.setattr(events, "_cache", type(events._cache)())
    monkeypatch.setattr(events.time, "monotonic", lambda: state["clock"])

    def create(involved: dict[str, Any], type_: str, reason: str, message: str, _: Any) -> str:
        name = f"{involved['name']}.{len(state['created'])}"
        state["created"].append((name, type_, reason, message))
        return name

    def bump(namespace: str, name: str, count: int, _: Any) -> None:
        if name in state.get("expired", ()):
            raise ApiException(status=404)
        state["bumped"].append((name, count))

    monkeypatch.setattr(events.k8s_events, "create", create)
    monkeypatch.setattr(events.k8s_events, "bump", bump)
    return state


def _body(uid: str = "u1") -> dict[str, Any]:
    return {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "flaky", "namespace": "ns", "uid": uid},
    }


def test_identical_events_are_counted_on_one(posted: dict[str, Any]) -> None:
    for _ in range(5):
        events.warning(_body(), "SourceUnavailable", "HTTP 500")
        posted["clock"] += 30
    assert posted["created"] == [("flaky.0", "Warning", "SourceUnavailable", "HTTP 500")]
    assert posted["bumped"] == [("flaky.0", 2), ("flaky.0", 3), ("flaky.0", 4), ("flaky.0", 5)]


def test_other_messages_objects_and_types_are_new_events(posted: dict[str, Any]) -> None:
    events.warning(_body(), "SourceUnavailable", "HTTP 500")
    events.warning(_body(), "SourceUnavailable", "HTTP 503")
    events.warning(_body("u2"), "SourceUnavailable", "HTTP 500")
    events.normal(_body(), "SourceUnavailable", "HTTP 500")
    assert len(posted["created"]) == 4 and posted["bumped"] == []


def test_after_the_window_or_an_expired_event_a_new_one_starts(posted: dict[str, Any]) -> None:
    events.warning(_body(), "SourceUnavailable", "HTTP 500")
    posted["clock"] += events.WINDOW_SECONDS + 1
    events.warning(_body(), "SourceUnavailable", "HTTP 500")
    assert [c[0] for c in posted["created"]] == ["flaky.0", "flaky.1"]
    posted["expired"] = {"flaky.1"}
    events.warning(_body(), "SourceUnavailable", "HTTP 500")
    assert [c[0] for c in posted["created"]] == ["flaky.0", "flaky.1", "flaky.2"]


def test_a_failing_post_never_fails_the_reconcile(
    posted: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> str:
        raise ApiException(status=500)

    monkeypatch.setattr(events.k8s_events, "create", broken)
    events.warning(_body(), "SourceUnavailable", "HTTP 500")  # logged, not raised
