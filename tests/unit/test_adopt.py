"""apply_owned never adopts an object another owner controls (e.g. the Job of a deleted
run of the same name that is still being garbage-collected), and the controllers report
that as a retryable wait instead of adopting it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import kopf
import pytest

from edgeops.api.edgemodel import EdgeModelSpec, EdgeModelStatus
from edgeops.controllers import edgemodel, trainingrun
from edgeops.k8s import apply, custom

OLD, NEW = "uid-old", "uid-new"


def _ref(uid: str, name: str = "run", kind: str = "TrainingRun", controller: bool = True) -> Any:
    return {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def _obj(name: str, *refs: dict[str, Any], kind: str = "Job") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if refs:
        meta["ownerReferences"] = list(refs)
    return {"apiVersion": "batch/v1", "kind": kind, "metadata": meta}


# --- the decision ---------------------------------------------------------------------------


def test_same_owner_or_no_owner_is_adoptable() -> None:
    manifest = _obj("run-train", _ref(NEW))
    custom.check_adoptable(_obj("run-train", _ref(NEW)), manifest)
    custom.check_adoptable(_obj("run-train"), manifest)
    # Only the controller reference counts.
    custom.check_adoptable(_obj("run-train", _ref(OLD, controller=False)), manifest)
    # A manifest without a controller claims nothing.
    custom.check_adoptable(_obj("run-train", _ref(OLD)), _obj("run-train"))


def test_a_previous_owner_of_the_same_name_is_not_adopted() -> None:
    with pytest.raises(custom.StaleOwnerError) as info:
        custom.check_adoptable(_obj("run-train", _ref(OLD)), _obj("run-train", _ref(NEW)))
    assert str(info.value) == (
        "Job run-train still belongs to a previous TrainingRun of the same name "
        "(uid uid-old); waiting for it to be garbage-collected"
    )
    assert info.value.owner["uid"] == OLD and info.value.wanted["uid"] == NEW


def test_another_owner_is_named() -> None:
    with pytest.raises(custom.StaleOwnerError, match="belongs to TrainingRun other \\(uid"):
        custom.check_adoptable(
            _obj("run-train", _ref(OLD, name="other")), _obj("run-train", _ref(NEW))
        )


# --- k8s.apply (Jobs, ConfigMaps, TrainingRuns, FleetRollouts) ------------------------------


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The object already exists as ``state["existing"]``; applies are recorded."""
    state: dict[str, Any] = {"applied": []}
    monkeypatch.setattr(apply, "read", lambda _ns, _manifest: state["existing"])

    def server_side_apply(_ns: str, manifest: dict[str, Any]) -> dict[str, Any]:
        state["applied"].append(manifest)
        return manifest

    monkeypatch.setattr(apply, "server_side_apply", server_side_apply)
    return state


def test_objects_adopts_its_own_job(live: dict[str, Any]) -> None:
    live["existing"] = _obj("run-train", _ref(NEW))
    obj, action = apply.apply_owned("ns", _obj("run-train", _ref(NEW)), update=False)
    assert action == "unchanged" and obj["metadata"]["name"] == "run-train"
    assert live["applied"] == []  # an existing Job is adopted as it is


@pytest.mark.parametrize("update", [True, False])
def test_objects_never_adopts_an_unowned_object(live: dict[str, Any], update: bool) -> None:
    # Issue 17 item 7: a user's own Job of the child's name has no controller reference.
    live["existing"] = _obj("run-train")
    with pytest.raises(custom.NameTakenError, match="Job named run-train exists and is not owned"):
        apply.apply_owned("ns", _obj("run-train", _ref(NEW)), update=update)
    assert live["applied"] == []


