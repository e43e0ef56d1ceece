"""A deleted Dataset's data: applying ``deletionPolicy`` once, then retention from a record.

When a Dataset is deleted, :func:`delete_dataset_data` applies its policy
(:mod:`edgeops.policy.deletion` decides) and writes a *retention record*,
``datasets/_retained/<ns>/<name>/<uid>.json``, listing what stayed: the versions kept (with
their creation time), the inbox prefixes left (Retain), the governance labels and when the
Dataset was deleted. Once the Dataset object is gone nothing reconciles it, so the
operator's retention pass (:func:`apply_retained`, hourly) works from these records alone:
it deletes retained versions when they are due (Delete: no longer used; Retain: older than
``retentionDays`` and unused), raw samples and rejects past ``retentionDays``, and the record
itself once nothing it lists remains.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from edgeops.api import Governance, format_time
from edgeops.policy import deletion

from . import layout
from .protocol import Store
from .retention import remove_abandoned

log = logging.getLogger(__name__)


@dataclass
class DeletionReport:
    """What deleting a Dataset's data did, for its Event."""

    policy: str
    #: Objects deleted in all, of them the folders of these versions and inbox objects.
    deleted: int = 0
    deleted_versions: list[str] = field(default_factory=list)
    deleted_raw: int = 0
    retention_days: int | None = None
    kept: dict[str, tuple[str, ...]] = field(default_factory=dict)
    retained: list[str] = field(default_factory=list)
    #: Inbox prefixes left alone because another Dataset of the namespace reads them.
    shared_inboxes: list[str] = field(default_factory=list)
    #: Inbox objects left (Retain), by count.
    retained_raw: int = 0
    record: str | None = None


def delete_dataset_data(
    store: Store,
    namespace: str,
    name: str,
    uid: str,
    governance: Governance,
    inboxes: list[str],
    other_inboxes: list[str],
    uses: Mapping[str, Sequence[str]],
    now: datetime,
) -> DeletionReport:
    """Applies ``governance.deletionPolicy`` to the objects of Dataset ``namespace/name``.

    ``inboxes`` are its inbox prefixes (already checked to lie in its namespace's inbox),
    ``other_inboxes`` those the namespace's other Datasets read, ``uses`` the dataset
    versions in use with their users. Idempotent: a retry after a failure lists again and
    finishes the job. Raises StoreError when S3 fails."""
    policy = governance.deletion_policy
    prefix = layout.dataset_prefix(namespace, name)
    own, shared = deletion.own_inboxes(inboxes, other_inboxes)
    dataset_keys = [o.key for o in store.list(prefix)]
    inbox_keys = [o.key for p in own for o in store.list(p)]
    plan = deletion.plan_deletion(policy, prefix, dataset_keys, inbox_keys, uses)
    report = DeletionReport(policy=policy, kept=plan.kept, retained=plan.retained)
    report.shared_inboxes = shared
    report.deleted_versions, report.deleted_raw = plan.deleted_versions, plan.deleted_raw
    report.retention_days = governance.retention_days
    index_key = layout.index_key(namespace, name)
    index: dict[str, Any] = store.get_json(index_key) if index_key in dataset_keys else {}
    created = {str(v["id"]): v.get("created") for v in index.get("versions") or []}
    if plan.rewrite_index:
        # Before any delete: the index must stop listing a version before it disappears.
        listed = [v for v in index.get("versions") or [] if str(v["id"]) in plan.kept]
        store.put_json(index_key, {**index, "versions": listed})
    report.deleted = store.delete(plan.delete)
    if policy == "Retain":
        report.retained_raw = len(inbox_keys)
    if plan.retained or (policy == "Retain" and (dataset_keys or inbox_keys)):
        record = {
            "uid": uid,
            "namespace": namespace,
            "name": name,
            "deletedAt": format_time(now),
            "deletionPolicy": policy,
            "classification": governance.classification,
            "legalBasis": governance.legal_basis,
            "retentionDays": governance.retention_days,
            "datasetPrefix": prefix,
            # Retain leaves raw samples; retention deletes them past retentionDays.
            "inboxPrefixes": own if policy == "Retain" else [],
            # A folder without a manifest in the index is a crashed collection's: the
            # retention pass removes it (remove_abandoned), it is no version to keep.
            "versions": [
                {"id": v, "created": created.get(v)}
                for v in plan.retained
                if v in created or v in plan.kept
            ],
        }
        report.record = layout.retained_record_key(namespace, name, uid)
        store.put_json(report.record, record)
    log.info(
        "dataset %s/%s deleted (deletionPolicy %s): %d objects deleted, %d versions retained "
        "(%d in use), %d inbox objects retained, record %s",
        namespace,
        name,
        policy,
        report.deleted,
        len(plan.retained),
        len(plan.kept),
        report.retained_raw,
        report.record or "none",
    )
    return report


