"""Deleting a Dataset: which objects go and which stay (pure decisions), and the S3 side
with its retention record, on the in-memory store."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import kopf
import pytest

from edgeops.api import Governance
from edgeops.controllers import dataset_deletion, events
from edgeops.controllers.dataset_deletion import describe
from edgeops.datasets import layout
from edgeops.datasets.deletion import apply_retained, delete_dataset_data, list_records
from edgeops.policy import deletion, retention
from edgeops.store import StorageUnavailableError
from tests.unit.test_datasets_ingest import (
    NAME,
    NOW,
    NS,
    ROWS,
    SPEC,
    MemoryStore,
    _collect,
    _drop,
    _spec,
)

PREFIX = layout.dataset_prefix(NS, NAME)
A, B, C = "a" * 64, "b" * 64, "c" * 64


def _keys(*versions: str) -> list[str]:
    keys = [PREFIX + "index.json", PREFIX + "staging/x.json", PREFIX + "rejected/f.jsonl"]
    for v in versions:
        keys += [f"{PREFIX}versions/{v}/{f}" for f in ("manifest.json", "profile.json")]
    return keys


def test_delete_removes_everything_but_versions_in_use_index_and_manifests_first() -> None:
    uses = {B: ("EdgeModel m v3 (Approved)",)}
    plan = deletion.plan_deletion("Delete", PREFIX, _keys(A, B), ["inbox/team/imu/1.csv"], uses)
    assert plan.kept == uses and plan.retained == [B]
    assert not any(f"/{B}/" in k for k in plan.delete)
    assert set(plan.delete) == {
        PREFIX + "staging/x.json",
        PREFIX + "rejected/f.jsonl",
        f"{PREFIX}versions/{A}/manifest.json",
        f"{PREFIX}versions/{A}/profile.json",
        "inbox/team/imu/1.csv",
    }
    # The index stays, rewritten to list only the kept version.
    assert plan.rewrite_index and PREFIX + "index.json" not in plan.delete
    assert plan.delete[0] == f"{PREFIX}versions/{A}/manifest.json"


def test_delete_with_nothing_in_use_takes_the_index_first() -> None:
    plan = deletion.plan_deletion("Delete", PREFIX, _keys(A), [], {C: ("x",)})
    assert plan.delete[0] == PREFIX + "index.json" and plan.delete[1].endswith("manifest.json")
    assert len(plan.delete) == len(_keys(A)) and plan.kept == {} and plan.retained == []


def test_retain_deletes_nothing_and_retains_every_version() -> None:
    plan = deletion.plan_deletion("Retain", PREFIX, _keys(A, B), ["inbox/team/imu/1"], {A: ("m",)})
    assert plan.delete == [] and plan.retained == [A, B] and plan.kept == {A: ("m",)}


def test_inbox_prefixes_shared_with_another_dataset_are_not_deleted() -> None:
    own, shared = deletion.own_inboxes(
        ["inbox/team/imu/", "inbox/team/shared/", "inbox/team/imu/"], ["inbox/team/"]
    )
    assert (own, shared) == ([], ["inbox/team/imu/", "inbox/team/shared/"])
    own, shared = deletion.own_inboxes(["inbox/team/imu/"], ["inbox/team/other/"])
    assert (own, shared) == (["inbox/team/imu/"], [])


def test_retained_versions_fall_due_by_policy_days_and_use() -> None:
    created = (NOW - timedelta(days=10)).isoformat()
    record = {
        "deletionPolicy": "Retain",
        "retentionDays": 7,
        "versions": [
            {"id": A, "created": created},
            {"id": B, "created": created},
            {"id": C, "created": NOW.isoformat()},
        ],
    }
    assert deletion.due_for_deletion(record, NOW, {B: ("m",)}) == [A]
    assert deletion.due_for_deletion(record, NOW, {}, serving=A) == [B]
    assert deletion.due_for_deletion({**record, "retentionDays": None}, NOW, {}) == []
    # Delete: kept only for their users, so due as soon as unused, whatever their age.
    assert deletion.due_for_deletion({**record, "deletionPolicy": "Delete"}, NOW, {B: ("m",)}) == [
        A,
        C,
    ]


def test_model_and_run_uses_name_who_uses_a_version() -> None:
    model = {
        "metadata": {"name": "fraud"},
        "spec": {"training": {"datasetRef": {"name": "d", "version": C}}},
        "status": {
            "currentVersion": 3,
            "versions": [
                {"number": 2, "state": "Rejected", "datasetVersion": A},
                {"number": 3, "state": "Approved", "datasetVersion": B},
            ],
        },
    }
    uses = retention.model_uses(model)
    assert uses == {
        B: ("EdgeModel fraud v3 (current)",),
        C: ("EdgeModel fraud (pinned in spec.training.datasetRef)",),
    }
    run = {"metadata": {"name": "r"}, "spec": {"datasetRef": {}}, "status": {"phase": "Running"}}
    run["status"]["datasetVersion"] = A
    merged = retention.merge_uses([uses, retention.run_uses(run)])
    assert merged[A] == ("TrainingRun r (Running)",) and set(merged) == {A, B, C}
    text = deletion.describe_kept(merged, limit=1)
    assert text.startswith(f"version {B[:12]} kept: used by EdgeModel fraud v3 (current)")
    assert text.endswith("and 2 more versions kept for their users")


def _two_versions(store: MemoryStore) -> tuple[str, str]:
    _drop(store, "a.csv", ROWS[:40])
    first = _collect(store).latest
    store.clock += timedelta(minutes=1)
    _drop(store, "b.csv", ROWS[40:])
    second = _collect(store).latest
    return str(first["id"]), str(second["id"])


def test_delete_policy_on_the_store_keeps_the_used_version_and_records_it() -> None:
    store = MemoryStore()
    old, _new = _two_versions(store)
    other = "inbox/other-ns/imu/x.csv"
    store.put_bytes(other, b"not ours")
    governance = Governance.model_validate(
        {"classification": "personal", "legalBasis": "consent", "retentionDays": 30,
         "deletionPolicy": "Delete"}
    )  # fmt: skip
    uses = {old: ("EdgeModel m v1 (Approved)",)}
    inbox = layout.inbox_prefix(NS, NAME)
    report = delete_dataset_data(store, NS, NAME, "uid-1", governance, [inbox], [], uses, NOW)
    assert report.kept == uses and report.retained == [old]
    left = sorted(k for k in store.objects if not k.startswith("blobs/"))
    record_key = layout.retained_record_key(NS, NAME, "uid-1")
    assert left == sorted(
        [other, record_key, layout.index_key(NS, NAME)]
        + [k for k in store.objects if k.startswith(layout.version_prefix(NS, NAME, old))]
    )
    assert [v["id"] for v in store.get_json(layout.index_key(NS, NAME))["versions"]] == [old]
    record = store.get_json(record_key)
    assert record["deletionPolicy"] == "Delete" and record["retentionDays"] == 30
    assert [v["id"] for v in record["versions"]] == [old] and record["classification"] == "personal"
    message = describe(report)
    assert f"version {old[:12]} kept: used by EdgeModel m v1 (Approved)" in message
    assert f"retention continues from {record_key}" in message
    assert list_records(store) == [record_key]

    # Still used: the pass keeps it. No longer used: it goes, and so do index and record.
    kept = apply_retained(store, record_key, NOW, uses, None, recreated=False)
    assert kept.deleted_versions == [] and store.exists(layout.manifest_key(NS, NAME, old))
    done = apply_retained(store, record_key, NOW, {}, None, recreated=False)
    assert done.deleted_versions == [old] and done.removed_record
    assert sorted(k for k in store.objects if not k.startswith("blobs/")) == [other]


def test_retain_policy_keeps_everything_then_retention_expires_it() -> None:
    store = MemoryStore()
    old, new = _two_versions(store)
    before = set(store.objects)
    governance = _spec().governance  # internal, 30 days, Retain by default
    assert governance.deletion_policy == "Retain"
    inbox = layout.inbox_prefix(NS, NAME)
    report = delete_dataset_data(store, NS, NAME, "uid-2", governance, [inbox], [], {}, NOW)
    record_key = layout.retained_record_key(NS, NAME, "uid-2")
    assert set(store.objects) == before | {record_key}
    assert report.retained == sorted([old, new]) and report.retained_raw == 2
    message = describe(report)
    assert "2 versions and 2 inbox objects kept" in message
    assert "older than retentionDays 30 and unused goes" in message

    # 31 days later every version and inbox object is past retentionDays: all go.
    later = NOW + timedelta(days=31)
    first = apply_retained(store, record_key, later, {new: ("m",)}, None, recreated=False)
    assert first.deleted_versions == [old] and first.deleted_raw == 2
    assert not first.removed_record and store.list(inbox) == []
    final = apply_retained(store, record_key, later, {}, None, recreated=False)
    assert final.deleted_versions == [new] and final.removed_record
    assert sorted(k for k in store.objects if not k.startswith("blobs/")) == []


def _handler_kwargs(retry: int) -> dict[str, Any]:
    body = {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": NAME, "namespace": NS, "uid": "u"},
        "spec": {**SPEC, "governance": {"classification": "internal", "deletionPolicy": "Delete"}},
    }
    return {
        "body": body,
        "spec": body["spec"],
        "name": NAME,
        "namespace": NS,
        "uid": "u",
        "retry": retry,
        "datasets": {(NS, NAME): [body]},
        "dataset_versions_models_use": {},
        "dataset_versions_runs_use": {},
    }


def test_s3_down_keeps_the_dataset_terminating_retries_with_backoff_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    posted: list[tuple[str, str]] = []
    monkeypatch.setattr(events, "warning", lambda body, reason, msg: posted.append((reason, msg)))

    def unreachable() -> None:
        raise StorageUnavailableError("S3 unreachable: connection refused")

    monkeypatch.setattr(dataset_deletion, "artifact_store", unreachable)
    with pytest.raises(kopf.TemporaryError) as raised:
        asyncio.run(dataset_deletion.dataset_deleted(**_handler_kwargs(retry=3)))
    assert raised.value.delay == 8.0  # 1 s doubling: the 4th attempt waits 8 s
    ((reason, message),) = posted
    assert reason == "DeletionRetrying"
    assert "S3 unreachable" in message and "retried with backoff" in message
    assert "(attempt 4, next in 8s)" in str(raised.value)
    assert '"finalizers":null' in message


def test_the_handler_deletes_through_the_store_and_posts_what_it_did(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryStore()
    _two_versions(store)
    posted: list[tuple[str, str]] = []
    monkeypatch.setattr(events, "normal", lambda body, reason, msg: posted.append((reason, msg)))
    monkeypatch.setattr(dataset_deletion, "artifact_store", lambda: store)
    asyncio.run(dataset_deletion.dataset_deleted(**_handler_kwargs(retry=0)))
    assert [k for k in store.objects if not k.startswith("blobs/")] == []
    ((reason, message),) = posted
    assert reason == "DataDeleted" and "no version kept" in message
    assert "(2 versions, 2 inbox objects, index, rejected rows and staging files)" in message


def test_the_retained_data_pass_reads_uses_from_the_indexes_and_spares_a_recreated_dataset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryStore()
    old, new = _two_versions(store)
    governance = Governance.model_validate(
        {"classification": "internal", "deletionPolicy": "Delete"}
    )
    uses = {old: ("EdgeModel m v1 (Approved)",), new: ("TrainingRun r (Running)",)}
    delete_dataset_data(store, NS, NAME, "gone", governance, [], [], uses, NOW)
    monkeypatch.setattr(dataset_deletion, "artifact_store", lambda: store)
    monkeypatch.setattr(dataset_deletion, "collect_garbage_hourly", lambda store, now: 0)
    model = {"metadata": {"name": "m"}, "status": {"currentVersion": 1, "versions": [
        {"number": 1, "state": "Approved", "datasetVersion": old}]}}  # fmt: skip
    # A Dataset of the same name exists again and serves ``new``: it is not deleted.
    recreated = {"metadata": {"uid": "again"}, "status": {"latestVersion": new}}
    indexes: dict[str, Any] = {
        "datasets": {(NS, NAME): [recreated]},
        "dataset_versions_models_use": {(NS, ""): [retention.model_uses(model)]},
        "dataset_versions_runs_use": {},
    }
    (report,) = asyncio.run(dataset_deletion.retained_pass(indexes, NOW))
    assert report.deleted_versions == [] and set(report.kept_for_users) == {old}
    indexes["dataset_versions_models_use"] = {}
    (report,) = asyncio.run(dataset_deletion.retained_pass(indexes, NOW))
    assert report.deleted_versions == [old] and not report.removed_record
    assert store.exists(layout.manifest_key(NS, NAME, new))
    assert [v["id"] for v in store.get_json(layout.index_key(NS, NAME))["versions"]] == [new]
    indexes["datasets"] = {}
    (report,) = asyncio.run(dataset_deletion.retained_pass(indexes, NOW))
    assert report.deleted_versions == [new] and report.removed_record
    assert list_records(store) == []
