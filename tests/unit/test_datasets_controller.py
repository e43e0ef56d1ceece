"""The Dataset timer: what it reports on repeated ticks and when it enforces retention.

Collections run in Jobs; here the collector runs in-process on the in-memory store
(:func:`edgeops.datasets.job.run`, what the Job's pod runs) and its "Job" completes at
once, so a tick is the pass that starts the Job plus the pass its completion wakes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import kopf
import pytest

from edgeops.controllers import dataset as controller
from edgeops.datasets import job as collector
from edgeops.datasets.retention import RetentionReport
from edgeops.policy import collection_job
from tests.unit.test_datasets_ingest import HEADER, NAME, NS, ROWS, MemoryStore
from tests.unit.test_datasets_ingest import SPEC as INBOX_SPEC

SPEC: dict[str, Any] = {**INBOX_SPEC, "collection": {"schedule": "24h"}}


class Harness:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, spec: dict[str, Any]) -> None:
        self.store = MemoryStore()
        self.memo = kopf.Memo()
        self.object: dict[str, Any] = {
            "apiVersion": "edgeops.dev/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": NAME, "namespace": NS, "generation": 1, "uid": "u-1"},
            "spec": spec,
            "status": {},
        }
        self.retentions = 0
        self.events: list[tuple[str, str]] = []
        #: CollectionStarted Events (one per collection Job), apart from the others.
        self.started: list[str] = []
        self.jobs: list[dict[str, Any]] = []
        self.reports: dict[str, dict[str, Any]] = {}

        self.retention_days: list[int | None] = []

        def enforce(*args: Any) -> RetentionReport:
            self.retentions += 1
            self.retention_days.append(args[3].retention_days)
            return RetentionReport()

        monkeypatch.setattr(controller, "artifact_store", lambda: self.store)
        monkeypatch.setattr(controller, "enforce_retention", enforce)
        monkeypatch.setattr(controller, "collect_garbage", lambda *_: 0)

        def event(_body: Any, reason: str, message: str) -> None:
            if reason == "CollectionStarted":
                self.started.append(message)
            else:
                self.events.append((reason, message))

        for kind in ("normal", "warning"):
            monkeypatch.setattr(controller.events, kind, event)
        monkeypatch.setattr(controller.dataset_collection, "start", self._run_job)
        monkeypatch.setattr(
            controller.dataset_collection,
            "report",
            lambda job, _pods: self.reports.get(job["metadata"]["name"]),
        )

    def _run_job(
        self,
        body: dict[str, Any],
        spec: Any,
        raw_spec: dict[str, Any],
        namespace: str,
        number: int,
        now: str,
        store: Any,
        ingest_delay: float,
    ) -> dict[str, Any]:
        """The collection Job, run to its end at once: the collector in-process."""
        config = collection_job.collection_config(namespace, NAME, raw_spec, now)
        report, code = collector.run(self.store, config)
        name = collection_job.job_name(NAME, number)
        self.reports[name] = report
        verdict = "Complete" if code == 0 else "Failed"
        job = {
            "metadata": {
                "name": name,
                "labels": {"edgeops.dev/collection": str(number)},
                "annotations": {
                    collection_job.GENERATION_ANNOTATION: str(body["metadata"]["generation"])
                },
                "ownerReferences": [{"controller": True, "uid": body["metadata"]["uid"]}],
            },
            "status": {"conditions": [{"type": verdict, "status": "True"}]},
        }
        self.jobs.append(job)
        return job

    def drop(self, name: str, lines: list[str]) -> None:
        self.store.put_bytes(f"inbox/{NS}/{NAME}/{name}", (HEADER + "".join(lines)).encode())

    def tick(self) -> dict[str, Any]:
        jobs = len(self.jobs)
        written = self._pass()
        if len(self.jobs) > jobs:  # a collection Job ran: its completion wakes the Dataset
            written = {**written, **self._pass()}
        return written

    def _pass(self) -> dict[str, Any]:
        body = kopf.Body(self.object)
        patch = kopf.Patch()
        controller.collect_dataset(
            spec=body.spec,
            status=body.status,
            meta=body.meta,
            body=body,
            name=NAME,
            namespace=NS,
            patch=patch,
            memo=self.memo,
            observed=controller.Observed(protected=frozenset(), jobs=tuple(self.jobs)),
        )
        self.object["status"] = {**self.object["status"], **patch.get("status", {})}
        return dict(patch.get("status", {}))

    def condition(self, type_: str) -> tuple[str, str, str]:
        (found,) = [c for c in self.object["status"]["conditions"] if c["type"] == type_]
        return found["status"], found["reason"], found["message"]

    def an_hour_passes(self) -> None:
        self.memo["last_retention"] -= timedelta(hours=1, seconds=1)


def _never_collect(*_: Any, **__: Any) -> Any:
    raise AssertionError("no collection is due")


def test_retention_runs_hourly_even_when_no_collection_is_due(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    harness = Harness(monkeypatch, SPEC)
    harness.drop("a.csv", ROWS)
    harness.tick()
    assert harness.condition("Ready")[:2] == ("True", "Collected")
    assert harness.retentions == 1
    monkeypatch.setattr(collector, "collect", _never_collect)
    assert harness.tick() == {}  # nothing due: no status write at all
    assert harness.retentions == 1
    harness.an_hour_passes()
    harness.tick()
    assert harness.retentions == 2


def test_retention_runs_when_the_collection_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    harness = Harness(monkeypatch, SPEC)

    def broken(*_: Any, **__: Any) -> Any:
        raise ValueError("cannot be collected")

    monkeypatch.setattr(collector, "collect", broken)
    harness.tick()
    assert harness.condition("Ready")[:2] == ("False", "CollectionFailed")
    assert harness.retentions == 1


def test_without_a_retention_period_only_leftovers_are_cleaned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    harness = Harness(monkeypatch, {**SPEC, "governance": {"classification": "internal"}})
    harness.drop("a.csv", ROWS)
    harness.tick()
    assert harness.condition("Ready")[:2] == ("True", "Collected")
    # The pass runs (crash leftovers, garbage), but with no period no version can expire.
    assert harness.retentions == 1 and harness.retention_days == [None]


def test_too_many_rejected_is_reported_again_while_the_sources_are_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # onNewObjects: a collection is attempted on every tick.
    harness = Harness(monkeypatch, {**SPEC, "collection": {"onNewObjects": True}})
    harness.drop("a.csv", ROWS[:20])
    harness.tick()
    harness.drop("bad.csv", [f"{i},oops,walk,a\n" for i in range(100, 110)])
    first = harness.tick()
    validated, ready = harness.condition("Validated"), harness.condition("Ready")
    assert validated[:2] == ("False", "TooManyRejected")
    assert "10 of 30 rows rejected" in validated[2]
    assert ready[:2] == ("True", "TooManyRejected")
    events = len(harness.events)
    again = harness.tick()
    assert harness.condition("Validated") == validated
    assert harness.condition("Ready") == ready
    assert first["rejected"] == {"total": 10, "byReason": {"TypeMismatch": 10}}
    assert again["rejected"] == first["rejected"]
    assert again["latestVersion"] == first["latestVersion"]
    assert "lastCollectionTime" not in again  # nothing was collected
    assert len(harness.events) == events  # and nothing announced twice


def test_unchanged_good_sources_still_report_no_new_data(monkeypatch: pytest.MonkeyPatch) -> None:
    harness = Harness(monkeypatch, {**SPEC, "collection": {"onNewObjects": True}})
    harness.drop("a.csv", ROWS)
    harness.tick()
    again = harness.tick()
    assert harness.condition("Ready")[:2] == ("True", "NoNewData")
    assert harness.condition("Validated")[:2] == ("True", "RowsValidated")
    assert "lastCollectionTime" not in again
    assert [reason for reason, _ in harness.events] == ["VersionPublished"]


def test_versions_deleted_by_retention_leave_the_status_history(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    harness = Harness(monkeypatch, SPEC)
    harness.drop("a.csv", ROWS)
    harness.tick()
    (current,) = harness.object["status"]["versions"]
    expired = {**current, "id": "e" * 64}
    harness.object["status"]["versions"] = [expired, current]
    monkeypatch.setattr(
        controller,
        "enforce_retention",
        lambda *_: RetentionReport(deleted_versions=[expired["id"]]),
    )
    monkeypatch.setattr(collector, "collect", _never_collect)
    harness.an_hour_passes()
    assert harness.tick()["versions"] == [current]
    assert [r for r, _ in harness.events][-1] == "RetentionEnforced"


def test_objects_not_read_are_named_in_status_and_counted_against_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 16.1/16.6: a CSV refused for a repeated column counts all of its rows, and
    the status and Event say which object and how many rows."""
    harness = Harness(monkeypatch, SPEC)
    harness.drop("a.csv", ROWS[:40])
    harness.store.put_bytes(
        f"inbox/{NS}/{NAME}/twice.csv",
        ("t,ax,label,ax\n" + "".join(f"{i},1,run,2\n" for i in range(100, 110))).encode(),
    )
    status = harness.tick()
    source = f"s3://edgeops/inbox/{NS}/{NAME}/twice.csv"
    detail = (
        "csv file: column 'ax' appears 2 times in the header (columns 2, 4); the file is refused"
    )
    assert status["rejected"] == {
        "total": 10,
        "byReason": {"Malformed": 10},
        "unread": [{"source": source, "rows": 10, "reason": "Malformed", "detail": detail}],
    }
    validated = harness.condition("Validated")
    assert validated[:2] == ("False", "TooManyRejected")  # 10 of 50 > 10 %
    assert validated[2].startswith("10 of 50 rows rejected (20.0% > limit 10.0%)")
    assert f"not read: {source}: 10 rows" in validated[2]


