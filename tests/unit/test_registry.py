"""Registry bookkeeping: numbering, immutable versions, bounded status, promotability."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from edgeops.api.edgemodel import (
    EdgeModelStatus,
    GateVerdict,
    ModelVersion,
    Signature,
    Target,
    VersionState,
)
from edgeops.api.trainingrun import TrainingRunStatus
from edgeops.policy import promotion, registry

NOW = datetime(2025, 3, 5, tzinfo=UTC)
SHA = "b" * 64


def _version(number: int, state: VersionState = "Approved") -> ModelVersion:
    return ModelVersion(
        number=number, training_run=f"m-r{number}", created="2025-01-01T00:00:00Z", state=state
    )


def _status(*versions: ModelVersion, **kwargs: Any) -> EdgeModelStatus:
    return EdgeModelStatus(versions=list(versions), **kwargs)


def test_numbers_are_never_reused_even_after_pruning() -> None:
    assert registry.next_number(_status()) == 1
    assert registry.next_number(_status(_version(1), _version(2))) == 3
    assert registry.next_number(_status(_version(2), latest_version=7)) == 8


def test_from_run_records_lineage_sizes_and_state() -> None:
    run = TrainingRunStatus.model_validate(
        {
            "phase": "Succeeded",
            "datasetVersion": "1" * 64,
            "codeVersion": {"image": "t:1", "configHash": "2" * 64},
            "metrics": {"overall": {"accuracy": 0.9}},
            "artifacts": [{"uri": "s3://b/x", "size": 123, "sha256": SHA, "format": "onnx"}],
        }
    )
    targets = [
        Target(name="pi", target_type="linux", format="onnx"),
        Target(name="mcu", target_type="mcu", format="tflm"),
    ]
    signature = Signature(key_id="ed25519:x", manifest_uri="s3://b/m", signature="c2ln")
    ok = registry.from_run(3, "m-r3", run, targets, GateVerdict(passed=True), signature, "ok", NOW)
    assert ok.state == "Approved" and ok.sizes == {"pi": 123}
    assert ok.dataset_version == "1" * 64 and ok.code_version is not None
    no = registry.from_run(4, "m-r4", run, targets, GateVerdict(passed=False), None, "bad", NOW)
    assert no.state == "Rejected" and no.reason == "bad" and no.signature is None
    unsigned = registry.from_run(5, "m-r5", run, targets, GateVerdict(passed=True), None, "", NOW)
    assert unsigned.state == "Rejected"


def test_failed_run_is_recorded_as_rejected() -> None:
    version = registry.failed(2, "m-r2", TrainingRunStatus(phase="Failed"), "OOMKilled", NOW)
    assert version.state == "Rejected" and version.reason == "training failed: OOMKilled"


def test_append_refuses_duplicates_and_prunes_rejected_first() -> None:
    status = _status(_version(1), _version(2, "Rejected"), _version(3), current_version=1)
    with pytest.raises(ValueError):
        registry.append(status, _version(3), 10)
    pruned = registry.append(status, _version(4), 3)
    assert [v.number for v in pruned] == [1, 3, 4]
    pruned = registry.append(status, _version(4), 2)
    assert [v.number for v in pruned] == [1, 4]  # current (1) and the new one stay


def test_promotable_and_rollback_target() -> None:
    status = _status(
        _version(1), _version(2, "Rejected"), _version(3), _version(4), current_version=4
    )
    assert registry.promotable(status, 3) is None
    assert "is Rejected" in (registry.promotable(status, 2) or "")
    assert "not in the registry" in (registry.promotable(status, 9) or "")
    assert registry.rollback_target(status) == 3
    assert registry.rollback_target(_status(_version(1), current_version=1)) is None


def test_promote_request_parsing() -> None:
    assert promotion.parse_request(None) is None
    request = promotion.parse_request("3 20250101T000000Z")
    assert request is not None and request.version == 3
    with pytest.raises(ValueError):
        promotion.parse_request("latest")


def test_fleet_rollout_from_template_is_owned_and_named_per_promotion() -> None:
    from edgeops.api.fleetrollout import FleetRolloutTemplate

    model = {"metadata": {"name": "motion", "uid": "u-1"}}
    template = FleetRolloutTemplate.model_validate({"steps": [{"percent": 10}, {"percent": 100}]})
    rollout = promotion.fleet_rollout(model, template, 2, 5, "auto")
    assert rollout["metadata"]["name"] == "motion-v2-5"
    assert rollout["spec"]["modelRef"] == {"name": "motion"} and rollout["spec"]["version"] == 2
    assert rollout["spec"]["steps"][0] == {
        "percent": 10,
        "analysis": False,
        "successThreshold": 95.0,
    }
    assert rollout["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_fleet_rollout_of_is_the_newest_succeeded_rollout_of_the_model() -> None:
    from edgeops.policy.desired import RolloutView

    def view(
        name: str, created: str, phase: str, model: str = "m", version: int = 2
    ) -> RolloutView:
        return RolloutView(name, f"u-{name}", created, model, version, phase, 100, None)

    rollouts = [
        view("a", "2026-01-01T00:00:00Z", "Succeeded", version=1),
        view("b", "2026-02-01T00:00:00Z", "Succeeded", version=2),
        view("c", "2026-03-01T00:00:00Z", "RolledBack", version=3),
        view("d", "2026-04-01T00:00:00Z", "Succeeded", model="other", version=9),
    ]
    chosen = promotion.fleet_rollout_of("m", rollouts)
    assert chosen is not None and (chosen.name, chosen.version) == ("b", 2)
    assert promotion.fleet_rollout_of("m", rollouts[2:3]) is None


def test_auto_promotion_reuses_a_rollout_already_moving_to_the_version() -> None:
    from edgeops.policy.desired import RolloutView

    def view(name: str, phase: str | None, version: int = 1, day: int = 1) -> RolloutView:
        created = f"2026-01-{day:02d}T00:00:00Z"
        return RolloutView(name, f"u-{name}", created, "m", version, phase, 10, None)

    # The user's own rollout of v1 (example 04-fleetrollout.yaml), still Pending or Paused.
    for phase in (None, "Pending", "Progressing", "Paused"):
        found = promotion.rollout_moving_to(1, [view("by-hand", phase)])
        assert found is not None and found.name == "by-hand"
    # Ended ones do not count: Auto promotion creates its own.
    for phase in ("Succeeded", "Aborted", "RolledBack"):
        assert promotion.rollout_moving_to(1, [view("x", phase)]) is None
    assert promotion.rollout_moving_to(1, []) is None
    # A newer rollout (to v2) governs the devices now: going back to v1 needs a new one.
    newer = [view("by-hand", "Progressing"), view("v2", "Progressing", 2, day=2)]
    assert promotion.rollout_moving_to(1, newer) is None


def test_lineage_names_version_run_and_dataset_per_device() -> None:
    model = {
        "metadata": {"name": "m"},
        "status": {
            "versions": [
                {"number": 1, "trainingRun": "m-r1", "datasetVersion": "a" * 64,
                 "signature": {"keyId": "k1"}},
                {"number": 2, "trainingRun": "m-r2", "datasetVersion": "b" * 64},
            ]
        },
    }  # fmt: skip
    devices = [
        {"metadata": {"name": "z", "labels": {"edgeops.dev/model": "m"}},
         "status": {"version": 2, "rollout": "m-v2-1", "update": {"phase": "Committed"}}},
        {"metadata": {"name": "a"}, "status": {"model": "m", "version": 1}},
        {"metadata": {"name": "new", "labels": {"edgeops.dev/model": "m"}}},
        {"metadata": {"name": "other", "labels": {"edgeops.dev/model": "x"}},
         "status": {"version": 1}},
    ]  # fmt: skip
    rows = registry.lineage(model, devices)
    assert [r["device"] for r in rows] == ["a", "new", "z"]
    assert rows[0] == {
        "device": "a", "version": 1, "rollout": None, "update": None, "trainingRun": "m-r1",
        "datasetVersion": "a" * 64, "signedBy": "k1",
    }  # fmt: skip
    assert rows[1]["version"] is None and rows[1]["trainingRun"] is None
    assert (rows[2]["trainingRun"], rows[2]["rollout"], rows[2]["update"]) == (
        "m-r2", "m-v2-1", "Committed",
    )  # fmt: skip
