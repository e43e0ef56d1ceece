"""When controllers run again: backoff after failures, the next pass of a Dataset, the next
check of an EdgeModel's triggers, and which status keys a pass actually changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from edgeops.api.constants import Reason
from edgeops.api.dataset import DatasetSpec
from edgeops.api.edgemodel import RetrainPolicy, TriggerState
from edgeops.controllers import reconciler
from edgeops.policy import collection, retrain

T0 = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)
BASE = {
    "sources": [{"inbox": {}}],
    "schema": {"features": [{"name": "x", "type": "float"}], "label": "y"},
    "governance": {"classification": "internal"},
}


def _spec(collection_spec: dict[str, object] | None = None) -> DatasetSpec:
    body = dict(BASE)
    if collection_spec is not None:
        body["collection"] = collection_spec
    return DatasetSpec.model_validate(body)


def test_backoff_doubles_from_one_second_up_to_five_minutes() -> None:
    assert [reconciler.backoff(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert reconciler.backoff(9) == 256.0
    assert reconciler.backoff(10) == reconciler.backoff(50) == 300.0


def test_only_changed_status_keys_are_written() -> None:
    current = {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}
    wanted = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    assert reconciler._changed(current, wanted) == {"conditions": wanted["conditions"]}
    assert reconciler._changed(current, dict(current)) == {}
    assert reconciler._changed(current, {"gone": None}) == {}  # absent either way
    assert reconciler._changed(current, {"phase": None}) == {"phase": None}  # a deletion


def test_a_dataset_with_an_interval_runs_again_when_it_is_due() -> None:
    clock = collection.Clock(now=T0, last_attempt=T0 - timedelta(minutes=3), last_retention=T0)
    status = {"observedGeneration": 1}
    spec = _spec({"schedule": "5m"})
    assert not collection.collection_due(spec, status, 1, clock)
    assert collection.seconds_until_next_pass(spec, status, clock, 10.0) == 120.0
    # A spec change (new generation) collects at once.
    assert collection.collection_due(spec, status, 2, clock)


def test_a_dataset_without_schedule_waits_only_for_retention() -> None:
    clock = collection.Clock(now=T0, last_attempt=T0, last_retention=T0 - timedelta(minutes=59))
    spec, status = _spec(), {"observedGeneration": 1}
    assert not collection.collection_due(spec, status, 1, clock)
    assert collection.seconds_until_next_pass(spec, status, clock, 10.0) == 60.0


def test_new_objects_and_storage_outages_are_polled() -> None:
    clock = collection.Clock(now=T0, last_attempt=T0, last_retention=T0)
    status: dict[str, object] = {"observedGeneration": 1}
    polled = _spec({"onNewObjects": True, "schedule": "6h"})
    assert collection.collection_due(polled, status, 1, clock)
    assert collection.seconds_until_next_pass(polled, status, clock, 7.0) == 7.0
    down = {
        "observedGeneration": 1,
        "conditions": [{"type": "StorageAvailable", "status": "False"}],
    }
    assert collection.collection_due(_spec(), down, 1, clock)
    assert (
        collection.seconds_until_next_pass(_spec(), down, clock, 7.0)
        == collection.STORAGE_RETRY_SECONDS
    )


def test_a_cron_schedule_is_checked_at_the_next_minute() -> None:
    now = T0 + timedelta(seconds=45)
    clock = collection.Clock(now=now, last_attempt=T0, last_retention=now)
    spec = _spec({"schedule": "*/15 * * * *"})
    assert collection.seconds_until_next_pass(spec, {"observedGeneration": 1}, clock, 10.0) == 15.0


def test_an_edgemodel_wakes_at_the_end_of_its_cooldown() -> None:
    policy = RetrainPolicy.model_validate({"cooldown": "10m"})
    blocked = retrain.Decision(
        False,
        TriggerState(),
        blocked=Reason.COOLDOWN,
        retry_at=T0 + timedelta(minutes=4),
    )
    assert retrain.seconds_until_next_check(policy, blocked, T0) == 240.0
    idle = retrain.Decision(False, TriggerState())
    assert retrain.seconds_until_next_check(policy, idle, T0) is None
    scheduled = RetrainPolicy.model_validate({"schedule": "0 3 * * *"})
    later = T0 + timedelta(seconds=20)
    assert retrain.seconds_until_next_check(scheduled, idle, later) == 40.0


def test_triggers_wait_out_the_batching_window_of_the_first_signal() -> None:
    assert retrain.batch_wait(T0, T0, 5.0) == 5.0
    assert retrain.batch_wait(T0, T0 + timedelta(seconds=3), 5.0) == 2.0
    assert retrain.batch_wait(T0, T0 + timedelta(seconds=9), 5.0) == 0.0
    assert retrain.batch_wait(T0, T0, 0.0) == 0.0


def test_a_failed_collection_backs_off_whatever_else_is_due() -> None:
    # Issue 17 item 8: onNewObjects and a storage outage would poll; a pending retry wins.
    retry = T0 + timedelta(seconds=8)
    clock = collection.Clock(now=T0, last_attempt=T0, retry_at=retry, last_retention=T0)
    down = {
        "observedGeneration": 1,
        "conditions": [{"type": "StorageAvailable", "status": "False"}],
    }
    polled = _spec({"onNewObjects": True})
    assert not collection.collection_due(polled, down, 1, clock)
    assert collection.seconds_until_next_pass(polled, down, clock, 7.0) == 7.0
    later = collection.Clock(now=retry, last_attempt=T0, retry_at=retry, last_retention=T0)
    assert collection.collection_due(polled, down, 1, later)
    # A spec change is collected at once.
    assert collection.collection_due(polled, down, 2, clock)


def test_handled_failures_share_the_backoff() -> None:
    memo: dict[str, object] = {}
    assert reconciler.retry_later(memo) == 1.0  # type: ignore[arg-type]
    memo[reconciler.FAILURES_KEY] = 3
    assert reconciler.retry_later(memo) == 8.0  # type: ignore[arg-type]
    memo[reconciler.FAILURES_KEY] = 40
    assert reconciler.retry_later(memo) == 300.0  # type: ignore[arg-type]
    assert memo[reconciler.FAILED_PASS_KEY] is True