def test_shared_objects_are_recognised_by_the_managed_by_label(live: dict[str, Any]) -> None:
    runtime = _obj("edgeops-predictor", kind="ServingRuntime")
    live["existing"] = _obj("edgeops-predictor", kind="ServingRuntime")
    with pytest.raises(custom.NameTakenError, match=r"not labelled app\.kubernetes\.io/managed-by"):
        apply.apply_owned("ns", runtime)
    assert live["applied"] == []
    live["existing"]["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "edgeops"}
    apply.apply_owned("ns", runtime)
    assert live["applied"] == [runtime]


def test_objects_refuses_the_job_of_a_deleted_run(live: dict[str, Any]) -> None:
    live["existing"] = _obj("run-train", _ref(OLD))
    with pytest.raises(custom.StaleOwnerError, match="Job run-train still belongs"):
        apply.apply_owned("ns", _obj("run-train", _ref(NEW)), update=False)
    assert live["applied"] == []


def _run(name: str, owner: str) -> dict[str, Any]:
    return _obj(name, _ref(owner, name="m", kind="EdgeModel"), kind="TrainingRun")


def test_custom_adopts_the_run_of_the_same_model(live: dict[str, Any]) -> None:
    live["existing"] = _run("m-r1", NEW)
    obj, action = apply.apply_owned("ns", _run("m-r1", NEW), update=False)
    assert action == "unchanged" and obj["metadata"]["ownerReferences"][0]["uid"] == NEW


def test_custom_refuses_the_run_of_a_deleted_model(live: dict[str, Any]) -> None:
    live["existing"] = _run("m-r1", OLD)
    with pytest.raises(custom.StaleOwnerError) as info:
        apply.apply_owned("ns", _run("m-r1", NEW), update=False)
    assert "TrainingRun m-r1 still belongs to a previous EdgeModel of the same name" in str(
        info.value
    )
    assert live["applied"] == []


# --- controllers --------------------------------------------------------------------------------


def _stale() -> custom.StaleOwnerError:
    return custom.StaleOwnerError("Job", "run-train", _ref(OLD), _ref(NEW))


def test_trainingrun_waits_for_the_previous_runs_job(monkeypatch: pytest.MonkeyPatch) -> None:
    def ensure_job(*_: Any) -> Any:
        raise _stale()

    monkeypatch.setattr(trainingrun, "_resolve_dataset_version", lambda *_: ("v1", []))
    monkeypatch.setattr(trainingrun, "_ensure_job", ensure_job)
    monkeypatch.setattr(trainingrun.objects, "read_job", lambda *_: None)
    body = kopf.Body(
        {
            "metadata": {"name": "run", "uid": NEW, "generation": 1},
            "spec": {"datasetRef": {"name": "d"}, "trainer": {}, "exports": ["onnx"]},
        }
    )
    patch = kopf.Patch()
    with pytest.raises(kopf.TemporaryError) as info:
        trainingrun.reconcile_trainingrun(
            body=body,
            spec=body.spec,
            status=body.status,
            namespace="ns",
            name="run",
            patch=patch,
            observed=trainingrun.Observed(dataset=None, job=None),
        )
    assert "still belongs to a previous TrainingRun" in str(info.value)
    assert patch["status"]["phase"] == "Pending"
    ready = patch["status"]["conditions"][0]
    assert ready["reason"] == trainingrun.STALE_OWNER and "garbage-collected" in ready["message"]
    assert "jobName" not in patch["status"]


def _model_spec() -> EdgeModelSpec:
    return EdgeModelSpec.model_validate(
        {
            "training": {"datasetRef": {"name": "d"}, "exports": ["onnx"]},
            "targets": [{"name": "pi", "targetType": "linux", "format": "onnx"}],
        }
    )


def test_edgemodel_keeps_its_triggers_when_the_run_name_is_still_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def create_or_adopt(*_: Any, **__: Any) -> Any:
        raise _stale()

    monkeypatch.setattr(edgemodel.apply, "apply_owned", create_or_adopt)
    monkeypatch.setattr(edgemodel.events, "normal", lambda *_: None)
    body = kopf.Body({"metadata": {"name": "m", "uid": NEW}})
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    seen = edgemodel.Observed([], {"status": {"latestVersion": "v1"}}, None)
    tick = edgemodel.Tick(body, "ns", "m", _model_spec(), EdgeModelStatus(), now, observed=seen)
    before = tick.triggers.model_copy()
    memo = kopf.Memo(signals_since=now - dt.timedelta(minutes=1))  # the batching window passed
    with pytest.raises(custom.StaleOwnerError):
        edgemodel._evaluate_triggers(tick, kopf.Meta(body), memo, 0)
    # Not consumed: the next tick tries the same run (m-r1) again.
    assert tick.triggers == before and tick.triggers.run_counter == 0


def test_edgemodel_holds_a_run_for_the_batching_window_then_starts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created: list[dict[str, Any]] = []

    def apply_owned(_ns: str, manifest: dict[str, Any], **_: Any) -> Any:
        created.append(manifest)
        return manifest, "created"

    monkeypatch.setattr(edgemodel.apply, "apply_owned", apply_owned)
    monkeypatch.setattr(edgemodel.events, "normal", lambda *_: None)
    body = kopf.Body({"metadata": {"name": "m", "uid": NEW}})
    seen = edgemodel.Observed([], {"status": {"latestVersion": "v1"}}, None)
    memo = kopf.Memo(signals_since=None)  # as a previous pass with no trigger leaves it
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    tick = edgemodel.Tick(body, "ns", "m", _model_spec(), EdgeModelStatus(), now, observed=seen)
    assert edgemodel._evaluate_triggers(tick, kopf.Meta(body), memo, 0) == []
    assert created == [] and tick.requeue == edgemodel.settings().trigger_batch_seconds
    later = now + dt.timedelta(seconds=edgemodel.settings().trigger_batch_seconds)
    tick = edgemodel.Tick(body, "ns", "m", _model_spec(), EdgeModelStatus(), later, observed=seen)
    (run,) = edgemodel._evaluate_triggers(tick, kopf.Meta(body), memo, 0)
    assert run["metadata"]["name"] == "m-r1" and len(created) == 1
    assert memo["signals_since"] is None
