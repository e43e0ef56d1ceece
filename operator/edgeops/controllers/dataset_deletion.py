"""Deleting a Dataset: apply ``spec.governance.deletionPolicy``, then keep retention running.

The Kopf delete handler runs while the Dataset is Terminating and holds it there through
Kopf's finalizer, the one every Dataset already carries for its reconcile daemon
(``kopf.zalando.org/KopfFinalizerMarker``; it is not renamed to an ``edgeops.dev`` one,
since Kopf would then never remove the old marker from existing objects and they would
stay Terminating). The handler deletes or keeps the data (:mod:`edgeops.datasets.deletion`),
posts an Event saying what went and what stayed and why, and only then lets Kopf remove
the finalizer. If S3 fails it posts a Warning Event and raises ``kopf.TemporaryError``, so
Kopf retries with backoff (1 s doubling to 5 min) while the Dataset stays Terminating; the
finalizer can still be removed by hand (README).

Retention of what a deleted Dataset left cannot run from that Dataset's reconcile loop:
the object is gone. So an operator-wide background task started at start-up
(:func:`start_retained_retention`) applies retention to the retention records in S3
hourly, with the namespaces' EdgeModels and TrainingRuns from the watch indexes (read in
the event loop) to know which versions are still in use. Its first pass comes
:data:`FIRST_PASS_DELAY` after start-up, when Kopf has long filled its indexes: a pass on
empty indexes would take every version for unused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import kopf
from pydantic import ValidationError

from edgeops.api import Governance
from edgeops.api.constants import DATASETS, GROUP, VERSION, Reason
from edgeops.controllers import events
from edgeops.controllers.dataset import collect_garbage_hourly
from edgeops.controllers.watches import dataset_version_uses, first
from edgeops.datasets import layout
from edgeops.datasets.deletion import (
    DeletionReport,
    RetainedReport,
    apply_retained,
    delete_dataset_data,
    list_records,
)
from edgeops.policy.collection import RETENTION_EVERY_SECONDS
from edgeops.policy.deletion import describe_kept
from edgeops.policy.retry import backoff
from edgeops.store import StoreError

from .storage import artifact_store

log = logging.getLogger(__name__)

#: Seconds from start-up to the first pass over retention records (see the module doc).
FIRST_PASS_DELAY: Final = 300.0
FORCE_REMOVE_HINT: Final = (
    "to let it go without cleaning up: kubectl patch dataset {name} -n {namespace} "
    '--type=merge -p \'{{"metadata":{{"finalizers":null}}}}\''
)

_task: asyncio.Task[None] | None = None


def _inbox_prefixes(namespace: str, name: str, spec: Mapping[str, Any]) -> list[str]:
    """The inbox prefixes a Dataset's inbox sources read. Prefixes outside the namespace's
    inbox are dropped: nothing is ever deleted in another namespace's inbox."""
    prefixes: list[str] = []
    for source in spec.get("sources") or []:
        inbox = source.get("inbox")
        if inbox is None:
            continue
        try:
            prefixes.append(layout.source_inbox_prefix(namespace, name, inbox.get("prefix")))
        except ValueError as error:
            log.warning("dataset %s/%s: inbox prefix ignored: %s", namespace, name, error)
    return prefixes


def _others_inboxes(namespace: str, name: str, datasets: kopf.Index[Any, Any]) -> list[str]:
    """Inbox prefixes the namespace's other Datasets read (from the watch index)."""
    prefixes: list[str] = []
    for key in list(datasets):
        if key[0] != namespace or key[1] == name:
            continue
        other = first(datasets, key)
        if other is not None:
            prefixes.extend(_inbox_prefixes(namespace, key[1], other.get("spec") or {}))
    return prefixes


def _governance(raw: Mapping[str, Any]) -> tuple[Governance, str]:
    """The Dataset's governance, or, for one the models refuse (the API server admitted
    it, so only an older CRD could), Retain with its retentionDays if readable: never
    delete on a guess. Returns (governance, note for the Event)."""
    try:
        return Governance.model_validate(dict(raw)), ""
    except ValidationError:
        days = raw.get("retentionDays")
        fallback = Governance.model_construct(
            classification=raw.get("classification") or "personal",
            legal_basis=None,
            retention_days=days if isinstance(days, int) and days > 0 else None,
            region=None,
            deletion_policy="Retain",
        )
        return fallback, " (spec.governance invalid: applied Retain)"


def describe(report: DeletionReport, note: str = "") -> str:
    """The Event message for a deletion: counts, kept versions and who uses them."""
    kept = describe_kept(report.kept)
    if report.policy == "Delete":
        text = (
            f"deletionPolicy Delete{note}: {report.deleted} objects deleted "
            f"({len(report.deleted_versions)} versions, {report.deleted_raw} inbox objects, "
            "index, rejected rows and staging files)"
        )
        text += f"; {kept}" if kept else "; no version kept"
    else:
        text = (
            f"deletionPolicy Retain{note}: {len(report.retained)} versions and "
            f"{report.retained_raw} inbox objects kept"
        )
        if kept:
            text += f"; {kept}"
    if report.shared_inboxes:
        text += f"; inbox {', '.join(report.shared_inboxes)} left: another Dataset reads it"
    if report.record:
        text += f"; retention continues from {report.record}"
        if report.policy == "Delete":
            text += " (kept versions go once nothing uses them)"
        elif report.retention_days is not None:
            text += f" (what is older than retentionDays {report.retention_days} and unused goes)"
        else:
            text += " (no retentionDays: kept until deleted by hand)"
    if report.policy == "Delete":
        text += "; content blobs go with the next garbage collection once unreferenced"
    return text


