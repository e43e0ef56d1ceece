"""Where a Dataset's objects live in the bucket.

datasets/<ns>/<name>/index.json                    full version history
datasets/<ns>/<name>/versions/<id>/manifest.json   written last: the version exists
datasets/<ns>/<name>/versions/<id>/profile.json    reference profile (drift)
datasets/<ns>/<name>/versions/<id>/version.json    counts, governance, created time
datasets/<ns>/<name>/versions/<id>/rejected.jsonl  rows set aside, with reasons
datasets/<ns>/<name>/staging/<id>.json             an ingestion in progress
datasets/<ns>/<name>/rejected/<fingerprint>.jsonl  rejects of a collection that
                                                   published nothing
inbox/<ns>/<name>/...                              device uploads (gateway)
datasets/_retained/<ns>/<name>/<uid>.json          what a deleted Dataset left for retention
blobs/sha256/<xx>/<sha256>                         content (edgeops.store)
"""

from __future__ import annotations

from collections.abc import Iterable

from edgeops.api.constants import RESERVED_BUCKET_ROOTS
from edgeops.policy import samples

DATASETS_ROOT = "datasets/"
INBOX_ROOT = samples.INBOX_ROOT


def dataset_prefix(namespace: str, name: str) -> str:
    return f"{DATASETS_ROOT}{namespace}/{name}/"


def index_key(namespace: str, name: str) -> str:
    return dataset_prefix(namespace, name) + "index.json"


def version_prefix(namespace: str, name: str, version: str) -> str:
    return f"{dataset_prefix(namespace, name)}versions/{version}/"


def manifest_key(namespace: str, name: str, version: str) -> str:
    return version_prefix(namespace, name, version) + "manifest.json"


def profile_key(namespace: str, name: str, version: str) -> str:
    return version_prefix(namespace, name, version) + "profile.json"


def version_info_key(namespace: str, name: str, version: str) -> str:
    return version_prefix(namespace, name, version) + "version.json"


def version_rejects_key(namespace: str, name: str, version: str) -> str:
    return version_prefix(namespace, name, version) + "rejected.jsonl"


def staging_key(namespace: str, name: str, version: str) -> str:
    return f"{dataset_prefix(namespace, name)}staging/{version}.json"


def failed_rejects_prefix(namespace: str, name: str) -> str:
    """Where collections that published nothing (TooManyRejected) leave their rejects."""
    return f"{dataset_prefix(namespace, name)}rejected/"


def failed_rejects_key(namespace: str, name: str, fingerprint: str) -> str:
    return f"{failed_rejects_prefix(namespace, name)}{fingerprint}.jsonl"


def inbox_prefix(namespace: str, name: str) -> str:
    return samples.inbox_prefix(namespace, name)


def source_inbox_prefix(namespace: str, name: str, prefix: str | None) -> str:
    """The prefix an inbox source reads (and retention deletes under): the Dataset's own
    inbox, or a custom prefix inside its namespace's inbox. One function with the gateway,
    which writes there (:func:`edgeops.policy.samples.source_inbox_prefix`); raises
    ValueError for a prefix outside the namespace's inbox."""
    return samples.source_inbox_prefix(namespace, name, prefix)


def check_s3_source(bucket: str, prefix: str, operator_buckets: Iterable[str]) -> None:
    """Refuses an ``s3`` source that would read the operator's own data.

    ``bucket`` is the *resolved* bucket (the source's own, or the operator's when it names
    none) and ``operator_buckets`` the operator's bucket name(s) (``EDGEOPS_S3_BUCKET``).
    In the operator's bucket a prefix must not overlap a reserved root in either direction
    (``datasets/x/`` is under ``datasets/``; ``data`` would list all of ``datasets/``) and
    must not contain ``..``. The CRD refuses this only where it can know the bucket (no
    bucket, or the default name ``edgeops``); naming a differently configured operator
    bucket explicitly is caught here, before anything is listed or read.

    Raises ValueError with a message naming the field and the roots (no data)."""
    if bucket not in set(operator_buckets):
        return
    overlaps = [
        root for root in RESERVED_BUCKET_ROOTS if prefix.startswith(root) or root.startswith(prefix)
    ]
    if overlaps or ".." in prefix:
        raise ValueError(
            f"sources[].s3: prefix {prefix!r} in bucket {bucket!r}, the operator's own bucket, "
            "must not overlap its reserved roots ("
            + ", ".join(RESERVED_BUCKET_ROOTS)
            + ") or contain '..': they hold every namespace's data"
        )


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


#: Records of deleted Datasets' retained data. Namespace names cannot start with "_", so
#: this never collides with a Dataset's folder, and it lies under a reserved root that no
#: tenant's s3 source may read.
RETAINED_ROOT = f"{DATASETS_ROOT}_retained/"


def retained_record_key(namespace: str, name: str, uid: str) -> str:
    """The record of what a deleted Dataset (``uid``) left behind for retention."""
    return f"{RETAINED_ROOT}{namespace}/{name}/{uid}.json"
