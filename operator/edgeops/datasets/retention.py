"""Retention: expired versions, raw samples and the rejected rows of failed collections
are deleted, except versions that still back a deployed model, and so are the leftovers of
crashed collections; then blobs no manifest references are garbage-collected."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from edgeops.api import Governance

from . import inflight, layout
from .manifest import parse_manifest
from .protocol import ObjectInfo, Store

log = logging.getLogger(__name__)

#: Blobs younger than this are never collected: they may belong to an ingestion whose
#: manifest is not written yet. Staging markers and unpublished version folders older than
#: this are the leftovers of a crashed ingestion and are removed.
BLOB_GRACE = timedelta(hours=1)


@dataclass
class RetentionReport:
    deleted_versions: list[str] = field(default_factory=list)
    kept_for_models: list[str] = field(default_factory=list)
    deleted_raw: int = 0
    #: Files of rejected rows (raw input) that collections which published nothing
    #: (TooManyRejected) left under rejected/. A version's own rejected.jsonl goes with its
    #: version and is not counted here.
    deleted_rejects: int = 0
    deleted_blobs: int = 0
    #: Objects of crashed collections removed: stale staging markers and the files of
    #: versions that never got a manifest.
    deleted_leftovers: int = 0


def enforce_retention(
    store: Store,
    namespace: str,
    name: str,
    governance: Governance,
    now: datetime,
    protected: set[str],
    inbox: str | None = None,
) -> RetentionReport:
    """Deletes versions created before the retention cut-off, and inbox objects and the
    rejects of collections that published nothing (``rejected/``, raw rows) last modified
    before it. The latest version stays (it is what the Dataset serves until the next
    collection replaces it) and so does every version in ``protected`` (backing a deployed
    model); a deleted version takes its whole folder, its rejected.jsonl included.
    Leftovers of crashed collections go whatever the retention (``remove_abandoned``)."""
    report = RetentionReport()
    report.deleted_leftovers = remove_abandoned(store, namespace, name, now)
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
    # A failed collection writes its rejects once per distinct input (fingerprint; a repeat
    # does not rewrite them), so their age is that of this copy of the raw rows. The index's
    # lastCollection and the Dataset status may go on naming the file (rejectedUri) after it
    # is deleted, until a collection of other input replaces them.
    expired_rejects = [
        o.key
        for o in store.list(layout.failed_rejects_prefix(namespace, name))
        if o.last_modified is not None and o.last_modified < cutoff
    ]
    report.deleted_rejects = store.delete(expired_rejects)
    if inbox:
        expired_raw = [
            o.key
            for o in store.list(inbox)
            if o.last_modified is not None and o.last_modified < cutoff
        ]
        report.deleted_raw = store.delete(expired_raw)
    return report


def remove_abandoned(
    store: Store, namespace: str, name: str, now: datetime, grace: timedelta = BLOB_GRACE
) -> int:
    """Deletes what a collection that crashed before its manifest leaves behind, once it is
    older than ``grace``: its staging marker (which otherwise keeps the version's blobs from
    ever being collected) and its version folder (profile.json, version.json and
    rejected.jsonl, whose raw rows may hold personal data). Returns how many objects.

    Such a version was never visible: a version exists once its manifest does, and the
    index lists only versions with a manifest. So a folder with a manifest is never touched,
    and neither is one with any object younger than ``grace`` or with a staging marker
    younger than ``grace``: that may be an ingestion in progress. The next collection of the
    same content recomputes the same version id and rewrites every file, so removing an
    abandoned version loses nothing.

    A collection of this Dataset does not run meanwhile in this process: the operator
    collects and then enforces retention in the same per-Dataset timer, one at a time."""
    prefix = layout.dataset_prefix(namespace, name)
    cutoff = now - grace

    def old(info: ObjectInfo) -> bool:
        # Without a time the age is unknown: keep it.
        return info.last_modified is not None and info.last_modified < cutoff

    markers: dict[str, ObjectInfo] = {}
    for info in store.list(prefix + "staging/"):
        version = info.key.rsplit("/", 1)[-1].removesuffix(".json")
        markers[version] = info
    folders: dict[str, list[ObjectInfo]] = {}
    for info in store.list(prefix + "versions/"):
        version = info.key.removeprefix(prefix + "versions/").split("/", 1)[0]
        folders.setdefault(version, []).append(info)

    doomed: list[str] = []
    for version, objects in folders.items():
        published = any(o.key == layout.manifest_key(namespace, name, version) for o in objects)
        marker = markers.get(version)
        if published or not all(map(old, objects)) or (marker and not old(marker)):
            continue
        doomed.extend(o.key for o in objects)
    # Markers last: while a folder is only partly deleted, its marker keeps its blobs.
    doomed.extend(m.key for m in markers.values() if old(m))
    if doomed:
        log.info(
            "dataset %s/%s: removing %d objects of crashed collections",
            namespace,
            name,
            len(doomed),
        )
    return store.delete(doomed)


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
            if not info.key.endswith(".json"):
                continue
            data = store.get_bytes(info.key)
            if info.key.endswith("/manifest.json") and info.key.startswith(layout.DATASETS_ROOT):
                try:
                    referenced.update(e.sha256 for e in parse_manifest(data))
                    continue
                except (KeyError, TypeError, ValueError):
                    # Not a manifest this code wrote (damaged, or put there by hand): fall
                    # back to the hash scan below rather than fail every pass.
                    pass
            # Results, registries and bundle manifests name blobs by hash or by
            # s3://.../blobs/sha256/<hash>; any 64-hex string counts (over-keeping is safe).
            referenced.update(_SHA256.findall(data.decode(errors="replace")))
    return referenced


def collect_garbage(store: Store, now: datetime, grace: timedelta = BLOB_GRACE) -> int:
    """Deletes blobs that no manifest references and that are older than ``grace``.

    Writers in this process (collections in other Datasets' handler threads) may reuse an
    old unreferenced blob between the reference scan and the delete; they hold it in
    ``inflight`` first, and the pass re-checks the holds and deletes under the registry's
    lock, so such a blob is either spared or deleted before the writer looks for it (and
    then uploaded again). Writers in other processes (training Jobs) are covered only by
    the grace period: they upload new blobs before writing the document naming them. What
    remains open is such a writer reusing an old unreferenced blob while a pass runs; and
    a write that started in a previous operator process and finishes after this one's pass
    read the references (a second active operator is not supported)."""
    with inflight.sweep() as sweep:
        referenced = referenced_blobs(store)
        candidates = [
            o.key
            for o in store.list("blobs/sha256/")
            if o.key.rsplit("/", 1)[-1] not in referenced
            and (o.last_modified is None or now - o.last_modified >= grace)
        ]
        # Decide and delete under the lock: a writer registering now waits, and then finds
        # the blob missing and uploads it again.
        with sweep.final() as held:
            doomed = [k for k in candidates if k.rsplit("/", 1)[-1] not in held]
            if doomed:
                log.info("garbage-collecting %d unreferenced blobs", len(doomed))
            return store.delete(doomed)
