"""Dataset controller: collects on spec.collection's schedule, and at once on a spec change.

``collect_dataset`` is the Dataset's one reconciler (`edgeops.controllers.reconciler`): the
only writer of its status. It runs when the Dataset changes and otherwise when it asks to:
the next scheduled collection, the next look for new source objects (``onNewObjects``;
S3 has no watch, so that one polls S3, never the API server), a retry, or retention's
hourly pass.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import kopf
from pydantic import ValidationError

from edgeops.api import (
    ConditionType,
    DatasetSpec,
    DatasetVersion,
    Reason,
    format_time,
    get_condition,
)
from edgeops.api.common import describe_validation_error
from edgeops.api.conditions import Verdicts, update_conditions
from edgeops.api.constants import DATASET, DATASETS
from edgeops.controllers import dataset_collection, events, reconciler
from edgeops.controllers.watches import dataset_version_uses, items
from edgeops.datasets import layout
from edgeops.datasets.ingest import CollectionResult, Outcome, unchanged
from edgeops.datasets.job import result_from_document, store_error
from edgeops.datasets.retention import collect_garbage, enforce_retention
from edgeops.datasets.sources import SourceUnavailableError
from edgeops.k8s import custom
from edgeops.policy import admission, collection, collection_job
from edgeops.policy.collection import RETENTION_EVERY_SECONDS
from edgeops.policy.retry import backoff
from edgeops.settings import settings
from edgeops.store import (
    ArtifactStore,
    StorageMisconfiguredError,
    StorageRejectedError,
    StoreError,
)

from .storage import artifact_store, describe_store_error

log = logging.getLogger(__name__)

#: Test/dev hook: pause this long between writing a version's data and its manifest, so a
#: test can kill the operator mid-ingest. Capped so it cannot wedge a Dataset for long.
INGEST_DELAY_ANNOTATION: Final = "edgeops.dev/ingest-delay-seconds"
MAX_INGEST_DELAY: Final = 300.0
#: A collection that lost a race with its sources (an object deleted or changed while it
#: was read) is tried again this soon, whatever the schedule.
RACE_RETRY_SECONDS: Final = 10.0
COLLECTION_FAILED: Final = Reason.COLLECTION_FAILED
#: Steps a failed collection Job's backoff starts further on: 4 s, 8 s ... (not 1 s, 2 s).
JOB_BACKOFF_SHIFT: Final = 2
#: When this process last garbage-collected the bucket. Blobs are shared by every Dataset,
#: run and model, so one bucket-wide pass an hour serves them all.
_gc_lock = threading.Lock()
_last_gc: datetime | None = None
CONDITION_TYPES: Final = (
    ConditionType.READY,
    ConditionType.VALIDATED,
    ConditionType.STORAGE_AVAILABLE,
)


@dataclass(frozen=True)
class Observed:
    """What a Dataset's reconcile reads from the watch indexes: the dataset versions that
    the namespace's EdgeModels and unfinished TrainingRuns still need, and the Dataset's
    collection Jobs and their pods."""

    protected: frozenset[str]
    jobs: tuple[dict[str, Any], ...] = ()
    pods: tuple[dict[str, Any], ...] = ()


def _gather(namespace: str, name: str, **indexes: Any) -> Observed:
    return Observed(
        frozenset(dataset_version_uses(namespace, indexes)),
        tuple(items(indexes["collection_jobs"], (namespace, name))),
        tuple(items(indexes["collection_pods"], (namespace, name))),
    )


@reconciler.controller(DATASETS, DATASET, gather=_gather)
def collect_dataset(
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    patch: kopf.Patch,
    memo: kopf.Memo,
    observed: Observed | None = None,
    **_: Any,
) -> float | None:
    """Collects when due, enforces retention hourly, writes status into ``patch``.
    Returns the seconds until it next has something to do (None: only on a change)."""
    if namespace is None:  # Datasets are namespaced; guards the type only
        return None
    now = datetime.now(UTC)
    generation = meta.get("generation")
    conditions: list[dict[str, Any]] = list(status.get("conditions") or [])
    try:
        parsed = DatasetSpec.model_validate(dict(spec))
        unrunnable = admission.schedule_errors("datasets", dict(spec))
        if unrunnable:
            events.warning(body, reason=Reason.INVALID_SPEC, message="; ".join(unrunnable))
    except ValidationError as error:
        # E.g. a spec too big for Kopf's annotation (stored while the webhook was down).
        unrunnable = [describe_validation_error(error)]
        events.warning(body, reason=Reason.INVALID_SPEC, message=unrunnable[0])
    if unrunnable:
        message = "; ".join(unrunnable)
        _write(
            patch,
            status,
            generation,
            now,
            conditions,
            {ConditionType.READY: ("False", Reason.INVALID_SPEC, message)},
        )
        return None  # until the spec changes
    jobs = list(observed.jobs) if observed is not None else []
    in_flight = dataset_collection.current(jobs, str(meta.get("uid")))
    recorded = dict(status.get("collection") or {})
    if in_flight is not None and not _recorded(in_flight, recorded):
        pods = list(observed.pods) if observed is not None else []
        if not _follow(body, patch, status, parsed, in_flight, pods, now, conditions, memo):
            # One collection at a time: none is due while this one runs (also after a
            # restart, which adopts the Job instead of starting another).
            memo.setdefault("last_attempt", now)
    elif meta.get("deletionTimestamp"):
        pass  # being deleted: its deletion handler owns the data now; no new collection
    elif collection.collection_due(parsed, status, generation, _clock(memo, now)):
        memo["last_attempt"] = now
        memo.pop("retry_at", None)
        number = max(
            int(recorded.get("number") or 0),
            collection_job.number_of(in_flight) if in_flight is not None else 0,
        )
        _collect_and_report(
            body,
            patch,
            status,
            meta,
            parsed,
            dict(spec),
            generation,
            now,
            conditions,
            namespace,
            name,
            memo,
            number + 1,
        )
    # On its own hourly clock: neither a quiet schedule nor failing collections stop it.
    # Without retentionDays it still removes what crashed collections left behind.
    deleted = _retention(body, parsed, namespace, name, memo, now, observed)
    if deleted:
        # The status history must not list versions that are gone from S3.
        listed = patch.status.get("versions") or status.get("versions") or []
        patch.status["versions"] = [v for v in listed if v.get("id") not in deleted]
    return collection.seconds_until_next_pass(
        parsed, patch.status or status, _clock(memo, now), settings().source_poll_interval_seconds
    )


def _clock(memo: kopf.Memo, now: datetime) -> collection.Clock:
    return collection.Clock(
        now=now,
        last_attempt=memo.get("last_attempt"),
        retry_at=memo.get("retry_at"),
        last_retention=memo.get("last_retention"),
    )


def _recorded(job: dict[str, Any], recorded: dict[str, Any]) -> bool:
    """Whether status already holds the outcome of this collection Job: an older one than
    status names (a failed Job kept for its logs while a later one succeeded and was
    deleted), or the one it names, finished."""
    number, done = collection_job.number_of(job), int(recorded.get("number") or 0)
    if number != done:
        return number < done
    return recorded.get("job") == job["metadata"]["name"] and recorded.get("phase") in (
        "Succeeded",
        "Failed",
    )


def _collect_and_report(
    body: kopf.Body,
    patch: kopf.Patch,
    status: kopf.Status,
    meta: kopf.Meta,
    spec: DatasetSpec,
    raw_spec: dict[str, Any],
    generation: Any,
    now: datetime,
    conditions: list[dict[str, Any]],
    namespace: str,
    name: str,
    memo: kopf.Memo,
    number: int,
) -> None:
    """Answers "nothing new" from a listing when it can, else starts the ``number``-th
    collection Job; reports what stops either in status."""
    try:
        store = artifact_store()
        repeated = unchanged(store, namespace, name, spec)
        if repeated is not None:
            memo.pop("collection_failures", None)
            _report(body, patch, status, spec, generation, now, conditions, repeated)
            return
        job = dataset_collection.start(
            dict(body),
            spec,
            raw_spec,
            namespace,
            number,
            format_time(now),
            store,
            _ingest_delay(meta),
        )
    except (StorageMisconfiguredError, StorageRejectedError) as error:
        reason, detail = describe_store_error(error)
        _retry_later(memo, now)
        _storage_down(body, patch, status, generation, now, conditions, detail, reason)
        return
    except StoreError as error:  # StorageUnavailableError: S3 (or its STS) is down
        _retry_later(memo, now)
        _storage_down(body, patch, status, generation, now, conditions, str(error))
        return
    except SourceUnavailableError as error:  # SourceRefused and SourceLimitExceeded too
        _retry_later(memo, now)
        _source_down(body, patch, status, generation, now, conditions, str(error), error.reason)
        return
    except (custom.NameTakenError, custom.StaleOwnerError) as error:
        wait = _retry_later(memo, now, at_least=RACE_RETRY_SECONDS)
        detail = f"cannot start the collection Job: {error}; retrying in {wait:.0f}s"
        _source_down(body, patch, status, generation, now, conditions, detail, COLLECTION_FAILED)
        return
    except ValueError as error:
        # Not an outage: the sources cannot be collected as specified.
        detail = f"collection failed: {error}"
        _source_down(body, patch, status, generation, now, conditions, detail, COLLECTION_FAILED)
        return
    job_name = job["metadata"]["name"]
    message = (
        f"collection Job {job_name} created: reads {len(spec.sources)} source(s) with "
        f"activeDeadlineSeconds={collection_job.settings_of(spec).active_deadline_seconds}, "
        f"backoffLimit={collection_job.settings_of(spec).backoff_limit}"
    )
    patch.status["collection"] = {
        "job": job_name,
        "number": number,
        "phase": "Pending",
        "reason": Reason.JOB_CREATED,
        "message": message,
        "startTime": format_time(now),
    }
    events.normal(body, reason=Reason.COLLECTION_STARTED, message=message)


def _follow(
    body: kopf.Body,
    patch: kopf.Patch,
    status: kopf.Status,
    spec: DatasetSpec,
    job: dict[str, Any],
    pods: list[dict[str, Any]],
    now: datetime,
    conditions: list[dict[str, Any]],
    memo: kopf.Memo,
) -> bool:
    """Follows the collection Job in flight; once it finished, writes what it reported
    into status. Returns whether it finished."""
    state = collection_job.state(job, dataset_collection.pods_of(job, pods))
    meta = job["metadata"]
    record: dict[str, Any] = {
        "job": meta["name"],
        "number": collection_job.number_of(job) or 1,
        "phase": state.phase,
        "reason": state.reason,
        "message": state.message[:2048],
        "startTime": meta.get("creationTimestamp") or format_time(now),
    }
    if not state.finished:
        if dict(status.get("collection") or {}) != record:
            patch.status["collection"] = record
        return False
    record["completionTime"] = (job.get("status") or {}).get("completionTime") or format_time(now)
    # The generation the Job collected for: a spec changed meanwhile collects again.
    generation = collection_job.generation_of(job) or (body.get("metadata") or {}).get("generation")
    found = dataset_collection.report(job, pods) or {}
    if isinstance(found.get("result"), dict):
        memo.pop("collection_failures", None)
        result = result_from_document(found["result"])
        record["message"] = f"{state.message}: {_counts(result)}"
        _report(body, patch, status, spec, generation, now, conditions, result)
        if state.phase == "Succeeded" and (job.get("metadata") or {}).get("uid"):
            dataset_collection.remove(job)  # status holds its outcome now
    elif isinstance(found.get("error"), dict):
        error = found["error"]
        kind, reason, detail = (
            error.get("kind"),
            str(error.get("reason")),
            str(error.get("message")),
        )
        # The collector's message is redacted already (URLs go through redact_url).
        log.warning(
            "dataset %s: collection Job %s failed (%s): %s",
            body.get("metadata", {}).get("name"),
            meta["name"],
            reason,
            detail,
        )
        record.update(phase="Failed", reason=reason, message=detail[:2048])
        if kind == "storage":
            reason, detail = describe_store_error(store_error(error))
            record.update(reason=reason, message=detail[:2048])
            # S3 trouble: the operator's own probe (the listing before any Job) sees it
            # too, so the usual backoff applies, not the one sized for pod starts.
            _retry_later(memo, now)
            _storage_down(body, patch, status, generation, now, conditions, detail, reason)
        elif kind == "race":
            # Not an outage: a source object vanished or changed while it was read (e.g.
            # an inbox upload deleted between listing and reading). Collect again soon.
            wait = _retry_later(memo, now, at_least=RACE_RETRY_SECONDS, job=True)
            detail = (
                f"collection failed: {detail} (a source object was removed or changed while "
                f"it was read); retrying in {wait:.0f}s"
            )
            _source_down(body, patch, status, generation, now, conditions, detail, reason)
        elif kind == "source":
            _retry_later(memo, now, job=True)
            _source_down(body, patch, status, generation, now, conditions, detail, reason)
        else:  # invalid: the data cannot be collected as specified; on the next change
            _source_down(body, patch, status, generation, now, conditions, detail, reason)
    else:
        # Crashed, killed or over its deadline, with no report: nothing was published
        # (the manifest is written last). A new Job is tried with backoff.
        wait = _retry_later(memo, now, job=True)
        detail = f"{state.message}; a new collection Job in {wait:.0f}s"
        log.warning("collection Job %s: %s", meta["name"], detail)
        record.update(phase="Failed", message=detail[:2048])
        _source_down(body, patch, status, generation, now, conditions, detail, state.reason)
    patch.status["collection"] = record
    return True


def _retry_later(
    memo: kopf.Memo, now: datetime, at_least: float = 0.0, *, job: bool = False
) -> float:
    """A failed collection: the next is tried after the reconciler's backoff for this
    Dataset's consecutive failed collections (1 s doubling to 5 min; from 4 s when a
    collection Job failed, ``job``; reset by a collection
    that succeeds; at least ``at_least`` seconds), and not earlier, whatever the schedule,
    onNewObjects or a storage outage say. Returns the seconds."""
    # The Dataset's own count: passes in between that collect nothing (a poll, retention)
    # must not reset it, only a collection that succeeds.
    failures = int(memo.get("collection_failures") or 0) + 1
    memo["collection_failures"] = failures
    reconciler.retry_later(memo)  # counted as a failed pass (outcome "requeued")
    # A failed collection Job cost a pod start (seconds): its retries start at 4 s, so the
    # gaps still double with that cost in them (1 s, 2 s would be lost in it).
    wait = max(backoff(failures + (JOB_BACKOFF_SHIFT if job else 0)), at_least)
    memo["retry_at"] = now + timedelta(seconds=wait)
    return wait


def _ingest_delay(meta: kopf.Meta) -> float:
    raw = (meta.get("annotations") or {}).get(INGEST_DELAY_ANNOTATION)
    try:
        return min(max(float(raw), 0.0), MAX_INGEST_DELAY) if raw else 0.0
    except ValueError:
        return 0.0


def _report(
    body: kopf.Body,
    patch: kopf.Patch,
    status: kopf.Status,
    spec: DatasetSpec,
    generation: Any,
    now: datetime,
    conditions: list[dict[str, Any]],
    result: CollectionResult,
) -> None:
    latest = result.latest
    counts = _counts(result)
    short = latest["id"][:12] if latest else None
    updates = collection.report_verdicts(
        too_many_rejected=result.outcome == Outcome.TOO_MANY_REJECTED,
        new_data=result.outcome != Outcome.NO_NEW_DATA,
        latest=short,
        accepted=result.accepted,
        rejected=result.rejected,
        limit=spec.validation.max_rejected_fraction,
        counts=counts,
        uncounted=sum(1 for u in result.unread if u.get("rows") is None),
    )
    validated = updates[ConditionType.VALIDATED]
    _storage_recovered(body, status)
    _write(patch, status, generation, now, conditions, updates)
    patch.status["latestVersion"] = latest["id"] if latest else None
    patch.status["versions"] = [_status_version(v) for v in result.history[-spec.history_limit :]]
    rejected: dict[str, Any] = {"total": result.rejected, "byReason": result.by_reason}
    if result.unread:
        # An unknown row count is left out (null is not an integer to the API server).
        rejected["unread"] = [
            {k: v for k, v in u.items() if v is not None} for u in result.unread[:32]
        ]
    patch.status["rejected"] = rejected
    if result.repeated:
        return  # the last collection's result again: its time and Events stand
    patch.status["lastCollectionTime"] = format_time(now)
    if result.new_version and latest is not None:
        events.normal(body, reason=Reason.VERSION_PUBLISHED, message=f"version {short}: {counts}")
    if result.outcome == Outcome.TOO_MANY_REJECTED:
        events.warning(body, reason=Reason.TOO_MANY_REJECTED, message=validated.message)
    elif result.rejected:
        events.warning(body, reason=Reason.ROWS_REJECTED, message=counts)


def _counts(result: CollectionResult) -> str:
    """Counts only: reasons name columns, never values, so this is safe for personal data."""
    reasons = ", ".join(f"{k}: {v}" for k, v in result.by_reason.items() if k != "Duplicate")
    text = f"{result.accepted} rows accepted, {result.rejected} rejected"
    if reasons:
        text += f" ({reasons})"
    if result.duplicates:
        text += f", {result.duplicates} duplicates dropped"
    text += f", from {result.sources} source objects"
    if result.unread:
        # Object names and counts only (details are in status.rejected.unread).
        parts = [
            f"{u['source']}: {'unknown' if u['rows'] is None else u['rows']} rows"
            for u in result.unread[:5]
        ]
        more = len(result.unread) - len(parts)
        text += "; not read: " + ", ".join(parts) + (f" and {more} more" if more > 0 else "")
    return text


def _status_version(record: dict[str, Any]) -> dict[str, Any]:
    balance = dict(list((record.get("classBalance") or {}).items())[:256])
    version = DatasetVersion(
        id=record["id"],
        created=record["created"],
        sample_count=record["sampleCount"],
        rejected_count=record.get("rejectedCount", 0),
        class_balance=balance,
        manifest_uri=record["manifestUri"],
        profile_uri=record.get("profileUri"),
    )
    return version.model_dump(mode="json", by_alias=True, exclude_none=True)


def _storage_down(
    body: kopf.Body,
    patch: kopf.Patch,
    status: kopf.Status,
    generation: Any,
    now: datetime,
    conditions: list[dict[str, Any]],
    detail: str,
    reason: str = Reason.STORAGE_UNAVAILABLE,
) -> None:
    was = get_condition(conditions, ConditionType.STORAGE_AVAILABLE)
    if was is None or was.get("status") != "False" or was.get("reason") != reason:
        events.warning(body, reason=reason, message=detail)
    updates = {ConditionType.STORAGE_AVAILABLE: ("False", reason, detail)}
    if not status.get("latestVersion"):
        updates[ConditionType.READY] = ("False", reason, detail)
    _write(patch, status, generation, now, conditions, updates, observe=False)


def _storage_recovered(body: kopf.Body, status: kopf.Status) -> None:
    was = get_condition(status.get("conditions"), ConditionType.STORAGE_AVAILABLE)
    if was is not None and was.get("status") == "False":
        events.normal(body, reason=Reason.STORAGE_REACHABLE, message="S3 is reachable again")


def _source_down(
    body: kopf.Body,
    patch: kopf.Patch,
    status: kopf.Status,
    generation: Any,
    now: datetime,
    conditions: list[dict[str, Any]],
    detail: str,
    reason: str = Reason.SOURCE_UNAVAILABLE,
) -> None:
    events.warning(body, reason=reason, message=detail)
    latest = status.get("latestVersion")
    ready = (
        ("True", reason, f"serving version {latest[:12]}; {detail}")
        if latest
        else ("False", reason, detail)
    )
    _write(patch, status, generation, now, conditions, {ConditionType.READY: ready})


def _write(
    patch: kopf.Patch,
    status: kopf.Status,
    generation: Any,
    now: datetime,
    conditions: list[dict[str, Any]],
    updates: Verdicts,
    observe: bool = True,
) -> None:
    """Sets conditions (every type present from the first write on) and, unless the
    attempt failed for a transient reason, observedGeneration."""
    gen = int(generation) if generation is not None else None
    verdicts = {t: v for t, v in updates.items() if t in CONDITION_TYPES}
    patch.status["conditions"] = update_conditions(
        conditions, verdicts, gen, now, ensure=CONDITION_TYPES
    )
    if observe:
        patch.status["observedGeneration"] = gen


def collect_garbage_hourly(store: ArtifactStore, now: datetime) -> int:
    """Garbage-collects the bucket's blobs at most hourly per process; called by every
    Dataset's retention and by the pass over deleted Datasets' records (which must collect
    the content of deleted versions even when no Dataset is left)."""
    global _last_gc
    with _gc_lock:
        if _last_gc is not None and (now - _last_gc).total_seconds() < RETENTION_EVERY_SECONDS:
            return 0
        _last_gc = now
    return collect_garbage(store, now)


def _retention(
    body: kopf.Body,
    spec: DatasetSpec,
    namespace: str,
    name: str,
    memo: kopf.Memo,
    now: datetime,
    observed: Observed | None,
) -> set[str]:
    """Runs retention at most hourly; returns the ids of the versions it deleted. Without
    the watch cache's view of what models and runs use, nothing is deleted."""
    last: datetime | None = memo.get("last_retention")
    if last is not None and (now - last).total_seconds() < RETENTION_EVERY_SECONDS:
        return set()
    memo["last_retention"] = now
    if observed is None:
        log.warning("dataset %s/%s: retention skipped, no view of models and runs", namespace, name)
        return set()
    protected = set(observed.protected)
    inbox: str | None = None
    for source in spec.sources:
        if source.inbox is not None:
            try:
                inbox = layout.source_inbox_prefix(namespace, name, source.inbox.prefix)
            except ValueError as error:  # another namespace's inbox: never delete there
                log.warning("dataset %s/%s: inbox retention skipped: %s", namespace, name, error)
            break
    try:
        store = artifact_store()
        report = enforce_retention(store, namespace, name, spec.governance, now, protected, inbox)
        report.deleted_blobs = collect_garbage_hourly(store, now)
    except StoreError as error:
        log.warning("dataset %s/%s: retention failed: %s", namespace, name, error)
        return set()
    if (
        report.deleted_versions
        or report.deleted_raw
        or report.deleted_rejects
        or report.kept_for_models
        or report.deleted_leftovers
    ):
        events.normal(
            body,
            reason=Reason.RETENTION_ENFORCED,
            message=f"{len(report.deleted_versions)} expired versions, {report.deleted_raw} raw "
            f"samples and {report.deleted_rejects} files of rejected rows deleted, "
            f"{report.deleted_blobs} unreferenced blobs and "
            f"{report.deleted_leftovers} leftovers of interrupted collections removed; "
            f"{len(report.kept_for_models)} expired versions kept because deployed models use "
            f"them ({', '.join(v[:12] for v in report.kept_for_models) or 'none'})",
        )
    return set(report.deleted_versions)