def test_an_object_whose_rows_cannot_be_counted_refuses_the_collection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 16.1: a Parquet file cut before its footer hides how many rows it held, so
    no rejected share can be claimed: nothing is published and the message says why."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"t": i, "ax": i * 0.5, "label": "run" if i % 3 else "walk", "site": "a"} for i in range(60)
    ]
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    data = buffer.getvalue()
    harness = Harness(monkeypatch, {**SPEC, "format": "parquet"})
    harness.store.put_bytes(f"inbox/{NS}/{NAME}/good.parquet", data)
    harness.store.put_bytes(f"inbox/{NS}/{NAME}/cut.parquet", data[: len(data) // 2])
    status = harness.tick()
    source = f"s3://edgeops/inbox/{NS}/{NAME}/cut.parquet"
    (unread,) = status["rejected"]["unread"]
    assert unread["source"] == source and "rows" not in unread  # unknown
    assert unread["reason"] == "Unreadable"
    assert status["latestVersion"] is None
    validated = harness.condition("Validated")
    assert validated[:2] == ("False", "TooManyRejected")
    assert validated[2].startswith(
        "1 source object(s) could not be read and their rows cannot be counted"
    )
    assert f"not read: {source}: unknown rows" in validated[2]
    assert "60 rows accepted" in validated[2]


def test_an_older_failed_job_left_for_its_logs_is_not_reported_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    harness = Harness(monkeypatch, SPEC)
    harness.drop("a.csv", ROWS)
    harness.tick()
    assert harness.object["status"]["collection"]["phase"] == "Succeeded"
    # Collection 1 failed and stays (TTL) while collection 2 succeeded and was deleted.
    older = {
        **harness.jobs[0],
        "metadata": {**harness.jobs[0]["metadata"], "name": "imu-collect-0"},
        "status": {"conditions": [{"type": "Failed", "status": "True"}]},
    }
    older["metadata"]["labels"] = {"edgeops.dev/collection": "0"}
    harness.jobs[:] = [older]
    monkeypatch.setattr(collector, "collect", _never_collect)
    assert harness.tick() == {}  # nothing due, nothing re-reported
    assert harness.object["status"]["collection"]["phase"] == "Succeeded"


def test_a_spec_too_big_for_kopf_is_invalid_spec_with_an_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stored while the webhook was down (trial of issue 16, bug 2): InvalidSpec in Ready
    and a Warning Event naming the largest field, nothing collected, no retry loop."""
    tokens = [f"{'é' * 30}{n:02d}" for n in range(16)]
    features = [{"name": f"f{i}", "type": "float", "missingTokens": tokens} for i in range(256)]
    spec = {**SPEC, "schema": {**SPEC["schema"], "features": features}}
    harness = Harness(monkeypatch, spec)
    monkeypatch.setattr(controller.collection, "collection_due", _never_collect)
    harness.tick()
    status, reason, message = harness.condition("Ready")
    assert (status, reason) == ("False", "InvalidSpec")
    assert message.startswith("spec: 770")
    assert message.endswith(
        "more than the 65536 a spec may hold; the largest field is spec.schema.features "
        "(770195 bytes)"
    ), message
    assert harness.events == [("InvalidSpec", message)]
