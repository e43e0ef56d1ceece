"""`python -m edgeops.datasets --config-json JSON`: one collection, inside a Dataset's Job.

The operator decides when to collect and creates the Job (`edgeops.policy.collection_job`);
this process does the collection (:func:`edgeops.datasets.ingest.collect`: list, read,
clean, write shards, profile, version info, then the manifest, then the index) with the
Dataset's scoped S3 credentials (``EDGEOPS_S3_*`` plus ``EDGEOPS_S3_SESSION_TOKEN``).

It reports on its last log line, :data:`MARKER` + JSON:

- ``{"result": {...}}``: the collection's summary (``CollectionResult.summary``), its
  ``repeated`` flag and the version history (newest ``spec.historyLimit`` records); exit 0.
- ``{"error": {"kind", "reason", "message"}}``: a failure it understood (``kind`` is
  ``storage``, ``race``, ``source`` or ``invalid``; ``reason`` the Dataset condition
  reason); exit :data:`EXIT_REPORTED`, which fails the Job at once.

Anything else (a crash, a kill) exits otherwise and the Job retries its pod; nothing half
done is visible, since a version exists only once its manifest is written, last.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import datetime
from typing import Any, Final

from edgeops.api import DatasetSpec, Reason
from edgeops.policy.collection_job import EXIT_REPORTED, MARKER
from edgeops.redaction import install_log_redaction
from edgeops.settings import settings, trainer_settings
from edgeops.store import (
    ArtifactStore,
    IntegrityError,
    ObjectMissingError,
    StorageMisconfiguredError,
    StorageRejectedError,
    StorageUnavailableError,
    StoreConfig,
    StoreError,
)

from .ingest import CollectionResult, collect
from .protocol import Store
from .sources import SourceUnavailableError

log = logging.getLogger("edgeops.datasets.job")

#: Longest pause of the test hook (``edgeops.dev/ingest-delay-seconds``).
MAX_INGEST_DELAY: Final = 300.0


def classify(error: Exception) -> dict[str, str] | None:
    """The report of a failure the collector understands, or None (a bug or a crash: the
        Job retries its pod). ``kind`` tells the operator how to go on: ``storage`` (S3 down,
        refusing or misconfigured: StorageAvailable=False), ``race`` (a source object vanished
        or changed while read: retried soon), ``source`` (a source unreachable, refused or over
        a limit) and ``invalid`` (the data cannot be collected as specified). A storage report
    carries the S3 error code (``code``) of a refusal; see :func:`store_error`."""
    if isinstance(error, StorageMisconfiguredError):
        return _report("storage", Reason.STORAGE_MISCONFIGURED, str(error))
    if isinstance(error, StorageRejectedError):
        # The operator adds what to fix: the Job's credentials are issued from its own.
        return {**_report("storage", Reason.STORAGE_REJECTED, str(error)), "code": error.code}
    if isinstance(error, ObjectMissingError | IntegrityError):
        return _report("race", Reason.COLLECTION_FAILED, str(error))
    if isinstance(error, StoreError):
        return _report("storage", Reason.STORAGE_UNAVAILABLE, str(error))
    if isinstance(error, SourceUnavailableError):
        return _report("source", error.reason, str(error))
    if isinstance(error, ValueError):
        return _report("invalid", Reason.COLLECTION_FAILED, f"collection failed: {error}")
    return None


def store_error(report: dict[str, Any]) -> StoreError:
    """The store error a ``storage`` report stands for, so the operator describes it the
    way it describes its own (what to fix, where the credentials come from)."""
    message = str(report.get("message") or "")
    if report.get("reason") == Reason.STORAGE_MISCONFIGURED:
        return StorageMisconfiguredError(message)
    if report.get("reason") == Reason.STORAGE_REJECTED:
        return StorageRejectedError(str(report.get("code") or ""), message)
    return StorageUnavailableError(message)


def _report(kind: str, reason: str, message: str) -> dict[str, str]:
    return {"kind": kind, "reason": reason, "message": message}


def result_document(result: CollectionResult, history_limit: int) -> dict[str, Any]:
    """What the operator needs of a finished collection to write the Dataset's status."""
    return {
        **result.summary(),
        "repeated": result.repeated,
        "latest": result.latest,
        "history": result.history[-history_limit:],
    }


def result_from_document(document: dict[str, Any]) -> CollectionResult:
    """The :class:`CollectionResult` a collector reported (:func:`result_document`)."""
    return CollectionResult(
        outcome=str(document["outcome"]),
        fingerprint=str(document.get("fingerprint") or ""),
        latest=document.get("latest"),
        history=list(document.get("history") or []),
        accepted=int(document.get("accepted") or 0),
        rejected=int(document.get("rejected") or 0),
        duplicates=int(document.get("duplicates") or 0),
        by_reason=dict(document.get("byReason") or {}),
        coercions=dict(document.get("coercions") or {}),
        rejected_uri=document.get("rejectedUri"),
        sources=int(document.get("sources") or 0),
        unread=[dict(u) for u in document.get("unread") or [] if isinstance(u, dict)],
        repeated=bool(document.get("repeated")),
    )


def _pause(delay: float, name: str) -> Any:
    def pause(version: str) -> None:
        if delay > 0:
            print(
                f"dataset {name}: version {version[:12]} data written; manifest in {delay:.0f}s",
                flush=True,
            )
            time.sleep(delay)

    return pause


def _emit(document: dict[str, Any]) -> None:
    print(MARKER + json.dumps(document, sort_keys=True, separators=(",", ":")), flush=True)


def run(store: Store | None, config: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """One collection as ``config`` says (`edgeops.policy.collection_job.collection_config`)
    into ``store`` (None: built from the ``EDGEOPS_S3_*`` environment). Returns the report
    (``{"result": ...}`` or ``{"error": ...}``) and the exit code. Raises what it does not
    understand (:func:`classify`): the process crashes and the Job retries its pod."""
    namespace = str(config["dataset"]["namespace"])
    name = str(config["dataset"]["name"])
    spec = DatasetSpec.model_validate(config["spec"])
    now = datetime.fromisoformat(str(config["now"]).replace("Z", "+00:00"))
    delay = min(max(float(config.get("ingestDelaySeconds") or 0.0), 0.0), MAX_INGEST_DELAY)
    try:
        if store is None:
            try:
                token = trainer_settings().s3_session_token
                store = ArtifactStore(StoreConfig.from_settings(settings(), session_token=token))
            except ValueError as error:  # SettingsError included
                raise StorageMisconfiguredError(str(error)) from None
        result = collect(store, namespace, name, spec, now, before_manifest=_pause(delay, name))
    except Exception as error:
        report = classify(error)
        if report is None:
            raise
        return {"error": report}, EXIT_REPORTED
    return {"result": result_document(result, spec.history_limit)}, 0


def main(argv: list[str] | None = None) -> int:
    """The Job's entrypoint: runs one collection, prints the report last; the exit code."""
    parser = argparse.ArgumentParser(description="EdgeOps dataset collector")
    parser.add_argument("--config-json", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Source URLs may carry credentials: every record is redacted, as in the operator.
    install_log_redaction()
    config = json.loads(args.config_json)
    dataset = config["dataset"]
    print(f"collecting dataset {dataset['namespace']}/{dataset['name']}", flush=True)
    report, code = run(None, config)
    _emit(report)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
