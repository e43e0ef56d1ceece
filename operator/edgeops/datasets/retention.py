"""Retention: expired versions and raw samples are deleted, except versions that still
back a deployed model; then blobs no manifest references are garbage-collected."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from edgeops.api import Governance

from . import layout
from .manifest import parse_manifest
from .protocol import Store

log = logging.getLogger(__name__)

#: Blobs younger than this are never collected: they may belong to an ingestion whose
#: manifest is not written yet.
BLOB_GRACE = timedelta(hours=1)


@dataclass
class RetentionReport:
    deleted_versions: list[str] = field(default_factory=list)
    kept_for_models: list[str] = field(default_factory=list)
    deleted_raw: int = 0
    deleted_blobs: int = 0


def enforce_retention(
    store: Store,
    namespace: str,
    name: str,
    governance: Governance,
    now: datetime,
    protected: set[str],
    inbox: str | None = None,
) -> RetentionReport:
    """Deletes versions created before the retention cut-off and inbox objects older than
    it. The latest version stays (it is what the Dataset serves until the next collection
    replaces it) and so does every version in ``protected`` (backing a deployed model)."""
    report = RetentionReport()
    if governance.retention_days is None:
        return report
    cutoff = now - timedelta(days=governance.retention_days)
    index_key = layout.index_key(namespace, name)
    index: dict[str, Any] = store.get_json(index_key) if store.exists(index_key) else {}
    versions: list[dict[str, Any]] = list(index.get("versions", []))
    kept: list[dict[str, Any]] = []
    for position, version in enumerate(versions):
        expired = datetime.fromisoformat(version["created"]) < cutoff
        if not expired or position == len(versions) - 1:
            kept.append(version)
        elif version["id"] in protected:
            kept.append(version)
            report.kept_for_models.append(version["id"])
        else:
            report.deleted_versions.append(version["id"])
    if report.deleted_versions:
        # Index first: a version must stop being listed before its files disappear.
        store.put_json(index_key, {**index, "versions": kept})
        for version_id in report.deleted_versions:
            prefix = layout.version_prefix(namespace, name, version_id)
            store.delete(
                [layout.manifest_key(namespace, name, version_id)]  # manifest first
                + [o.key for o in store.list(prefix)]
            )
    if inbox:
        expired_raw = [
            o.key
            for o in store.list(inbox)
            if o.last_modified is not None and o.last_modified < cutoff
        ]
        report.deleted_raw = store.delete(expired_raw)
    return report


def referenced_blobs(store: Store) -> set[str]:
    """SHA-256 of every blob any published version of any Dataset references."""
    referenced: set[str] = set()
    for info in store.list(layout.DATASETS_ROOT):
        if info.key.endswith("/manifest.json"):
            referenced.update(e.sha256 for e in parse_manifest(store.get_bytes(info.key)))
    return referenced


def collect_garbage(store: Store, now: datetime, grace: timedelta = BLOB_GRACE) -> int:
    """Deletes blobs that no manifest references and that are older than ``grace``."""
    referenced = referenced_blobs(store)
    doomed = [
        o.key
        for o in store.list("blobs/sha256/")
        if o.key.rsplit("/", 1)[-1] not in referenced
        and (o.last_modified is None or now - o.last_modified >= grace)
    ]
    if doomed:
        log.info("garbage-collecting %d unreferenced blobs", len(doomed))
    return store.delete(doomed)
