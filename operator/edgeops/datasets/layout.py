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
blobs/sha256/<xx>/<sha256>                         content (edgeops.store)
"""

from __future__ import annotations

DATASETS_ROOT = "datasets/"
INBOX_ROOT = "inbox/"


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
    return f"{INBOX_ROOT}{namespace}/{name}/"


def source_inbox_prefix(namespace: str, name: str, prefix: str | None) -> str:
    """The prefix an inbox source reads (and retention deletes under): the Dataset's own
    inbox, or a custom prefix inside its namespace's inbox. The CRD checks the shape of a
    custom prefix (and DatasetSpec its pydantic twin) but cannot see the namespace, so this
    checks the namespace."""
    if not prefix:
        return inbox_prefix(namespace, name)
    own = f"{INBOX_ROOT}{namespace}/"
    if not prefix.startswith(own):
        raise ValueError(
            f"sources[].inbox.prefix: {prefix!r} is outside this namespace's inbox {own}"
        )
    return prefix


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"
