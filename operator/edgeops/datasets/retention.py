"""Retention: expired versions and raw samples are deleted, except versions that still
back a deployed model; then blobs no manifest references are garbage-collected."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

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
            manifest = layout.manifest_key(namespace, name, version_id)
            prefix = layout.version_prefix(namespace, name, version_id)
            store.delete(
                [manifest]  # first: a version without a manifest is never read
                + [o.key for o in store.list(prefix) if o.key != manifest]
            )
    if inbox:
        expired_raw = [
            o.key
            for o in store.list(inbox)
            if o.last_modified is not None and o.last_modified < cutoff
        ]
        report.deleted_raw = store.delete(expired_raw)
    return report


#: Prefixes whose JSON documents reference blobs: dataset manifests, training results
#: (runs/...) and the model registry with its signed bundles (models/...). Blobs are shared
#: by all of them, so garbage is what none of them mentions.
REFERENCING_PREFIXES: Final = (layout.DATASETS_ROOT, "runs/", "models/")
_SHA256 = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")


def referenced_blobs(store: Store) -> set[str]:
    """SHA-256 of every blob that a dataset version, a training result or a model version
    (registry, bundle manifests) refers to."""
    referenced: set[str] = set()
    for prefix in REFERENCING_PREFIXES:
        for info in store.list(prefix):
            if info.key.endswith("/manifest.json") and info.key.startswith(layout.DATASETS_ROOT):
                referenced.update(e.sha256 for e in parse_manifest(store.get_bytes(info.key)))
            elif info.key.endswith(".json"):
                # Results, registries and bundle manifests name blobs by hash or by
                # s3://.../blobs/sha256/<hash>; any 64-hex string counts (over-keeping is safe).
                referenced.update(
                    _SHA256.findall(store.get_bytes(info.key).decode(errors="replace"))
                )
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