@kopf.on.delete(GROUP, VERSION, DATASETS, id="dataset-data")
async def dataset_deleted(
    body: kopf.Body,
    spec: kopf.Spec,
    name: str,
    namespace: str | None,
    uid: str | None,
    retry: int,
    **indexes: Any,
) -> None:
    """Applies the deletionPolicy before Kopf removes the Dataset's finalizer."""
    if namespace is None or uid is None:
        return  # Datasets are namespaced and have a uid; guards the types only
    governance, note = _governance(spec.get("governance") or {})
    # Indexes are read here, in the event loop; the S3 work runs in a thread.
    uses = dataset_version_uses(namespace, indexes)
    inboxes = [layout.inbox_prefix(namespace, name), *_inbox_prefixes(namespace, name, spec)]
    others = _others_inboxes(namespace, name, indexes["datasets"])
    try:
        report = await asyncio.to_thread(
            lambda: delete_dataset_data(
                artifact_store(),
                namespace,
                name,
                uid,
                governance,
                inboxes,
                others,
                uses,
                datetime.now(UTC),
            )
        )
    except StoreError as error:
        wait = backoff(retry + 1)
        # The Event's text does not change between attempts, so repeats are counted on one
        # Event (controllers.events); the attempt and the wait go to the log.
        message = (
            f"deletionPolicy {governance.deletion_policy}: S3 failed ({error}); the Dataset "
            "stays Terminating and the deletion is retried with backoff (1 s doubling to "
            "5 min); " + FORCE_REMOVE_HINT.format(name=name, namespace=namespace)
        )
        events.warning(body, Reason.DELETION_RETRYING, message)
        message += f" (attempt {retry + 1}, next in {wait:.0f}s)"
        raise kopf.TemporaryError(message, delay=wait) from error
    reason = Reason.DATA_DELETED if report.policy == "Delete" else Reason.DATA_RETAINED
    events.normal(body, reason, describe(report, note))


async def retained_pass(indexes: Mapping[str, Any], now: datetime) -> list[RetainedReport]:
    """One retention pass over every deleted Dataset's record. Returns what each did."""
    store = await asyncio.to_thread(artifact_store)
    keys = await asyncio.to_thread(list_records, store)
    work: list[tuple[str, Any, str | None, bool]] = []
    for key in keys:
        # datasets/_retained/<ns>/<name>/<uid>.json
        parts = key.removeprefix(layout.RETAINED_ROOT).split("/")
        if len(parts) != 3:
            continue
        namespace, name, uid = parts[0], parts[1], parts[2].removesuffix(".json")
        live = first(indexes["datasets"], (namespace, name))
        live_uid = ((live or {}).get("metadata") or {}).get("uid")
        recreated = live is not None and live_uid != uid
        serving = ((live or {}).get("status") or {}).get("latestVersion") if recreated else None
        work.append((key, dataset_version_uses(namespace, indexes), serving, recreated))

    def apply_all() -> list[RetainedReport]:
        reports = []
        for key, uses, serving, recreated in work:
            try:
                reports.append(apply_retained(store, key, now, uses, serving, recreated))
            except (StoreError, KeyError, ValueError) as error:
                log.warning("retention of %s failed: %s", key, error)
        return reports

    reports = await asyncio.to_thread(apply_all)
    try:
        blobs = await asyncio.to_thread(collect_garbage_hourly, store, now)
    except StoreError as error:
        log.warning("garbage collection after the retained-data pass failed: %s", error)
    else:
        if blobs:
            log.info("garbage-collected %d unreferenced blobs", blobs)
    for r in reports:
        if r.deleted_versions or r.deleted_raw or r.removed_record:
            log.info(
                "retention of deleted dataset data %s: %d versions and %d raw samples "
                "deleted%s; %s",
                r.record,
                len(r.deleted_versions),
                r.deleted_raw,
                ", record removed (nothing left)" if r.removed_record else "",
                describe_kept(r.kept_for_users) or "no version kept for users",
            )
    return reports


async def _retained_loop(indexes: Mapping[str, Any]) -> None:
    await asyncio.sleep(FIRST_PASS_DELAY)
    while True:
        try:
            await retained_pass(indexes, datetime.now(UTC))
        except Exception:  # a pass must never end the loop; the next one tries again
            log.exception("retention pass over deleted datasets' data failed")
        await asyncio.sleep(RETENTION_EVERY_SECONDS)


@kopf.on.startup(id="retained-data-retention")
async def start_retained_retention(**indexes: Any) -> None:
    """Starts the hourly retention pass over deleted Datasets' records. Kopf passes the
    live indexes to start-up handlers; they fill once the watches start."""
    global _task
    _task = asyncio.create_task(_retained_loop(indexes))


@kopf.on.cleanup(id="retained-data-retention-stop")
async def stop_retained_retention(**_: Any) -> None:
    global _task
    if _task is not None:
        _task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await _task
        _task = None
