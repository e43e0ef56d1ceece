"""The session policies of the scoped S3 credentials pods get (edgeops.policy.credentials)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from edgeops.policy import credentials
from edgeops.policy import training as training_policy
from edgeops.policy.serving import serving_prefix

BUCKET = "edgeops"
VERSION = "ab" * 32
RUN_PREFIX = training_policy.results_prefix("team-a", "r1", "0f0e-uid")


def _training() -> dict[str, Any]:
    return credentials.training_policy(
        BUCKET, f"datasets/team-a/motions/versions/{VERSION}/", "blobs/sha256/", RUN_PREFIX
    )


def _grants(policy: dict[str, Any]) -> dict[str, set[str]]:
    """Resource → actions allowed on it."""
    grants: dict[str, set[str]] = {}
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        for resource in statement["Resource"]:
            grants.setdefault(resource, set()).update(statement["Action"])
    return grants


def test_a_training_pod_reads_its_version_and_blobs_and_writes_blobs_and_its_results() -> None:
    policy = _training()
    assert policy["Version"] == "2012-10-17"
    assert _grants(policy) == {
        f"arn:aws:s3:::edgeops/datasets/team-a/motions/versions/{VERSION}/*": {"s3:GetObject"},
        "arn:aws:s3:::edgeops/blobs/sha256/*": {
            "s3:GetObject",
            "s3:PutObject",
            "s3:AbortMultipartUpload",
        },
        "arn:aws:s3:::edgeops/runs/team-a/r1/0f0e-uid/*": {"s3:PutObject"},
        "arn:aws:s3:::edgeops": {"s3:GetBucketLocation"},
    }
    # No listing anywhere: keys cannot be discovered, only read when already known.
    assert "s3:ListBucket" not in json.dumps(policy)
    assert len(json.dumps(policy, separators=(",", ":"))) < 2048  # STS's session-policy cap


def test_a_predictor_reads_and_lists_only_its_served_version() -> None:
    prefix = serving_prefix("team-a", "m", "uid-9", 3)
    policy = credentials.serving_policy(BUCKET, prefix)
    grants = _grants(policy)
    assert grants[f"arn:aws:s3:::edgeops/{prefix}/*"] == {"s3:GetObject"}
    assert grants["arn:aws:s3:::edgeops"] == {"s3:ListBucket", "s3:GetBucketLocation"}
    (listing,) = [s for s in policy["Statement"] if s["Action"] == ["s3:ListBucket"]]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"{prefix}/", f"{prefix}/*"]}}
    assert "PutObject" not in json.dumps(policy)


@pytest.mark.parametrize(
    "prefix",
    ["datasets/*/", "datasets/a/../b/", "runs/a/$(aws:username)/", "runs//x", "runs/a?/"],
)
def test_a_wildcard_or_variable_cannot_widen_a_resource(prefix: str) -> None:
    with pytest.raises(ValueError, match="cannot be part of an S3 policy resource"):
        credentials.training_policy(BUCKET, prefix, "blobs/sha256/", RUN_PREFIX)
    with pytest.raises(ValueError):
        credentials.serving_policy(BUCKET, prefix)
    with pytest.raises(ValueError):
        credentials.serving_policy("edge*", "models/a/")


@pytest.mark.parametrize(
    ("deadline", "longest", "expected"),
    [
        (None, 43200, 43200),  # no deadline: the configured lifetime
        (60, 43200, 3600),  # never below the minimum the S3 client asks for
        (7200, 43200, 7500),  # the deadline plus a margin
        (604800, 43200, 43200),  # never above the configured lifetime
    ],
)
def test_training_credentials_live_as_long_as_the_job_may(
    deadline: int | None, longest: int, expected: int
) -> None:
    assert credentials.training_seconds(deadline, longest) == expected


def test_predictor_credentials_are_renewed_at_half_life() -> None:
    assert credentials.renew_after(43200) == 21600


def test_a_drift_run_also_reads_its_baseline_version_and_nothing_else() -> None:
    baseline = "cd" * 32
    policy = credentials.training_policy(
        BUCKET,
        f"datasets/team-a/motions/versions/{VERSION}/",
        "blobs/sha256/",
        RUN_PREFIX,
        f"datasets/team-a/motions/versions/{baseline}/",
    )
    grants = _grants(policy)
    assert grants[f"arn:aws:s3:::{BUCKET}/datasets/team-a/motions/versions/{baseline}/*"] == {
        "s3:GetObject"
    }
    assert len(grants) == len(_grants(_training())) + 1
