"""Retraining triggers: the five reasons, cron, cooldown, max concurrent runs, dedupe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edgeops.api.edgemodel import DriftSummary, RetrainPolicy, TriggerState
from edgeops.api.trainingrun import TrainingTemplate
from edgeops.policy import retrain
from edgeops.policy.cron import latest_tick, parse_cron, parse_duration

NOW = datetime(2025, 3, 5, 12, 30, 20, tzinfo=UTC)  # a Wednesday
DS1, DS2 = "1" * 64, "2" * 64
CODE1, CODE2 = "c" * 64, "d" * 64


def _policy(**kwargs: Any) -> RetrainPolicy:
    return RetrainPolicy.model_validate({"cooldown": "1h", **kwargs})


def _state(**kwargs: Any) -> TriggerState:
    base = {
        "datasetVersion": DS1,
        "codeHash": CODE1,
        "runCounter": 1,
        "lastTriggerTime": "2025-03-05T10:00:00Z",
    }
    return TriggerState.model_validate({**base, **kwargs})


def _seen(**kwargs: Any) -> retrain.Observed:
    base: dict[str, Any] = {
        "now": NOW,
        "dataset_version": DS1,
        "code_hash": CODE1,
        "retrain_request": None,
        "drift": None,
        "current_accuracy": 0.9,
        "active_runs": 0,
    }
    return retrain.Observed(**{**base, **kwargs})


def test_nothing_changed_nothing_starts() -> None:
    decision = retrain.decide(_policy(), _state(), _seen())
    assert not decision.start and decision.message == "no trigger fired"


def test_first_run_is_initial_data_change() -> None:
    decision = retrain.decide(_policy(onNewDatasetVersion=False), TriggerState(), _seen())
    assert decision.start and decision.reason == "DataChange"
    assert "initial training" in decision.message
    assert decision.state.run_counter == 1 and decision.state.code_hash == CODE1


def test_no_dataset_version_waits() -> None:
    decision = retrain.decide(_policy(), TriggerState(), _seen(dataset_version=None))
    assert not decision.start
    decision = retrain.decide(_policy(), _state(), _seen(retrain_request="x", dataset_version=None))
    assert not decision.start and decision.blocked == "DatasetVersionNotFound"


def test_data_change() -> None:
    decision = retrain.decide(_policy(), _state(), _seen(dataset_version=DS2))
    assert decision.start and decision.reason == "DataChange"
    assert decision.state.dataset_version == DS2 and decision.state.run_counter == 2
    off = retrain.decide(_policy(onNewDatasetVersion=False), _state(), _seen(dataset_version=DS2))
    assert not off.start


def test_code_change() -> None:
    decision = retrain.decide(_policy(), _state(), _seen(code_hash=CODE2))
    assert decision.start and decision.reason == "CodeChange"
    assert not retrain.decide(_policy(onCodeChange=False), _state(), _seen(code_hash=CODE2)).start


def test_code_hash_follows_image_and_config_not_dataset() -> None:
    base = {"datasetRef": {"name": "d"}, "exports": ["onnx"]}
    a = retrain.code_hash(TrainingTemplate.model_validate(base))
    other_data = retrain.code_hash(
        TrainingTemplate.model_validate({**base, "datasetRef": {"name": "e"}})
    )
    image = retrain.code_hash(
        TrainingTemplate.model_validate({**base, "trainer": {"image": "trainer:2"}})
    )
    config = retrain.code_hash(
        TrainingTemplate.model_validate({**base, "trainer": {"config": {"width": 64}}})
    )
    assert a == other_data and len({a, image, config}) == 3


def test_manual_request_once_and_skips_cooldown() -> None:
    recent = _state(lastTriggerTime="2025-03-05T12:30:00Z")
    decision = retrain.decide(_policy(), recent, _seen(retrain_request="r1"))
    assert decision.start and decision.reason == "Manual"
    assert decision.state.retrain_request == "r1"
    again = retrain.decide(_policy(), decision.state, _seen(retrain_request="r1"))
    assert not again.start


def test_cooldown_blocks_automatic_triggers_and_keeps_them_pending() -> None:
    recent = _state(lastTriggerTime="2025-03-05T12:00:00Z")
    blocked = retrain.decide(_policy(), recent, _seen(dataset_version=DS2))
    assert not blocked.start and blocked.blocked == "Cooldown"
    assert "next run at 2025-03-05T13:00:00Z" in blocked.message
    assert blocked.state.dataset_version == DS1  # still pending
    later = retrain.decide(
        _policy(), blocked.state, _seen(dataset_version=DS2, now=NOW + timedelta(minutes=31))
    )
    assert later.start and later.reason == "DataChange"


def test_max_concurrent_runs_blocks_even_manual() -> None:
    decision = retrain.decide(
        _policy(maxConcurrentRuns=1), _state(), _seen(retrain_request="r", active_runs=1)
    )
    assert not decision.start and decision.blocked == "MaxConcurrentRuns"
    assert "1 run(s) active, max 1" in decision.message


def test_simultaneous_triggers_start_one_run_with_all_reasons() -> None:
    drift = DriftSummary(psi=0.5, samples=1000, measured_at="2025-03-05T12:29:00Z")
    seen = _seen(dataset_version=DS2, code_hash=CODE2, retrain_request="now", drift=drift)
    decision = retrain.decide(_policy(onDrift={"enabled": True}), _state(), seen)
    assert decision.start and decision.reason == "Manual"
    assert decision.reasons == ["Manual", "Drift", "DataChange", "CodeChange"]
    assert decision.state.last_reasons == decision.reasons
    # Everything that fired was consumed by that one run.
    again = retrain.decide(_policy(onDrift={"enabled": True}), decision.state, seen)
    assert not again.start


def test_drift_thresholds_and_min_samples() -> None:
    policy = _policy(
        onDrift={"enabled": True, "psiThreshold": 0.2, "jsThreshold": 0.1, "minSamples": 500}
    )
    at = "2025-03-05T12:29:00Z"
    low = DriftSummary(psi=0.1, js=0.05, samples=1000, measured_at=at)
    few = DriftSummary(psi=0.9, samples=10, measured_at=at)
    js = DriftSummary(js=0.3, samples=1000, measured_at=at)
    assert not retrain.decide(policy, _state(), _seen(drift=low)).start
    assert not retrain.decide(policy, _state(), _seen(drift=few)).start
    decision = retrain.decide(policy, _state(), _seen(drift=js))
    assert decision.reason == "Drift" and "JS 0.300 > 0.1" in decision.message
    assert not retrain.decide(_policy(), _state(), _seen(drift=js)).start  # disabled


def test_accuracy_signal_from_feedback() -> None:
    policy = _policy(onDrift={"enabled": True, "accuracyDropThreshold": 0.05, "minSamples": 1})
    drift = DriftSummary(accuracy=0.8, samples=100, measured_at="2025-03-05T12:29:00Z")
    decision = retrain.decide(policy, _state(), _seen(drift=drift, current_accuracy=0.9))
    assert decision.start and decision.reason == "Accuracy"
    assert "drop 0.100 > 0.05" in decision.message
    small = DriftSummary(accuracy=0.87, samples=100, measured_at="2025-03-05T12:29:00Z")
    assert not retrain.decide(policy, _state(), _seen(drift=small, current_accuracy=0.9)).start


def test_lasting_drift_retrains_again_only_on_new_data() -> None:
    policy = _policy(onDrift={"enabled": True, "minSamples": 1})
    first = DriftSummary(psi=0.4, samples=100, measured_at="2025-03-05T12:29:00Z")
    started = retrain.decide(policy, _state(), _seen(drift=first))
    assert started.start and started.state.drift_dataset_version == DS1
    # An hour later (cooldown over) the fleet still drifts, and the data is the same.
    later = NOW + timedelta(hours=2)
    again = DriftSummary(psi=0.4, samples=100, measured_at="2025-03-05T14:29:00Z")
    held = retrain.decide(policy, started.state, _seen(drift=again, now=later))
    assert not held.start and held.blocked == "AwaitingNewData"
    assert "PSI 0.400 > 0.2" in held.message and "waiting for a new dataset version" in held.message
    assert held.state.drift_measured_at == first.measured_at  # not consumed: still pending
    fresh = retrain.decide(
        policy, started.state, _seen(drift=again, now=later, dataset_version=DS2)
    )
    assert fresh.start and fresh.reason == "Drift" and fresh.reasons == ["Drift", "DataChange"]
    assert fresh.state.drift_dataset_version == DS2
    # Other triggers are not held back by it.
    manual = retrain.decide(
        policy, started.state, _seen(drift=again, now=later, retrain_request="please")
    )
    assert manual.start and manual.reason == "Manual"


def test_schedule_starts_counting_when_set_and_fires_on_a_tick() -> None:
    policy = _policy(schedule="*/15 * * * *", cooldown="1s")
    first = retrain.decide(policy, _state(), _seen())
    assert not first.start and first.state.schedule_checked_at == "2025-03-05T12:30:20Z"
    before_tick = retrain.decide(policy, first.state, _seen(now=NOW + timedelta(minutes=10)))
    assert not before_tick.start
    at_tick = retrain.decide(policy, first.state, _seen(now=NOW + timedelta(minutes=15)))
    assert at_tick.start and at_tick.reason == "Schedule"
    assert "fired at 2025-03-05T12:45:00Z" in at_tick.message


def test_cron_parsing_and_matching() -> None:
    cron = parse_cron("0 3 * * sun")
    assert cron.matches(datetime(2025, 3, 9, 3, 0, tzinfo=UTC))  # Sunday
    assert not cron.matches(datetime(2025, 3, 8, 3, 0, tzinfo=UTC))
    assert parse_cron("@daily") == parse_cron("0 0 * * *")
    assert parse_cron("0 0 * * 7").weekdays == frozenset({0})
    both = parse_cron("0 0 1 * mon")  # day-of-month OR day-of-week
    assert both.matches(datetime(2025, 3, 1, tzinfo=UTC))  # Saturday the 1st
    assert both.matches(datetime(2025, 3, 3, tzinfo=UTC))  # Monday the 3rd
    assert not both.matches(datetime(2025, 3, 4, tzinfo=UTC))
    assert parse_cron("1-10/3,30 * * jan-mar *").minutes == frozenset({1, 4, 7, 10, 30})
    for bad in ("* * * *", "61 * * * *", "*/0 * * * *", "x * * * *"):
        with pytest.raises(ValueError):
            parse_cron(bad)


def test_latest_tick_scans_backwards_fast() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    assert latest_tick("0 3 * * sun", start, datetime(2025, 3, 5, tzinfo=UTC)) == datetime(
        2025, 3, 2, 3, 0, tzinfo=UTC
    )
    assert latest_tick("0 0 29 2 *", start, datetime(2025, 12, 31, tzinfo=UTC)) is None


def test_durations() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("1.5s") == timedelta(seconds=1.5)
    with pytest.raises(ValueError):
        parse_duration("5 minutes")


def test_a_long_request_is_recorded_by_its_digest_and_handled_once() -> None:
    # An annotation of any length: status.triggers.retrainRequest allows 253 characters.
    long = "please retrain " + "x" * 400
    decision = retrain.decide(_policy(), _state(), _seen(retrain_request=long))
    assert decision.start and decision.reason == "Manual"
    recorded = decision.state.retrain_request
    assert recorded is not None and recorded.startswith("sha256:") and len(recorded) == 71
    again = retrain.decide(_policy(), decision.state, _seen(retrain_request=long))
    assert not again.start
    changed = retrain.decide(_policy(), decision.state, _seen(retrain_request=long + "!"))
    assert changed.start
    assert retrain.request_token("  short  ") == "short"
    assert retrain.request_token(None) == ""


def _standing_drift(**kwargs: Any) -> DriftSummary:
    base = {
        "measuredAt": "2025-03-05T12:30:00Z",
        "version": 1,
        "verdict": "Drift",
        "reason": "x: psi 0.4 vs threshold 0.1",
        "driftSince": "2025-03-05T12:20:00Z",
    }
    return DriftSummary.model_validate({**base, **kwargs})


def test_drift_waits_for_data_published_a_window_after_it_began() -> None:
    policy = _policy(onNewDatasetVersion=False, onDrift={"enabled": True, "window": "5m"})
    drift = _standing_drift()
    # Published 2 minutes into the drift: not yet a window of the drifted fleet's data.
    early = _seen(dataset_version=DS2, drift=drift, dataset_created=NOW - timedelta(minutes=8))
    decision = retrain.decide(policy, _state(), early)
    assert not decision.start and decision.blocked == "AwaitingNewData"
    assert "published after 2025-03-05T12:25:00Z" in decision.message
    assert "driftSince + window 5m" in decision.message
    late = _seen(dataset_version=DS2, drift=drift, dataset_created=NOW - timedelta(minutes=4))
    decision = retrain.decide(policy, _state(), late)
    assert decision.start and decision.reason == "Drift"
    assert decision.state.drift_dataset_version == DS2


def test_drift_of_a_superseded_version_is_no_signal() -> None:
    policy = _policy(onNewDatasetVersion=False, onDrift={"enabled": True, "window": "5m"})
    seen = _seen(
        dataset_version=DS2, drift=_standing_drift(), dataset_created=NOW, newest_version=2
    )
    decision = retrain.decide(policy, _state(), seen)
    assert not decision.start and decision.message == "no trigger fired"
    # Once the fleet runs v2 and it drifts too, the signal counts again.
    seen = _seen(
        dataset_version=DS2,
        drift=_standing_drift(version=2),
        dataset_created=NOW,
        newest_version=2,
    )
    assert retrain.decide(policy, _state(), seen).reason == "Drift"
