"""Session policies for the scoped S3 credentials pods get, and how long they live.

A pod never gets the operator's keys. It gets temporary STS credentials (``AssumeRole``,
:func:`edgeops.store.assume_role`) whose inline session policy, built here, allows exactly
what the pod needs, and nothing under another namespace's ``datasets/``, ``inbox/``,
``models/`` or ``runs/``:

- a **training run** may ``GetObject`` its dataset version's documents
  (``datasets/<ns>/<dataset>/versions/<version>/*``: manifest and profile), ``GetObject``
  and ``PutObject`` content-addressed blobs (``blobs/sha256/*``: the dataset's shards in,
  the exported artifacts out) and ``PutObject`` under its own results prefix
  (``runs/<ns>/<run>/<uid>/*``: results.json or failure.json). No ``ListBucket`` at all,
  so it cannot discover keys: a blob is readable only by its SHA-256, which it must already
  know (from a manifest it may read). A blob written with content that does not match its
  key is refused by every reader (:meth:`edgeops.store.ArtifactStore.get_blob` and
  ``download_blob`` verify the hash), so writing blobs cannot forge another tenant's data.
- a **dataset collection Job** may ``GetObject``, ``PutObject`` and ``DeleteObject`` under
  its Dataset's prefix only (``datasets/<ns>/<dataset>/*``: index, versions, staging
  markers, rejected rows), read and write blobs as a training run does, and ``ListBucket``
  and ``GetObject`` under the prefixes its s3 and inbox sources name (a user's source
  prefix may hold any character but ``*``, ``?`` and ``$``).
- a **KServe predictor** may ``GetObject`` and ``ListBucket`` its model version's serving
  prefix only (``models/<ns>/<model>/<uid>/versions/<n>/serving/``): KServe's storage
  initializer lists the prefix and downloads what it finds.

Both may ``GetBucketLocation`` (the S3 clients ask the bucket's region; it reveals nothing).
A statement's resource is an ARN ``arn:aws:s3:::<bucket>/<key pattern>``; every variable
part is a Kubernetes name, UID or hex digest, checked here to hold no ``*``, ``?``, ``/``
or ``$`` so that it cannot widen the pattern.

Sources: IAM JSON policy grammar and S3 actions/resources
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_grammar.html,
https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html),
MinIO's policy subset (https://min.io/docs/minio/linux/administration/identity-access-management/policy-based-access-control.html).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any, Final

VERSION: Final = "2012-10-17"
#: The shortest lifetime asked for. STS accepts 900 s, but the minio client's
#: ``AssumeRoleProvider`` raises any duration below an hour to 3600 s, so a shorter
#: bound here would only be a promise the credentials do not keep.
MIN_SECONDS: Final = 3600
#: Added to a Job's activeDeadlineSeconds: the deadline counts from the Job's start, the
#: credentials from when they were issued, just before the Job is created.
DEADLINE_MARGIN_SECONDS: Final = 300
#: Annotation on every credentials Secret: when its credentials stop working (RFC 3339).
EXPIRES_ANNOTATION: Final = "edgeops.dev/credentials-expire-at"
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _part(value: str, what: str) -> str:
    if not _PART.match(value):
        raise ValueError(f"{what} {value!r} cannot be part of an S3 policy resource")
    return value


def _prefix(value: str) -> str:
    """A key prefix ending in ``/`` whose segments are plain names."""
    segments = value.rstrip("/").split("/")
    for segment in segments:
        _part(segment, "key segment")
    return "/".join(segments) + "/"


def _objects(bucket: str, prefix: str) -> str:
    return f"arn:aws:s3:::{bucket}/{_prefix(prefix)}*"


def _statement(sid: str, actions: list[str], resources: list[str]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}


def _location(bucket: str) -> dict[str, Any]:
    return _statement("BucketRegion", ["s3:GetBucketLocation"], [f"arn:aws:s3:::{bucket}"])


def training_policy(
    bucket: str,
    dataset_version_prefix: str,
    blob_prefix: str,
    results_prefix: str,
    baseline_version_prefix: str | None = None,
) -> dict[str, Any]:
    """The session policy of one TrainingRun's pod.

    ``dataset_version_prefix`` is ``datasets/<ns>/<dataset>/versions/<version>/``,
    ``blob_prefix`` ``blobs/sha256/`` and ``results_prefix`` ``runs/<ns>/<run>/<uid>``.
    A run for drift (``spec.fieldData``) also reads its baseline version's manifest, to
    tell the field rows apart: ``baseline_version_prefix``, the same shape; None: no grant.

    Raises:
        ValueError: a prefix segment or the bucket holds a wildcard, ``/`` or ``$``.
    """
    _part(bucket, "bucket")
    return {
        "Version": VERSION,
        "Statement": [
            _statement(
                "ReadDatasetVersion",
                ["s3:GetObject"],
                [_objects(bucket, dataset_version_prefix)],
            ),
            *(
                [
                    _statement(
                        "ReadBaselineVersion",
                        ["s3:GetObject"],
                        [_objects(bucket, baseline_version_prefix)],
                    )
                ]
                if baseline_version_prefix
                else []
            ),
            _statement(
                "ReadWriteContentAddressedBlobs",
                ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                [_objects(bucket, blob_prefix)],
            ),
            _statement("WriteRunResults", ["s3:PutObject"], [_objects(bucket, results_prefix)]),
            _location(bucket),
        ],
    }


def _source_prefix(value: str) -> str:
    """A user's s3 source prefix as a policy resource part: any characters but the IAM
    wildcards and policy variables (``*``, ``?``, ``$``), which would widen the grant."""
    if any(c in value for c in "*?$"):
        raise ValueError(f"source prefix {value!r} cannot be part of an S3 policy resource")
    return value


def collection_policy(
    bucket: str,
    dataset_prefix: str,
    blob_prefix: str,
    sources: list[tuple[str, str]],
) -> dict[str, Any]:
    """The session policy of one Dataset's collection Job.

    ``dataset_prefix`` is ``datasets/<ns>/<dataset>/`` (read, write and delete: the index,
    versions, staging markers and rejected rows of this Dataset only), ``blob_prefix``
    ``blobs/sha256/`` (read and write content-addressed shards), and ``sources`` the
    (bucket, prefix) pairs the Dataset's s3 and inbox sources read: list and read there,
    nothing else (an empty prefix is the whole bucket, as the source says).

    Raises:
        ValueError: a bucket or dataset prefix segment holds a wildcard, ``/`` or ``$``,
            or a source prefix holds ``*``, ``?`` or ``$``.
    """
    _part(bucket, "bucket")
    statements = [
        _statement(
            "ReadWriteDataset",
            ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
            [_objects(bucket, dataset_prefix)],
        ),
        _statement(
            "ReadWriteContentAddressedBlobs",
            ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
            [_objects(bucket, blob_prefix)],
        ),
        _location(bucket),
    ]
    for number, (source_bucket, prefix) in enumerate(sorted(set(sources))):
        _part(source_bucket, "bucket")
        prefix = _source_prefix(prefix)
        statements.append(
            _statement(
                f"ReadSource{number}",
                ["s3:GetObject"],
                [f"arn:aws:s3:::{source_bucket}/{prefix}*"],
            )
        )
        listing = _statement(
            f"ListSource{number}", ["s3:ListBucket"], [f"arn:aws:s3:::{source_bucket}"]
        )
        if prefix:
            listing["Condition"] = {"StringLike": {"s3:prefix": [prefix, f"{prefix}*"]}}
        statements.append(listing)
        if source_bucket != bucket:
            statements.append(_location(source_bucket) | {"Sid": f"SourceRegion{number}"})
    return {"Version": VERSION, "Statement": statements}


def collection_seconds(active_deadline_seconds: int, longest: int) -> int:
    """How long a collection Job's credentials live: its deadline plus the margin, at
    least MIN_SECONDS and at most ``longest`` (``EDGEOPS_S3_POD_CREDENTIALS_SECONDS``)."""
    return training_seconds(active_deadline_seconds, longest)


def serving_policy(bucket: str, serving_prefix: str) -> dict[str, Any]:
    """The session policy of an EdgeModel's KServe predictor: read (and list) the served
    version's prefix ``models/<ns>/<model>/<uid>/versions/<n>/serving``, nothing else.

    Raises:
        ValueError: a prefix segment or the bucket holds a wildcard, ``/`` or ``$``.
    """
    _part(bucket, "bucket")
    prefix = _prefix(serving_prefix)
    return {
        "Version": VERSION,
        "Statement": [
            _statement("ReadServedVersion", ["s3:GetObject"], [_objects(bucket, prefix)]),
            {
                **_statement("ListServedVersion", ["s3:ListBucket"], [f"arn:aws:s3:::{bucket}"]),
                "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}*"]}},
            },
            _location(bucket),
        ],
    }


def training_seconds(active_deadline_seconds: int | None, longest: int) -> int:
    """How long a training pod's credentials live: the Job's deadline plus a margin (the
    Job cannot run longer, retries included), at least MIN_SECONDS and at most
    ``longest`` (``EDGEOPS_S3_POD_CREDENTIALS_SECONDS``, also the lifetime without a
    deadline)."""
    if active_deadline_seconds is None:
        return max(MIN_SECONDS, longest)
    return max(MIN_SECONDS, min(active_deadline_seconds + DEADLINE_MARGIN_SECONDS, longest))


def renew_after(issued_for_seconds: int) -> float:
    """Seconds after issue at which long-lived holders (predictors) get new credentials:
    half their lifetime, so a pod started just before renewal still has half left."""
    return issued_for_seconds / 2


def secret(
    name: str,
    labels: Mapping[str, str],
    owner: Mapping[str, Any],
    data: Mapping[str, str],
    expires: str,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A credentials Secret owned by ``owner`` (a controller reference): ``data`` (key ->
    plain value, base64-encoded here), :data:`EXPIRES_ANNOTATION` = ``expires`` (RFC 3339)
    besides ``annotations``."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "labels": dict(labels),
            "annotations": {**(annotations or {}), EXPIRES_ANNOTATION: expires},
            "ownerReferences": [dict(owner)],
        },
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
