"""A Dataset's collection Jobs: create one (with its scoped S3 credentials), find the one
in flight, read what a finished one reported. Decisions are in
`edgeops.policy.collection_job`; the Dataset controller (`edgeops.controllers.dataset`)
decides when and writes status.
"""

from __future__ import annotations

import logging
from typing import Any

from edgeops import __version__
from edgeops.api import DatasetSpec
from edgeops.api.constants import ImageRepositories
from edgeops.controllers import pod_credentials
from edgeops.datasets import layout
from edgeops.k8s import apply, objects
from edgeops.policy import collection_job as policy
from edgeops.policy import credentials
from edgeops.settings import settings
from edgeops.store import ArtifactStore
from edgeops.store.artifacts import BLOB_PREFIX

log = logging.getLogger(__name__)

#: Operator settings a collection must share, passed to the collector as EDGEOPS_* env.
_SHARED_SETTINGS = (
    "s3_bucket",
    "s3_region",
    "s3_insecure_skip_verify",
    "source_max_object_mib",
    "source_max_decompressed_mib",
    "source_max_rows_per_object",
    "http_source_deadline_seconds",
    "http_source_allowed_hosts",
    "http_source_allow_private_networks",
)


def collector_env(store: ArtifactStore) -> dict[str, str]:
    """The ``EDGEOPS_*`` variables of a collector: where S3 is (the Jobs' endpoint when
    set) and the operator's source limits and HTTP address policy, so a collection in a
    Job reads exactly what one in the operator would have."""
    conf = settings()
    env = {"EDGEOPS_S3_ENDPOINT": conf.s3_job_endpoint or store.config.endpoint}
    for field in _SHARED_SETTINGS:
        value = getattr(conf, field)
        if value is None:
            continue
        env[f"EDGEOPS_{field.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    return env


def source_locations(
    spec: DatasetSpec, store: ArtifactStore, namespace: str, name: str
) -> list[tuple[str, str]]:
    """(bucket, prefix) of every s3 and inbox source: what the collector may list and read.

    Raises ValueError for an inbox prefix outside the Dataset's inbox."""
    found: list[tuple[str, str]] = []
    for source in spec.sources:
        if source.s3 is not None:
            found.append((source.s3.bucket or store.bucket, source.s3.prefix))
        elif source.inbox is not None:
            prefix = layout.source_inbox_prefix(namespace, name, source.inbox.prefix)
            found.append((store.bucket, prefix))
    return found


def current(jobs: list[dict[str, Any]], uid: str) -> dict[str, Any] | None:
    """The Dataset's newest collection Job (highest number) that it controls, or None.
    Jobs of a deleted Dataset of the same name (another UID) are not its own."""
    owned = [
        j
        for j in jobs
        if any(
            r.get("controller") and r.get("uid") == uid
            for r in (j.get("metadata") or {}).get("ownerReferences") or []
        )
    ]
    return max(owned, key=policy.number_of) if owned else None


def pods_of(job: dict[str, Any], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    name = job["metadata"]["name"]
    return [p for p in pods if (p["metadata"].get("labels") or {}).get("job-name") == name]


def start(
    body: dict[str, Any],
    spec: DatasetSpec,
    raw_spec: dict[str, Any],
    namespace: str,
    number: int,
    now: str,
    store: ArtifactStore,
    ingest_delay: float,
) -> dict[str, Any]:
    """Issues the collection's scoped credentials into the Dataset's Secret and creates
    (or finds, after a restart) the ``number``-th collection Job. Returns the Job.

    Raises StoreError (STS refused or down), NameTakenError / StaleOwnerError (a Secret or
    Job of that name the Dataset does not control), ValueError (a source prefix that cannot
    be part of a policy), ApiException."""
    meta = body["metadata"]
    dataset = {
        "metadata": {
            "name": meta["name"],
            "uid": meta["uid"],
            "generation": meta.get("generation"),
        }
    }
    name = meta["name"]
    limits = policy.settings_of(spec)
    pod_credentials.issue(
        namespace,
        store,
        secret_name=policy.s3_secret_name(name),
        owner=policy.owner_reference(dataset),
        session_policy=lambda: credentials.collection_policy(
            store.bucket,
            layout.dataset_prefix(namespace, name),
            BLOB_PREFIX,
            source_locations(spec, store, namespace, name),
        ),
        seconds=credentials.collection_seconds(
            limits.active_deadline_seconds, settings().s3_pod_credentials_seconds
        ),
        session_name=f"edgeops-collect-{meta['uid']}",
        secret=lambda data, expires: policy.credentials_secret(dataset, data, expires),
    )
    config = policy.collection_config(
        namespace, name, raw_spec, now, ingest_delay_seconds=ingest_delay
    )
    manifest = policy.job(
        dataset,
        spec,
        number,
        config,
        f"{ImageRepositories.TRAINER}:{__version__}",
        collector_env(store),
    )
    job, _ = apply.apply_owned(namespace, manifest, update=False)
    return job


def report(job: dict[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What the collector reported on its last log line (`edgeops.datasets.job`), from the
    newest finished pod of ``job``; None when no pod left a report (it crashed, was
    killed, or is gone)."""
    finished = [
        p
        for p in pods_of(job, pods)
        if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")
    ]
    finished.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
    for pod in reversed(finished):
        meta = pod["metadata"]
        log = objects.read_pod_log(meta["namespace"], meta["name"], policy.CONTAINER) or ""
        found = policy.parse_marker(log)
        if found is not None:
            return found
    return None


def remove(job: dict[str, Any]) -> None:
    """Deletes a collection Job whose success status now records (its pods go with it).
    Failed Jobs are left to their TTL, so their pods' logs can still be read. A failure
    to delete is only logged: the TTL removes the Job anyway."""
    meta = job["metadata"]
    try:
        objects.delete_job(meta["namespace"], meta["name"], meta["uid"])
    except Exception as error:
        log.warning("collection Job %s/%s not deleted: %s", meta["namespace"], meta["name"], error)