@dataclass
class RetainedReport:
    """What one pass over one record did."""

    record: str
    deleted_versions: list[str] = field(default_factory=list)
    kept_for_users: dict[str, tuple[str, ...]] = field(default_factory=dict)
    deleted_raw: int = 0
    removed_record: bool = False


def list_records(store: Store) -> list[str]:
    """Keys of every retention record in the bucket."""
    return [o.key for o in store.list(layout.RETAINED_ROOT) if o.key.endswith(".json")]


def apply_retained(
    store: Store,
    key: str,
    now: datetime,
    uses: Mapping[str, Sequence[str]],
    serving: str | None,
    recreated: bool,
) -> RetainedReport:
    """Applies retention to what record ``key`` lists.

    ``uses``: the record's namespace's dataset versions in use; ``serving``: the latest
    version of a Dataset of the same name that exists again (``recreated``), which shares
    the folder, so its index, its latest version and its own inbox stay its own
    retention's business. Raises StoreError when S3 fails."""
    record: dict[str, Any] = store.get_json(key)
    report = RetainedReport(record=key)
    namespace, name = str(record["namespace"]), str(record["name"])
    versions: list[dict[str, Any]] = list(record.get("versions") or [])
    report.kept_for_users = {
        str(v["id"]): tuple(uses[str(v["id"])]) for v in versions if str(v["id"]) in uses
    }
    due = deletion.due_for_deletion(record, now, uses, serving)
    if due:
        index_key = layout.index_key(namespace, name)
        if store.exists(index_key):
            # Index first, as retention does: a listed version must not vanish.
            index = store.get_json(index_key)
            listed = [v for v in index.get("versions") or [] if str(v["id"]) not in due]
            if listed or recreated:
                store.put_json(index_key, {**index, "versions": listed})
            else:
                store.delete([index_key])
        manifests = [layout.manifest_key(namespace, name, v) for v in due]
        folders = [
            o.key
            for v in due
            for o in store.list(layout.version_prefix(namespace, name, v))
            if o.key not in manifests
        ]
        store.delete(manifests + folders)
        report.deleted_versions = due
        versions = [v for v in versions if str(v["id"]) not in due]
    days = record.get("retentionDays")
    left_raw = False
    if record.get("deletionPolicy") == "Retain" and not recreated:
        # Raw samples and rejects were left with the Dataset; they expire like its versions.
        # A Dataset created again under the same name governs them itself.
        remove_abandoned(store, namespace, name, now)
        cutoff = now - timedelta(days=int(days)) if days is not None else None
        raw_prefixes = [*record.get("inboxPrefixes", [])]
        raw_prefixes.append(layout.failed_rejects_prefix(namespace, name))
        raw = [o for p in raw_prefixes for o in store.list(str(p))]
        expired = [
            o.key
            for o in raw
            if cutoff is not None and o.last_modified is not None and o.last_modified < cutoff
        ]
        report.deleted_raw = store.delete(expired)
        left_raw = len(expired) < len(raw)
    if not versions and not left_raw:
        store.delete([key])
        report.removed_record = True
    elif due:
        store.put_json(key, {**record, "versions": versions})
    return report
