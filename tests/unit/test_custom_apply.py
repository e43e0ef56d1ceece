"""custom.apply: what counts as a change of an object the operator keeps up to date."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from edgeops.k8s import custom


class _Api:
    """The custom-objects calls apply makes, over one stored object."""

    def __init__(self) -> None:
        self.obj: dict[str, Any] | None = None
        self.writes = 0

    def get_namespaced_custom_object(self, *_: Any) -> dict[str, Any]:
        if self.obj is None:
            raise custom.ApiException(status=404)
        return copy.deepcopy(self.obj)

    def create_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        self.writes += 1
        self.obj = copy.deepcopy(args[-1])
        return copy.deepcopy(self.obj)

    def replace_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        return self.create_namespaced_custom_object(*args)

    def patch_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        assert self.obj is not None
        self.writes += 1
        for key, value in args[-1].get("metadata", {}).items():
            self.obj["metadata"][key] = {**self.obj["metadata"].get(key, {}), **value}
        return copy.deepcopy(self.obj)


def _manifest(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "x/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": spec}


def _apply(spec: dict[str, Any]) -> str:
    return custom.apply("ns", "things", _manifest(spec), "x", "v1")[1]


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> _Api:
    fake = _Api()
    monkeypatch.setattr(custom, "_custom", lambda: fake)
    return fake


SPEC = {"predictor": {"model": {"uri": "s3://b/v1"}, "containers": [{"name": "c"}]}}


def test_defaults_a_webhook_adds_are_not_a_change(api: _Api) -> None:
    assert _apply(SPEC) == "created"
    assert api.obj is not None
    api.obj["spec"]["predictor"]["minReplicas"] = 1  # defaulted by a webhook
    api.obj["spec"]["predictor"]["containers"][0]["resources"] = {"limits": {"cpu": "1"}}
    assert _apply(SPEC) == "unchanged" and api.writes == 1


def test_a_changed_or_dropped_field_is_a_change(api: _Api) -> None:
    _apply(SPEC)
    assert api.obj is not None
    api.obj["spec"]["predictor"]["model"]["uri"] = "s3://b/tampered"
    assert _apply(SPEC) == "updated"
    assert api.obj["spec"] == SPEC
    # A key the operator stops setting disappears (the live spec still has it).
    smaller = {"predictor": {"model": {"uri": "s3://b/v1"}}}
    assert _apply(smaller) == "updated" and api.obj["spec"] == smaller
    assert _apply(smaller) == "unchanged"


def test_the_applied_spec_annotation_keeps_its_value(api: _Api) -> None:
    # Computed before the hash moved to edgeops.canonical_json (commit 532453a): objects
    # already annotated are not rewritten after an upgrade.
    _apply({"model": {"uri": "s3://b/v1", "note": "Zürich", "threshold": 1e-05}})
    assert api.obj is not None
    assert api.obj["metadata"]["annotations"][custom.APPLIED_SPEC] == (
        "f5019ef636af800e903a270e9c7a44ce2619edbdfe8325b3cab5330a7db60352"
    )
