"""Collection Jobs: names, the Job manifest, what a Job's state says, the collector's
report, its session policy and how the collector classifies failures."""

from __future__ import annotations

import json
from typing import Any

import pytest

from edgeops.api import DatasetSpec
from edgeops.datasets import job as collector
from edgeops.datasets.sources import SourceLimitError
from edgeops.policy import collection_job as policy
from edgeops.policy import credentials
from edgeops.store import (
    IntegrityError,
    ObjectMissingError,
    StorageMisconfiguredError,
    StorageRejectedError,
    StorageUnavailableError,
)
from tests.unit.test_datasets_ingest import SPEC

DATASET = {"metadata": {"name": "imu", "uid": "uid-1", "generation": 7}}


def _job(**status: Any) -> dict[str, Any]:
    spec = DatasetSpec.model_validate({**SPEC, "collection": {"backoffLimit": 1}})
    config = policy.collection_config("ns", "imu", SPEC, "2026-11-30T01:00:00Z")
    manifest = policy.job(DATASET, spec, 3, config, "img:1", {"EDGEOPS_S3_BUCKET": "b"})
    manifest["status"] = status
    return manifest


def test_names_are_deterministic_and_fit_a_label_value() -> None:
    assert policy.job_name("imu", 3) == "imu-collect-3"
    long = "d" * 70
    name = policy.job_name(long, 12)
    assert len(name) <= 63 and name.endswith("-collect-12")
    assert name == policy.job_name(long, 12) != policy.job_name("d" * 71, 12)
    assert len(policy.s3_secret_name(long)) <= 63


def test_the_job_is_owned_restricted_bounded_and_fails_at_once_on_a_report() -> None:
    job = _job()
    assert job["metadata"]["name"] == "imu-collect-3"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert policy.number_of(job) == 3 and policy.generation_of(job) == 7
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (1, 3600)
    rule = spec["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob"
    assert rule["onExitCodes"]["values"] == [policy.EXIT_REPORTED]
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "edgeops.datasets"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e for e in container["env"]}
    assert env["EDGEOPS_S3_BUCKET"]["value"] == "b"
    secret = env["EDGEOPS_S3_SESSION_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert secret == {"name": "imu-collect-s3", "key": "sessionToken"}
    config = json.loads(container["args"][1])
    assert config["dataset"] == {"namespace": "ns", "name": "imu"}


def test_state_follows_the_job_to_a_verdict_with_its_numbers() -> None:
    assert policy.state(_job(), []).phase == "Pending"
    pod = {"metadata": {"name": "imu-collect-3-x"}, "status": {"phase": "Running"}}
    running = policy.state(_job(active=1, failed=1), [pod])
    assert (running.phase, running.reason) == ("Running", "Collecting")
    assert "attempt 2 of 2" in running.message
    done = policy.state(_job(conditions=[{"type": "Complete", "status": "True"}]), [])
    assert done.phase == "Succeeded" and done.finished
    crashed = policy.state(
        _job(failed=2, conditions=[{"type": "Failed", "status": "True", "reason": "X"}]), []
    )
    assert (crashed.phase, crashed.reason) == ("Failed", "CollectionJobFailed")
    assert "after 2 attempt(s) (backoffLimit=1)" in crashed.message
    late = policy.state(
        _job(conditions=[{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]),
        [],
    )
    assert late.reason == "DeadlineExceeded"
    assert "activeDeadlineSeconds=3600" in late.message


def test_the_report_is_the_last_marker_line() -> None:
    log = f'x\n{policy.MARKER}{{"a": 1}}\nnoise\n{policy.MARKER}{{"b": 2}}\n'
    assert policy.parse_marker(log) == {"b": 2}
    assert policy.parse_marker("no marker") is None
    assert policy.parse_marker(f"{policy.MARKER}[1]") is None
    assert policy.parse_marker(f"{policy.MARKER}{{broken") is None


def test_the_session_policy_grants_the_dataset_blobs_and_sources_only() -> None:
    document = credentials.collection_policy(
        "edgeops",
        "datasets/ns/imu/",
        "blobs/sha256/",
        [("edgeops", "inbox/ns/imu/"), ("raw", ""), ("edgeops", "inbox/ns/imu/")],
    )
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    assert by_sid["ReadWriteDataset"]["Resource"] == ["arn:aws:s3:::edgeops/datasets/ns/imu/*"]
    assert "s3:DeleteObject" in by_sid["ReadWriteDataset"]["Action"]
    assert "s3:DeleteObject" not in by_sid["ReadWriteContentAddressedBlobs"]["Action"]
    # Sources are de-duplicated; a prefix bounds the listing, an empty one is the bucket.
    reads = sorted(
        r for s in document["Statement"] if s["Sid"].startswith("ReadSource") for r in s["Resource"]
    )
    assert reads == ["arn:aws:s3:::edgeops/inbox/ns/imu/*", "arn:aws:s3:::raw/*"]
    listings = [s for s in document["Statement"] if s["Sid"].startswith("ListSource")]
    assert listings[0]["Condition"]["StringLike"]["s3:prefix"] == [
        "inbox/ns/imu/",
        "inbox/ns/imu/*",
    ]
    assert "Condition" not in listings[1]
    with pytest.raises(ValueError, match="cannot be part"):
        credentials.collection_policy("edgeops", "datasets/ns/imu/", "blobs/sha256/", [("b", "*")])


@pytest.mark.parametrize(
    ("error", "kind", "reason"),
    [
        (StorageMisconfiguredError("no key"), "storage", "StorageMisconfigured"),
        (StorageRejectedError("NoSuchBucket", "S3 refused"), "storage", "StorageRejected"),
        (StorageUnavailableError("down"), "storage", "StorageUnavailable"),
        (ObjectMissingError("gone"), "race", "CollectionFailed"),
        (IntegrityError("changed"), "race", "CollectionFailed"),
        (SourceLimitError("too big"), "source", "SourceLimitExceeded"),
        (ValueError("bad"), "invalid", "CollectionFailed"),
    ],
)
def test_the_collector_reports_the_failures_it_understands(
    error: Exception, kind: str, reason: str
) -> None:
    report = collector.classify(error)
    assert report is not None
    assert (report["kind"], report["reason"]) == (kind, reason)
    if kind == "storage":
        again = collector.store_error(report)
        assert type(again) is type(error) and str(again) == str(error)
        if isinstance(error, StorageRejectedError):
            assert isinstance(again, StorageRejectedError) and again.code == "NoSuchBucket"


def test_a_crash_is_not_reported_so_the_job_retries_its_pod() -> None:
    assert collector.classify(RuntimeError("bug")) is None
    assert collector.classify(MemoryError()) is None


def test_a_finished_pod_decides_before_the_job_controller_does() -> None:
    done = {"metadata": {"name": "p"}, "status": {"phase": "Succeeded"}}
    assert policy.state(_job(active=1), [done]).phase == "Succeeded"

    def failed(code: int) -> dict[str, Any]:
        terminated = {"state": {"terminated": {"exitCode": code}}}
        return {
            "metadata": {"name": "p"},
            "status": {"phase": "Failed", "containerStatuses": [terminated]},
        }

    assert policy.state(_job(active=1), [failed(policy.EXIT_REPORTED)]).phase == "Failed"
    # A crash (or a kill) is the Job's to retry: still running until its verdict.
    assert policy.state(_job(failed=1), [failed(137)]).phase == "Running"
