"""One collection of a Dataset: read every source, clean, split, and publish a version.

Crash safety: blobs, profile and version info are written before the manifest, and the
manifest before the index. A version exists once its manifest does, so a reader never sees
half a version. A crash before the manifest leaves unreferenced blobs (garbage-collected
later) and a staging marker; the next collection recomputes the same content, hence the
same version id, finds no manifest, and completes the publish idempotently.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from edgeops.api import DatasetSchema, DatasetSpec, format_time
from edgeops.canonical_json import sorted_json

from . import layout
from .canonical import finite_json
from .cleaning import CleanResult, kept_columns
from .inflight import hold
from .manifest import ManifestEntry, manifest_bytes, version_id
from .pipeline import spill_sources
from .protocol import Store
from .readers import READ_RULES
from .rows import Row
from .sources import (
    FetchLimits,
    HttpFetch,
    HttpResponse,
    HttpValidators,
    SourceBatch,
    SourceUnavailableError,
    http_fetch,
    list_batches,
)
from .split import SPLITS, assign
from .stream import Shards

log = logging.getLogger(__name__)


class Outcome:
    PUBLISHED: Final = "Published"  # a new (or an older, restored) version is now latest
    UNCHANGED: Final = "Unchanged"  # content hashed to an existing version
    NO_NEW_DATA: Final = "NoNewData"  # sources and spec unchanged since last collection
    TOO_MANY_REJECTED: Final = "TooManyRejected"  # rejects above the limit: nothing published
    NO_DATA: Final = "NoData"  # the sources hold no rows yet


@dataclass
class CollectionResult:
    outcome: str
    fingerprint: str
    latest: dict[str, Any] | None
    history: list[dict[str, Any]]
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    coercions: dict[str, int] = field(default_factory=dict)
    rejected_uri: str | None = None
    sources: int = 0
    #: Per source object, the rows of it that were not read (CleanResult.unread).
    unread: list[dict[str, Any]] = field(default_factory=list)
    #: Sources and spec unchanged: nothing was read and the last collection's counts are
    #: replayed; its outcome too if it was TooManyRejected (the same rows are still bad),
    #: NoNewData otherwise.
    repeated: bool = False

    @property
    def new_version(self) -> bool:
        return self.outcome == Outcome.PUBLISHED

    def summary(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "fingerprint": self.fingerprint,
            "version": self.latest["id"] if self.latest else None,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "byReason": self.by_reason,
            "coercions": self.coercions,
            "rejectedUri": self.rejected_uri,
            "sources": self.sources,
            "unread": self.unread,
        }


def effective_schema(spec: DatasetSpec) -> DatasetSchema:
    if spec.data_schema is not None:
        return spec.data_schema
    from . import builtin

    first = next(s.builtin for s in spec.sources if s.builtin is not None)
    assert first is not None
    try:
        return builtin.load(first.name).schema
    except builtin.BuiltinUnavailableError as error:
        raise SourceUnavailableError(str(error)) from None


def collect(
    store: Store,
    namespace: str,
    name: str,
    spec: DatasetSpec,
    now: datetime,
    *,
    before_manifest: Callable[[str], None] = lambda _version: None,
    fetch_url: HttpFetch = http_fetch,
    force: bool = False,
) -> CollectionResult:
    """Collects once. ``before_manifest`` runs between the data and the manifest writes
    (a test hook to crash there); ``force`` re-reads sources even if nothing changed."""
    schema = effective_schema(spec)
    index = _load_index(store, namespace, name)
    last = index.get("lastCollection") or {}
    known = _http_validators(last)
    batches = list_batches(spec, store, namespace, name, fetch_url, known)
    fingerprint = _fingerprint(spec, schema, batches)
    history: list[dict[str, Any]] = index.get("versions", [])
    latest = history[-1] if history else None
    if not force and last.get("fingerprint") == fingerprint:
        http = _http_state(batches)
        if http != last.get("http", {}):
            # Validators first seen (or renewed) for unchanged content: remember them, so
            # the next request is conditional.
            index["lastCollection"] = {**last, "http": http}
            store.put_json(layout.index_key(namespace, name), index)
        return _repeat(last, fingerprint, latest, history)
    if any(b.not_modified for b in batches):
        # Something else changed: the rows of every source are needed, download them.
        batches = list_batches(spec, store, namespace, name, fetch_url)
        fingerprint = _fingerprint(spec, schema, batches)

    with tempfile.TemporaryDirectory(prefix="edgeops-collect-") as scratch:
        cleaned, shards = spill_sources(batches, schema, spec, Path(scratch))
        result = CollectionResult(
            outcome=Outcome.NO_DATA,
            fingerprint=fingerprint,
            latest=latest,
            history=history,
            accepted=cleaned.accepted_rows,
            rejected=cleaned.invalid_count,
            duplicates=cleaned.duplicates,
            by_reason=cleaned.rejected_by_reason,
            coercions=dict(cleaned.coercions),
            sources=len(batches),
            unread=cleaned.unread,
        )
        if cleaned.invalid_fraction() > spec.validation.max_rejected_fraction:
            key = layout.failed_rejects_key(namespace, name, fingerprint)
            store.put_bytes(key, _rejects_jsonl(cleaned), "application/x-ndjson")
            result.outcome = Outcome.TOO_MANY_REJECTED
            result.rejected_uri = layout.s3_uri(store.bucket, key)
        elif shards.rows:
            record = _publish(
                store, namespace, name, spec, schema, cleaned, shards, now, before_manifest
            )
            unchanged = latest is not None and latest["id"] == record["id"]
            result.outcome = Outcome.UNCHANGED if unchanged else Outcome.PUBLISHED
            # Content equal to an older version makes that version the latest again.
            history = [v for v in history if v["id"] != record["id"]] + [record]
            result.latest, result.history = history[-1], history
            result.rejected_uri = record.get("rejectedUri")
    index.update(
        versions=result.history,
        lastCollection={
            **result.summary(),
            "time": format_time(now),
            "http": _http_state(batches),
        },
    )
    # The index is written after the manifest: it only ever lists complete versions.
    store.put_json(layout.index_key(namespace, name), index)
    return result


class _MustDownloadError(Exception):
    """An HTTP(S) source whose sameness a conditional request could not confirm."""


def headers_only(url: str, known: HttpValidators | None) -> HttpResponse:
    """An :data:`HttpFetch` that never takes a body: a conditional request (the validators
    of the last download) whose 304 Not Modified means unchanged. Anything else (no
    validators, a 200 with a body, an error) raises ``_MustDownloadError``: the collection Job
    downloads the file and reports what it finds. Same address policy and deadline as
    every source download (`edgeops.datasets.sources.http_fetch`), a size limit of 0."""
    if known is None or not (known.etag or known.last_modified):
        raise _MustDownloadError
    try:
        response = http_fetch(url, known, limits=replace(FetchLimits.from_settings(), max_bytes=0))
    except SourceUnavailableError:  # SourceLimitError: a body came; or refused, or failing
        raise _MustDownloadError from None
    if response.body is not None:
        raise _MustDownloadError
    return response


def unchanged(
    store: Store,
    namespace: str,
    name: str,
    spec: DatasetSpec,
    fetch_url: HttpFetch = headers_only,
) -> CollectionResult | None:
    """The last collection's result again (``repeated``) when its fingerprint still holds,
    found without reading any row: S3 and inbox sources are listed (keys, ETags, sizes),
    HTTP(S) sources asked with a conditional request (:func:`headers_only`). So the
    operator answers "nothing new" without starting a collection Job. None when a
    collection must run: the fingerprint changed, there was no collection yet, an HTTP(S)
    file is not known unchanged, or a built-in source is not installed here. A built-in
    source's fingerprint is the hash of its installed files (read, not parsed), so an
    operator restart with nothing new starts no Job for it either.

    Raises SourceUnavailableError (an s3 source refused), StoreError."""
    from . import builtin

    for source in spec.sources:
        if source.builtin is not None:
            try:
                builtin.load(source.builtin.name)
            except builtin.BuiltinUnavailableError:
                return None  # the collection Job's image may have it: let it decide
    index = _load_index(store, namespace, name)
    last = index.get("lastCollection") or {}
    if not last.get("fingerprint"):
        return None
    try:
        batches = list_batches(spec, store, namespace, name, fetch_url, _http_validators(last))
    except _MustDownloadError:
        return None
    fingerprint = _fingerprint(spec, effective_schema(spec), batches)
    if last.get("fingerprint") != fingerprint:
        return None
    history: list[dict[str, Any]] = index.get("versions", [])
    return _repeat(last, fingerprint, history[-1] if history else None, history)


def _repeat(
    last: dict[str, Any],
    fingerprint: str,
    latest: dict[str, Any] | None,
    history: list[dict[str, Any]],
) -> CollectionResult:
    # The same rows would be rejected again, so a rejected collection stays rejected.
    rejected = last.get("outcome") == Outcome.TOO_MANY_REJECTED
    return CollectionResult(
        outcome=Outcome.TOO_MANY_REJECTED if rejected else Outcome.NO_NEW_DATA,
        fingerprint=fingerprint,
        latest=latest,
        history=history,
        accepted=int(last.get("accepted", 0)),
        rejected=int(last.get("rejected", 0)),
        duplicates=int(last.get("duplicates", 0)),
        by_reason=dict(last.get("byReason") or {}),
        coercions=dict(last.get("coercions") or {}),
        rejected_uri=last.get("rejectedUri"),
        sources=int(last.get("sources", 0)),
        unread=list(last.get("unread") or []),
        repeated=True,
    )


def build_shards(
    rows: list[Row], schema: DatasetSchema, spec: DatasetSpec
) -> tuple[dict[str, bytes], dict[str, int]]:
    """The files of a version in memory: one JSON Lines shard per split plus the schema.
    The reference for :mod:`edgeops.datasets.stream`, which writes the same bytes from a
    spill (collections use that)."""
    columns = kept_columns(schema)
    lines: dict[str, list[bytes]] = {s: [] for s in SPLITS}
    for row in rows:
        ordered = {c: row.get(c) for c in columns}
        lines[assign(ordered, schema.row_key, spec.split)].append(sorted_json(ordered))
    shards = {f"data/{s}.jsonl": b"".join(line + b"\n" for line in lines[s]) for s in SPLITS}
    shards["schema.json"] = sorted_json(
        schema.model_dump(mode="json", by_alias=True, exclude_none=True)
    )
    return shards, {s: len(lines[s]) for s in SPLITS}


def _publish(
    store: Store,
    namespace: str,
    name: str,
    spec: DatasetSpec,
    schema: DatasetSchema,
    cleaned: CleanResult,
    shards: Shards,
    now: datetime,
    before_manifest: Callable[[str], None],
) -> dict[str, Any]:
    schema_bytes = sorted_json(schema.model_dump(mode="json", by_alias=True, exclude_none=True))
    entries = [*shards.entries, ManifestEntry.of("schema.json", schema_bytes)]
    version = version_id(entries)
    manifest = layout.manifest_key(namespace, name, version)
    record = _record(store, namespace, name, spec, schema, cleaned, shards, version, now)
    if store.exists(manifest):
        # Published before (maybe by a run that crashed before updating the index, and
        # then perhaps before removing its staging marker).
        published = _republished(store, namespace, name, version, record)
        store.delete([layout.staging_key(namespace, name, version)])
        return published

    staging = layout.staging_key(namespace, name, version)
    shas = [e.sha256 for e in entries]
    # put_blob skips a blob that exists, so this version may reuse an old unreferenced one.
    # The staging marker names the shards for passes that read the references after it is
    # written, but a pass that read them before can still delete a reused blob before the
    # manifest exists. The hold closes that within this process (a garbage collection in
    # another Dataset's handler thread): it is taken before put_blob checks existence and
    # released only once the manifest references the blobs (see edgeops.datasets.inflight).
    # Writers in other processes are covered by the grace period and the marker only.
    with hold(shas):
        store.put_json(staging, {"version": version, "started": format_time(now), "blobs": shas})
        for path in shards.files.values():
            _put_file(store, path)
        store.put_blob(schema_bytes)
        store.put_json(layout.profile_key(namespace, name, version), shards.profile)
        if cleaned.rejected:
            store.put_bytes(
                layout.version_rejects_key(namespace, name, version),
                _rejects_jsonl(cleaned),
                "application/x-ndjson",
            )
        store.put_json(layout.version_info_key(namespace, name, version), record)
        before_manifest(version)
        store.put_bytes(manifest, manifest_bytes(entries), "application/json")
    store.delete([staging])
    log.info(
        "published dataset version %s/%s %s (%d rows)",
        namespace,
        name,
        version[:12],
        shards.rows,
    )
    return record


#: Shards up to this size are uploaded from memory (every Store has put_blob), larger
#: ones streamed from their file.
_IN_MEMORY_UPLOAD = 64 * 1024 * 1024


def _put_file(store: Store, path: Path) -> None:
    if path.stat().st_size <= _IN_MEMORY_UPLOAD:
        store.put_blob(path.read_bytes())
    else:
        store.put_blob_file(path)


def _republished(
    store: Store, namespace: str, name: str, version: str, record: dict[str, Any]
) -> dict[str, Any]:
    """The stored record of an already published version, carrying the spec's current
    governance: governance is not part of the content (nor of the version id), so a change
    to it alone rewrites version.json (and, through the caller, the index entry) instead
    of making a new version."""
    key = layout.version_info_key(namespace, name, version)
    existing = store.get_json(key)
    if not isinstance(existing, dict):
        return record
    if existing.get("governance") != record["governance"]:
        existing = {**existing, "governance": record["governance"]}
        store.put_json(key, existing)
    return dict(existing)


def _record(
    store: Store,
    namespace: str,
    name: str,
    spec: DatasetSpec,
    schema: DatasetSchema,
    cleaned: CleanResult,
    shards: Shards,
    version: str,
    now: datetime,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": version,
        "created": format_time(now),
        "sampleCount": shards.rows,
        "rejectedCount": cleaned.invalid_count,
        "rejectedByReason": cleaned.rejected_by_reason,
        "classBalance": shards.class_balance if schema.label else {},
        "splits": shards.split_counts,
        "manifestUri": layout.s3_uri(store.bucket, layout.manifest_key(namespace, name, version)),
        "profileUri": layout.s3_uri(store.bucket, layout.profile_key(namespace, name, version)),
        # Governance travels with every version, so a copy of the data keeps its rules.
        "governance": _governance_labels(spec),
    }
    if cleaned.rejected:
        key = layout.version_rejects_key(namespace, name, version)
        record["rejectedUri"] = layout.s3_uri(store.bucket, key)
    return record


def _governance_labels(spec: DatasetSpec) -> dict[str, Any]:
    """The governance a version carries. deletionPolicy is left out: it is about the
    Dataset object, not the data, so changing it neither re-collects nor rewrites versions."""
    return spec.governance.model_dump(
        mode="json", by_alias=True, exclude_none=True, exclude={"deletion_policy"}
    )


def _rejects_jsonl(cleaned: CleanResult) -> bytes:
    # Rejected rows are raw input: NaN and Infinity are written as strings.
    return b"".join(sorted_json(finite_json(r.to_dict())) + b"\n" for r in cleaned.rejected)


def _fingerprint(spec: DatasetSpec, schema: DatasetSchema, batches: list[SourceBatch]) -> str:
    """What a collection depends on: every source object's identity and the parts of the
    spec that change the result."""
    relevant: dict[str, Any] = {
        "format": spec.format,
        "schema": schema.model_dump(mode="json", by_alias=True, exclude_none=True),
        "validation": spec.validation.model_dump(mode="json", by_alias=True),
        "split": spec.split.model_dump(mode="json", by_alias=True),
        "governance": _governance_labels(spec),
        "sources": sorted(b.fingerprint for b in batches),
    }
    relevant["readRules"] = READ_RULES
    if any(s.encoding for s in spec.sources):
        # Only when declared, so the fingerprints of existing Datasets stay as they were.
        relevant["encodings"] = [s.encoding for s in spec.sources]
    return hashlib.sha256(sorted_json(relevant)).hexdigest()


def _http_validators(last: dict[str, Any]) -> dict[str, HttpValidators]:
    """The validators of the last collection's HTTP(S) downloads, by URL hash."""
    state = last.get("http")
    if not isinstance(state, dict):
        return {}
    parsed = {key: HttpValidators.from_json(key, value) for key, value in state.items()}
    return {key: value for key, value in parsed.items() if value is not None}


def _http_state(batches: list[SourceBatch]) -> dict[str, dict[str, str]]:
    return {b.validators.key: b.validators.to_json() for b in batches if b.validators}


def _load_index(store: Store, namespace: str, name: str) -> dict[str, Any]:
    from edgeops.store import ObjectMissingError

    try:
        document = store.get_json(layout.index_key(namespace, name))
    except ObjectMissingError:
        return {"dataset": f"{namespace}/{name}", "versions": []}
    return dict(document) if isinstance(document, dict) else {"versions": []}
