"""FleetRollout decisions (edgeops.policy.rollout): step progress on success thresholds,
device timeouts, failure thresholds and onFailure, pauses and their acknowledgement,
analysis verdicts (Inconclusive and Error never pass or fail), bake time, overlap; and
agreement with the gateway's desired-state function on which devices a step moved."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edgeops.api.common import format_time
from edgeops.api.edgemodel import Target
from edgeops.api.fleetrollout import (
    AnalysisMetric,
    FleetRolloutSpec,
    FleetRolloutStatus,
    HandOver,
)
from edgeops.policy.desired import RolloutView, desired_version, in_cohort, rollout_view
from edgeops.policy.handoff import merge_hand_overs
from edgeops.policy.rollout import (
    Decision,
    FleetDevice,
    Measurement,
    ModelInfo,
    choose_stable,
    classify,
    decide,
    due_metrics,
    evaluate_value,
    fleet_device,
    own_view,
)

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
UID = "uid-r"
MODEL_LABEL = {"edgeops.dev/model": "m"}
PI = Target(name="pi", target_type="linux", format="onnx")
MODEL = ModelInfo(found=True, current_version=1, versions=frozenset({1, 2}), targets=(PI,))
QUERY = 'sum(rate(x{version="{{version}}", cohort="{{cohort}}"}[5m]))'


def make_spec(**fields: Any) -> FleetRolloutSpec:
    document: dict[str, Any] = {
        "modelRef": {"name": "m"},
        "version": 2,
        "steps": [{"percent": 10}, {"percent": 50}, {"percent": 100}],
    }
    document.update(fields)
    return FleetRolloutSpec.model_validate(document)


def metric(**fields: Any) -> dict[str, Any]:
    return {"name": "acc", "query": QUERY, "threshold": 0.9, "op": ">=", **fields}


def device(
    name: str,
    *,
    version: int | None = 1,
    phase: str | None = None,
    target: int | None = None,
    at: datetime | None = None,
    seen: datetime | None = T0,
    labels: dict[str, str] | None = None,
    eligible: bool = True,
    target_type: str = "linux",
) -> FleetDevice:
    return FleetDevice(
        name=name,
        labels={**MODEL_LABEL, **(labels or {})},
        eligible=eligible,
        target_type=target_type,
        hardware=None,
        version=version,
        update_target=target,
        update_phase=phase,
        update_time=format_time(at) if at else None,
        last_seen=format_time(seen) if seen else None,
        report_interval_seconds=60,
    )


class Sim:
    """A rollout and a fleet: each tick decides at the simulated clock, and devices report
    what the gateway's desired-state function tells them."""

    def __init__(
        self,
        spec: FleetRolloutSpec,
        n: int = 100,
        *,
        model: ModelInfo = MODEL,
        others: Sequence[RolloutView] = (),
    ) -> None:
        self.spec, self.model, self.others = spec, model, list(others)
        self.now = T0
        self.status = FleetRolloutStatus()
        self.devices = {f"d{i:03}": device(f"d{i:03}") for i in range(n)}
        self.events: list[tuple[str, str, str]] = []
        self.last: Decision | None = None

    def view(self) -> RolloutView:
        return own_view("r", UID, "2026-01-01T00:00:00Z", self.spec, self.status)

    def tick(self, measurements: Iterable[Measurement] = (), advance: float = 0) -> Decision:
        self.now += timedelta(seconds=advance)
        decision = decide(
            self.spec, self.status, self.view(), self.others, list(self.devices.values()),
            self.model, list(measurements), self.now, 60,
        )  # fmt: skip
        self.status, self.last = decision.status, decision
        self.events += [(e.type, e.reason, e.message) for e in decision.events]
        return decision

    def desired(self, name: str) -> int | None:
        """What the gateway gives device ``name`` now."""
        d = self.devices[name]
        chosen = desired_version(name, d.labels, {"m": 1}, [*self.others, self.view()])
        return None if chosen is None else chosen.version

    def told(self) -> list[str]:
        """Devices the gateway gives the target version and that do not run it yet."""
        return [
            n
            for n, d in self.devices.items()
            if self.desired(n) == self.spec.version and d.version != self.spec.version
        ]

    def report(self, names: Iterable[str], phase: str = "Committed") -> None:
        for name in names:
            d = self.devices[name]
            version = self.spec.version if phase == "Committed" else d.version
            self.devices[name] = replace(
                d, version=version, update_target=self.spec.version, update_phase=phase,
                update_time=format_time(self.now), last_seen=format_time(self.now),
            )  # fmt: skip

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]


def started(spec: FleetRolloutSpec, n: int = 100, **kw: Any) -> Sim:
    sim = Sim(spec, n, **kw)
    sim.tick()
    assert sim.status.phase == "Progressing" and sim.status.current_step == 0
    return sim


def measure(name: str, verdict: str, at: datetime, value: float | None = 0.95) -> Measurement:
    return Measurement(name, QUERY, value, 500, verdict, f"{verdict} test", at)  # type: ignore[arg-type]


# --- start ------------------------------------------------------------------------------------


def test_pending_until_model_and_version_exist() -> None:
    sim = Sim(make_spec(), model=ModelInfo(found=False))
    decision = sim.tick()
    assert sim.status.phase == "Pending" and decision.requeue is None
    assert decision.conditions["Ready"].reason == "ModelNotFound"
    sim.model = ModelInfo(found=True, current_version=1, versions=frozenset({1}))
    decision = sim.tick()
    assert decision.conditions["Ready"].reason == "VersionNotFound"
    assert "deployable: v1" in decision.conditions["Ready"].message
    assert sim.reasons() == ["ModelNotFound", "VersionNotFound"]
    sim.tick()  # unchanged problem: no second Event
    assert sim.reasons() == ["ModelNotFound", "VersionNotFound"]
    sim.model = MODEL
    sim.tick()
    assert sim.status.phase == "Progressing" and sim.status.stable_version == 1
    assert sim.status.current_percent == 10 and sim.status.steps[0].started_at == format_time(T0)
    assert sim.reasons()[-2:] == ["RolloutStarted", "StepStarted"]


def test_stable_version_when_promotion_already_made_the_version_current() -> None:
    assert choose_stable(2, 1, {})[0] == 1
    assert choose_stable(2, 2, {1: 5, 2: 3, 3: 5})[0] == 3  # most devices, ties: higher
    assert choose_stable(2, None, {1: 1})[0] == 1
    stable, why = choose_stable(2, 2, {2: 4})
    assert stable is None and "none" in why
    model = ModelInfo(found=True, current_version=2, versions=frozenset({1, 2}), targets=(PI,))
    sim = started(make_spec(), model=model)
    assert sim.status.stable_version == 1
    assert "1" in sim.events[0][2] and "100 of the selected devices" in sim.events[0][2]


def test_the_stable_version_is_what_the_fleet_runs_not_a_stale_current_version() -> None:
    """A rollout applied by hand moved the fleet to v2 while the EdgeModel's current version
    stayed v1 (manual promotion): a v3 rollout must leave the devices it does not move on
    v2, not send them back to v1."""
    model = ModelInfo(found=True, current_version=1, versions=frozenset({1, 2, 3}), targets=(PI,))
    sim = Sim(make_spec(version=3), model=model)
    sim.devices = {n: replace(d, version=2) for n, d in sim.devices.items()}
    sim.tick()
    assert sim.status.stable_version == 2
    assert "v2, which 100 of the selected devices run" in sim.events[0][2]
    untouched = [n for n in sim.devices if sim.desired(n) != 3]
    assert untouched and {sim.desired(n) for n in untouched} == {2}


def _older(version: int = 2) -> RolloutView:
    return RolloutView(
        name="old", uid="uid-old", created="2025-12-01T00:00:00Z", model="m", version=version,
        phase="Succeeded", percent=100, selector=None,
    )  # fmt: skip


def test_the_first_step_ramps_although_an_older_rollout_governs_the_fleet() -> None:
    """Before it starts, the devices an older rollout governs looked overlapping, so the
    first step's ramp was skipped and the whole cohort was told at once."""
    spec = make_spec(steps=[{"percent": 100}], maxUpdatesPerMinute=10)
    sim = Sim(spec, 100, others=[_older()])
    sim.tick()
    assert sim.status.admitted_buckets is not None and sim.status.admitted_buckets < 10000
    assert sim.status.admission_rate == pytest.approx(10 * 10000 / 100)
    started_event = next(m for _, r, m in sim.events if r == "StepStarted")
    assert "admitted gradually at maxUpdatesPerMinute 10" in started_event
    assert len(sim.told()) < 100


def test_a_rollout_whose_devices_a_newer_one_governs_never_completes_a_step() -> None:
    """All selected devices governed by a newer rollout: no vacuous step completion (a
    Succeeded rollout would move every selected device at once the day the newer one is
    deleted)."""
    newer = RolloutView(
        name="newer", uid="uid-n", created="2026-05-01T00:00:00Z", model="m", version=3,
        phase="Progressing", percent=100, selector=None,
    )  # fmt: skip
    sim = started(make_spec(), 20, others=[newer])
    for _ in range(5):
        sim.tick(advance=120)
    assert sim.status.phase == "Progressing" and sim.status.current_step == 0
    assert sim.status.step_completed_at is None
    assert "governed by the newer rollout(s) newer" in (sim.status.message or "")
    assert "StepCompleted" not in sim.reasons()
    # The newer rollout gone, the devices are this rollout's again, one step at a time.
    sim.others = []
    sim.tick()
    counts = sim.status.counts
    assert counts is not None and 0 < counts.targeted < 20


# --- steps ------------------------------------------------------------------------------------


def test_steps_progress_as_the_targeted_devices_commit_and_agree_with_the_gateway() -> None:
    sim = started(make_spec())
    seen_targeted = []
    for step, percent in enumerate((10, 50, 100)):
        sim.tick()
        assert sim.status.current_step == step and sim.status.current_percent == percent
        told = sim.told()
        counts = sim.status.counts
        assert counts is not None
        # The controller's targeted devices are the gateway's: same cohort function.
        targeted = [n for n in sim.devices if sim.desired(n) == 2]
        assert counts.targeted == len(targeted) and counts.pending == len(told)
        seen_targeted.append(counts.targeted)
        assert sim.status.phase == "Progressing"
        sim.report(told)
        sim.tick(advance=30)
    assert sim.status.phase == "Succeeded", sim.status.message
    assert seen_targeted[0] < seen_targeted[1] < seen_targeted[2] == 100
    assert all(sim.desired(n) == 2 for n in sim.devices)
    assert [r.step for r in sim.status.steps] == [0, 1, 2]
    assert all(r.completed_at and r.counts and r.counts.updated == r.counts.targeted
               for r in sim.status.steps)  # fmt: skip
    assert sim.reasons().count("StepStarted") == 3 and sim.reasons().count("StepCompleted") == 3
    assert sim.reasons()[-1] == "Completed"
    assert sim.last is not None and sim.last.conditions["Succeeded"].status == "True"
    # Terminal: nothing more happens.
    sim.tick(advance=3600)
    assert sim.status.phase == "Succeeded" and sim.last.events == []


def test_step_completes_on_its_success_threshold_not_on_every_device() -> None:
    spec = make_spec(steps=[{"percent": 100, "successThreshold": 90}])
    sim = started(spec, 20)
    sim.report(sorted(sim.told())[:17])
    sim.tick()
    assert sim.status.step_completed_at is None
    assert "85.0 % updated of 20 targeted, waiting for 90 %" in (sim.status.message or "")
    sim.report(sorted(sim.told())[:1])
    sim.tick()
    assert sim.status.phase == "Succeeded"
    assert "90.0 % of 20 targeted devices" in sim.events[-2][2]


def test_silent_devices_time_out_after_device_timeout_and_count_as_offline_before() -> None:
    spec = make_spec(
        steps=[{"percent": 100, "successThreshold": 80}], deviceTimeout="30m",
        failureThreshold={"percent": 50},
    )  # fmt: skip
    sim = started(spec, 10)
    names = sorted(sim.devices)
    silent = names[:2]
    for name in silent:
        sim.devices[name] = replace(
            sim.devices[name], last_seen=format_time(T0 - timedelta(hours=1))
        )
    sim.report(names[2:7])
    sim.report(names[7:8], "Downloading")
    d = sim.tick(advance=60)
    counts = sim.status.counts
    assert counts is not None
    assert (counts.updated, counts.in_progress, counts.pending, counts.offline) == (5, 1, 4, 2)
    # Requeued for the first device timeout: 30 min after the step started.
    assert d.requeue == pytest.approx(29 * 60)
    d = sim.tick(advance=29 * 60 + 1)
    counts = sim.status.counts
    assert counts is not None and counts.timed_out == 5 and counts.pending == 0
    assert counts.in_progress == 0 and counts.offline == 0
    # 5 of 10 timed out: 50 % is not above the 50 % threshold; the step is not complete.
    assert sim.status.phase == "Progressing"
    # A timed-out device that commits later counts as updated.
    sim.report(names[7:10])
    sim.tick(advance=60)
    assert sim.status.counts is not None and sim.status.counts.updated == 8
    assert sim.status.phase == "Succeeded"


def test_device_timeout_runs_from_the_step_that_first_targeted_the_device() -> None:
    spec = make_spec(
        deviceTimeout="1h", progressDeadlineSeconds=86400,
        steps=[{"percent": 10, "successThreshold": 80}, {"percent": 50}, {"percent": 100}],
    )  # fmt: skip
    sim = started(spec, 100)
    first = sim.told()
    sim.report(first[1:])
    sim.tick(advance=60)
    assert sim.status.current_step == 1  # first step complete: one silent device of ~10
    new = [n for n in sim.told() if n != first[0]]
    sim.report(new[1:])  # the new cohort but one
    sim.tick(advance=59 * 60 + 1)
    # 1 h after step 0 started: the step-0 device timed out; the step-1 one not yet.
    counts = sim.status.counts
    assert counts is not None and counts.timed_out == 1 and counts.pending == 1


def test_devices_handed_back_by_a_deleted_newer_rollout_time_out_from_the_hand_back() -> None:
    """Issue 12: r10 (v2, paused at 20 %, deviceTimeout 2m); r12 (v3 here) took every
    device more than 2 min after r10's step started; deleting r12 made r10 count the
    handed-back devices TimedOut at once (their clock ran from r10's step start, through
    the time r12 governed them) and roll back a healthy rollout."""
    spec = make_spec(steps=[{"percent": 20}, {"percent": 100}], deviceTimeout="2m")
    sim = started(spec, 20)
    cohort = sim.told()
    assert cohort
    sim.report(cohort)
    sim.spec = make_spec(steps=[{"percent": 20}, {"percent": 100}], deviceTimeout="2m",
                         paused=True)  # fmt: skip
    sim.tick(advance=10)
    assert sim.status.phase == "Paused" and sim.status.current_percent == 20
    newer = RolloutView(
        name="r12", uid="uid-12", created="2026-05-01T00:00:00Z", model="m", version=3,
        phase="Succeeded", percent=100, selector=None,
    )  # fmt: skip
    sim.others = [newer]
    sim.tick(advance=180)  # r12 applied 3 min after r10's step started
    for name in sim.devices:  # every device goes to v3 under r12
        sim.devices[name] = replace(
            sim.devices[name], version=3, update_target=3, update_phase="Committed",
            update_time=format_time(sim.now), last_seen=format_time(sim.now),
        )  # fmt: skip
    sim.tick(advance=60)
    assert sim.status.counts is not None and sim.status.counts.overlapping == 20
    # r12 deleted: the deletion handler notes the hand-over; r10's pass records it.
    sim.others = []
    sim.status.handed_over = merge_hand_overs(
        sim.status.handed_over, [HandOver(rollout="r12", selector=None, at=format_time(sim.now))]
    )
    sim.tick(advance=10)
    counts = sim.status.counts
    assert counts is not None and counts.targeted == len(cohort)
    assert (counts.timed_out, counts.pending) == (0, len(cohort)), counts
    assert sim.status.phase == "Paused"
    assert "RolledBack" not in sim.reasons()
    # The clock runs from the hand-back: silent 2 min after it, they do time out.
    sim.tick(advance=111)
    assert sim.status.counts is not None and sim.status.counts.timed_out == len(cohort)


def test_a_report_from_before_the_hand_back_is_not_an_outcome() -> None:
    """A Failed report for the rollout's version from before the device came back is
    stale: pending (the clock running from the hand-back), not failed; a later one counts."""
    timeout = timedelta(minutes=2)
    back = T0 + timedelta(minutes=10)
    stale = device("a", phase="Failed", target=2, at=T0 + timedelta(minutes=1))
    assert classify(stale, 2, back, back + timedelta(seconds=5), timeout, (PI,)) == (
        "failed",
        T0 + timedelta(minutes=1),
    )
    assert classify(stale, 2, back, back + timedelta(seconds=5), timeout, (PI,), 0, back) == (
        "pending",
        None,
    )
    fresh = replace(stale, update_time=format_time(back + timedelta(seconds=1)))
    assert classify(fresh, 2, back, back + timedelta(seconds=5), timeout, (PI,), 0, back)[0] == (
        "failed"
    )
    running = device("b", version=2, phase="Committed", target=2, at=T0)
    assert classify(running, 2, back, back, timeout, (PI,), 0, back)[0] == "updated"


def test_hand_overs_are_recorded_once_and_bounded() -> None:
    first = HandOver(rollout="r12", at="2026-06-01T12:00:00Z")
    merged = merge_hand_overs([first], [first, HandOver(rollout="r13", at="2026-06-01T12:01:00Z")])
    assert [h.rollout for h in merged] == ["r12", "r13"]
    many = [HandOver(rollout=f"r{i:02}", at=f"2026-06-01T12:{i:02}:00Z") for i in range(15)]
    assert [h.rollout for h in merge_hand_overs([], many)] == [f"r{i:02}" for i in range(5, 15)]


def test_incompatible_and_unapproved_devices() -> None:
    sim = Sim(make_spec(steps=[{"percent": 100}]), 0)
    sim.devices = {
        "a": device("a"),
        "mcu": device("mcu", target_type="mcu"),
        "pending": device("pending", eligible=False),
        "other-model": device("other-model", labels={"edgeops.dev/model": "x"}),
    }
    sim.tick()
    sim.tick()
    counts = sim.status.counts
    assert counts is not None
    assert (counts.targeted, counts.incompatible, counts.pending) == (2, 1, 1)


def test_selector_restricts_the_counted_devices() -> None:
    spec = make_spec(steps=[{"percent": 100}], selector={"matchLabels": {"site": "lab"}})
    sim = Sim(spec, 0)
    sim.devices = {f"l{i}": device(f"l{i}", labels={"site": "lab"}) for i in range(3)}
    sim.devices["x"] = device("x", labels={"site": "plant"})
    sim.tick()
    sim.tick()
    assert sim.status.counts is not None and sim.status.counts.targeted == 3
    assert sim.desired("x") == 1 and sim.told() == ["l0", "l1", "l2"]


# --- failures ---------------------------------------------------------------------------------


def test_failure_threshold_rolls_back_and_the_gateway_returns_moved_devices_to_stable() -> None:
    spec = make_spec(failureThreshold={"percent": 20, "minDevices": 2})
    sim = started(spec, 200)
    sim.tick()
    step0 = sim.told()
    sim.report(step0)
    sim.tick()
    assert sim.status.current_step == 1
    cohort = sim.told()
    moved = step0 + cohort
    n_fail = len(cohort) // 3
    sim.report(cohort[:n_fail], "Failed")
    sim.report(cohort[n_fail:], "Committed")
    # The failed devices still run v1; the committed ones v2.
    assert all(sim.desired(n) == 2 for n in moved)
    d = sim.tick(advance=10)
    assert sim.status.phase == "RolledBack", sim.status.message
    counts = sim.status.counts
    assert counts is not None and counts.failed == n_fail
    message = sim.events[-1][2]
    assert f"{n_fail} of" in message and "threshold of 20 %" in message
    assert "return to v1" in message
    assert d.conditions["Ready"].status == "False" and d.conditions["Ready"].reason == "RolledBack"
    assert sim.status.finished_at is not None
    # Every device, moved or not, is told the stable version; nothing is told v2 again.
    assert {sim.desired(n) for n in sim.devices} == {1}
    sim.tick(advance=3600)
    assert sim.status.phase == "RolledBack"


def test_min_devices_keeps_a_single_failure_from_rolling_back() -> None:
    spec = make_spec(steps=[{"percent": 100}], failureThreshold={"percent": 5, "minDevices": 2})
    sim = started(spec, 4)
    names = sorted(sim.devices)
    sim.report(names[:1], "Failed")
    sim.report(names[1:2])
    sim.tick()
    assert sim.status.phase == "Progressing"  # 50 % failed, but only 1 device
    sim.report(names[2:3], "RolledBack")
    sim.tick()
    assert sim.status.phase == "RolledBack"
    assert "2 of 3 devices" in sim.events[-1][2]


def test_counted_outcomes_exclude_uncounted_ones_from_the_denominator() -> None:
    spec = make_spec(
        steps=[{"percent": 100, "successThreshold": 50}], deviceTimeout="10m",
        failureThreshold={"percent": 40, "outcomes": ["Failed"]},
    )  # fmt: skip
    sim = started(spec, 10)
    names = sorted(sim.devices)
    sim.report(names[:3])
    sim.report(names[3:5], "Failed")
    sim.tick(advance=11 * 60)  # 5 silent devices time out: not counted
    counts = sim.status.counts
    assert counts is not None and counts.timed_out == 5
    # 2 failed of 5 (3 committed + 2 failed) = 40 %: not above 40 %.
    assert sim.status.phase == "Progressing"
    assert "2 of 5 devices" not in (sim.status.message or "")


@pytest.mark.parametrize(
    ("scope", "phase"), [("PerStep", "Succeeded"), ("Cumulative", "RolledBack")]
)
def test_failure_scope(scope: str, phase: str) -> None:
    """One failure per step: never 2 within a step, but 2 (5 % of 40) cumulatively."""
    spec = make_spec(
        steps=[{"percent": 50, "successThreshold": 90}, {"percent": 100, "successThreshold": 90}],
        failureThreshold={"percent": 4, "minDevices": 2, "scope": scope},
    )  # fmt: skip
    sim = started(spec, 40)
    told = sim.told()
    sim.report(told[:1], "Failed")
    sim.report(told[1:])
    sim.tick(advance=5)
    assert sim.status.phase == "Progressing" and sim.status.current_step == 1
    sim.now += timedelta(seconds=5)
    new = [n for n in sim.told() if n != told[0]]
    sim.report(new[:1], "Failed")
    sim.report(new[1:])
    sim.tick(advance=5)
    assert sim.status.phase == phase, sim.status.message


def test_on_failure_abort_freezes_the_cohort() -> None:
    spec = make_spec(onFailure="Abort", failureThreshold={"percent": 10, "minDevices": 1})
    sim = started(spec, 100)
    told = sim.told()
    sim.report(told[:3], "Failed")
    sim.report(told[3:])
    sim.tick()
    assert sim.status.phase == "Aborted" and sim.status.current_percent == 10
    assert "onFailure Abort" in sim.events[-1][2]
    # Moved devices keep v2 (committed or failed), devices not moved stay on v1.
    assert all(sim.desired(n) == 2 for n in told)
    assert all(sim.desired(n) == 1 for n in sim.devices if n not in told)


def test_on_failure_pause_needs_an_acknowledgement_and_only_new_failures_count_again() -> None:
    spec = make_spec(
        steps=[{"percent": 100, "successThreshold": 50}],
        onFailure="Pause", failureThreshold={"percent": 10, "minDevices": 1},
    )  # fmt: skip
    sim = started(spec, 20)
    names = sorted(sim.devices)
    sim.report(names[:3], "Failed")
    sim.tick()
    assert sim.status.phase == "Paused" and sim.status.paused_reason == "FailureThreshold"
    pause_id = sim.status.pause_id
    assert pause_id and pause_id in sim.events[-1][2]
    assert sim.last is not None and sim.last.conditions["Progressing"].reason == (
        "FailureThresholdExceeded"
    )
    # Committed devices while paused do not move the step on; a wrong id does nothing.
    sim.report(names[3:15])
    sim.spec = spec.model_copy(update={"acknowledged_pause": "step0-Other"})
    sim.tick()
    assert sim.status.phase == "Paused" and sim.status.step_completed_at is None
    sim.spec = spec.model_copy(update={"acknowledged_pause": pause_id})
    sim.tick()
    assert sim.status.failures_acknowledged == 3
    assert sim.status.phase == "Succeeded", sim.status.message
    assert "PauseAcknowledged" in sim.reasons()


def test_acknowledged_failures_then_a_new_failure_pauses_again() -> None:
    spec = make_spec(
        steps=[{"percent": 100, "successThreshold": 100}],
        onFailure="Pause", failureThreshold={"percent": 10, "minDevices": 1},
    )  # fmt: skip
    sim = started(spec, 10)
    names = sorted(sim.devices)
    sim.report(names[:1], "Failed")
    sim.tick(advance=1)
    first = sim.status.pause_id
    sim.spec = spec.model_copy(update={"acknowledged_pause": first})
    sim.tick(advance=1)
    assert sim.status.phase == "Progressing"
    sim.tick(advance=1)  # idempotent: the same value again changes nothing
    assert sim.status.phase == "Progressing"
    sim.report(names[1:2], "Failed")
    sim.tick(advance=1)
    assert sim.status.phase == "Paused" and sim.status.pause_id != first


def test_a_wrong_acknowledgement_is_said_once_with_the_current_pause_id() -> None:
    """The trial's acknowledgedPause with a typo passed silently: the rollout stayed Paused
    and nothing said why."""
    spec = make_spec(
        steps=[{"percent": 100, "successThreshold": 100}],
        onFailure="Pause", failureThreshold={"percent": 10, "minDevices": 1},
    )  # fmt: skip
    sim = started(spec, 10)
    names = sorted(sim.devices)
    sim.report(names[:1], "Failed")
    sim.tick(advance=1)
    pause_id = sim.status.pause_id
    assert pause_id is not None
    sim.spec = spec.model_copy(update={"acknowledged_pause": pause_id + "x"})
    sim.tick(advance=1)
    assert sim.status.phase == "Paused"
    kind, reason, message = sim.events[-1]
    assert (kind, reason) == ("Warning", "AcknowledgementIgnored")
    assert f"spec.acknowledgedPause '{pause_id}x' matches no pause" in message
    assert f"the current pause (FailureThreshold) has id '{pause_id}'" in message
    assert sim.status.message == message
    sim.tick(advance=1)  # the same value again: said once
    assert sim.reasons().count("AcknowledgementIgnored") == 1
    # The right id resumes; setting it again later (no pause now) is not a new value.
    sim.spec = spec.model_copy(update={"acknowledged_pause": pause_id})
    sim.tick(advance=1)
    assert sim.status.phase == "Progressing" and sim.reasons()[-1] == "PauseAcknowledged"
    sim.tick(advance=1)
    assert sim.reasons().count("AcknowledgementIgnored") == 1
    # A value for no pause while Progressing says there is none to leave.
    sim.spec = spec.model_copy(update={"acknowledged_pause": "step0-Inconclusive-old"})
    sim.tick(advance=1)
    assert sim.reasons()[-1] == "AcknowledgementIgnored"
    assert (
        "the rollout is Progressing at step 1/1 (100 %) with no automatic pause"
        in (sim.events[-1][2])
    )


def test_after_an_acknowledged_failure_pause_the_step_says_what_it_waits_for() -> None:
    """The trial: after acknowledging a failure pause, a step whose failed devices never
    update waited for progressDeadlineSeconds without saying so."""
    spec = make_spec(
        steps=[{"percent": 100, "successThreshold": 100}], progressDeadlineSeconds=600,
        deviceTimeout="48h", onFailure="Pause",
        failureThreshold={"percent": 10, "minDevices": 1},
    )  # fmt: skip
    sim = started(spec, 10)
    names = sorted(sim.devices)
    sim.report(names[:7])
    sim.report(names[7:], "Failed")
    sim.tick(advance=60)
    assert sim.status.paused_reason == "FailureThreshold"
    sim.spec = spec.model_copy(update={"acknowledged_pause": sim.status.pause_id})
    sim.tick(advance=60)
    sim.tick(advance=100)
    assert sim.status.phase == "Progressing"
    message = sim.status.message or ""
    assert "70.0 % updated of 10 targeted, waiting for 100 %: 3 more device(s) must run v2" in (
        message
    )
    assert "but only 0 are in progress or pending (3 failed, 0 rolled back and 0 timed out" in (
        message
    )
    deadline = format_time(T0 + timedelta(seconds=120 + 600))
    assert f"the step pauses (StepDeadline) at {deadline}, in 500 s" in message


# --- pauses, deadline, abort --------------------------------------------------------------


def test_manual_pause_holds_the_next_step_and_resumes() -> None:
    sim = started(make_spec())
    sim.spec = sim.spec.model_copy(update={"paused": True})
    sim.report(sim.told())
    d = sim.tick()
    assert sim.status.phase == "Paused" and sim.status.paused_reason == "Manual"
    assert sim.status.pause_id is None
    assert d.conditions["Ready"].status == "True"
    assert d.conditions["Progressing"].reason == "ManuallyPaused"
    sim.tick(advance=3600)
    assert sim.status.current_step == 0
    sim.spec = sim.spec.model_copy(update={"paused": False})
    sim.tick()
    assert sim.status.phase == "Progressing" and sim.status.current_step == 1
    assert "Resumed" in sim.reasons()


def test_step_deadline_pauses_and_never_aborts() -> None:
    spec = make_spec(progressDeadlineSeconds=600, deviceTimeout="48h")
    sim = started(spec)
    d = sim.tick(advance=60)
    assert d.requeue == pytest.approx(540)
    sim.tick(advance=541)
    assert sim.status.phase == "Paused" and sim.status.paused_reason == "StepDeadline"
    assert "0.0 % of" in sim.events[-1][2] and "600 s" in sim.events[-1][2]
    sim.tick(advance=86400)
    assert sim.status.phase == "Paused"
    sim.spec = spec.model_copy(update={"acknowledged_pause": sim.status.pause_id})
    sim.tick(advance=1)
    assert sim.status.phase == "Progressing" and sim.status.resumed_at is not None
    # The deadline runs again from the acknowledgement.
    d = sim.tick(advance=1)
    assert d.requeue == pytest.approx(599)


def test_abort_is_terminal() -> None:
    sim = started(make_spec())
    sim.spec = sim.spec.model_copy(update={"abort": True})
    d = sim.tick()
    assert sim.status.phase == "Aborted" and d.conditions["Succeeded"].status == "False"
    assert "spec.abort" in sim.events[-1][2]
    sim.spec = sim.spec.model_copy(update={"abort": False})
    sim.report(sim.told())
    sim.tick()
    assert sim.status.phase == "Aborted" and sim.last is not None and sim.last.events == []


def test_pause_duration_and_manual_approval_wait_after_completion() -> None:
    spec = make_spec(
        steps=[
            {"percent": 10, "pause": {"duration": "10m"}},
            {"percent": 50, "pause": {"manual": True}},
            {"percent": 100},
        ]
    )
    sim = started(spec)
    sim.report(sim.told())
    d = sim.tick()
    assert sim.status.current_step == 0 and d.requeue == pytest.approx(600)
    assert "pause 10m" in (sim.status.message or "")
    sim.tick(advance=600)
    assert sim.status.current_step == 1
    sim.report(sim.told())
    sim.tick()
    sim.tick(advance=3600)
    assert sim.status.current_step == 1 and "spec.approvedStep >= 1" in (sim.status.message or "")
    sim.spec = spec.model_copy(update={"approved_step": 1})
    sim.tick()
    assert sim.status.current_step == 2


def test_bake_time_after_the_last_step() -> None:
    spec = make_spec(steps=[{"percent": 100}], bakeTime="1h")
    sim = started(spec, 10)
    sim.report(sim.told())
    d = sim.tick()
    assert sim.status.phase == "Progressing" and d.requeue == pytest.approx(3600)
    sim.tick(advance=3600)
    assert sim.status.phase == "Succeeded"


# --- analysis ---------------------------------------------------------------------------------


def _analysis_spec(*metrics: dict[str, Any], **extra: Any) -> FleetRolloutSpec:
    return make_spec(
        steps=[{"percent": 10, "analysis": True}, {"percent": 100}],
        analysis={"metrics": list(metrics), "interval": "1m", "inconclusiveLimit": 2},
        **extra,
    )


def _complete_step(sim: Sim) -> None:
    sim.report(sim.told())
    sim.tick()
    assert sim.status.step_completed_at is not None


def test_analysis_starts_after_the_step_completes_and_passes_move_on() -> None:
    sim = started(_analysis_spec(metric(count=2, initialDelay="2m")))
    assert due_metrics(sim.spec, sim.status, sim.now) == []
    _complete_step(sim)
    assert due_metrics(sim.spec, sim.status, sim.now) == []
    d = sim.tick()
    assert d.requeue == pytest.approx(120)
    later = sim.now + timedelta(minutes=2)
    assert [m.name for m in due_metrics(sim.spec, sim.status, later)] == ["acc"]
    sim.tick([measure("acc", "Pass", later)], advance=120)
    assert sim.status.current_step == 0 and sim.status.metrics[0].passes == 1
    assert due_metrics(sim.spec, sim.status, sim.now) == []
    nxt = sim.now + timedelta(minutes=1)
    sim.tick([measure("acc", "Pass", nxt)], advance=60)
    assert sim.status.current_step == 1
    assert (
        sim.status.analysis_started_at is None and due_metrics(sim.spec, sim.status, sim.now) == []
    )
    assert [r.verdict for r in sim.status.analysis_results] == ["Pass", "Pass"]
    assert "AnalysisPassed" in sim.reasons()


def test_analysis_fail_rolls_back_after_its_failure_limit() -> None:
    sim = started(_analysis_spec(metric(failureLimit=1)))
    _complete_step(sim)
    sim.tick([measure("acc", "Fail", sim.now)])
    assert sim.status.phase == "Progressing" and sim.status.metrics[0].failures == 1
    sim.tick([measure("acc", "Fail", sim.now + timedelta(minutes=1))], advance=60)
    assert sim.status.phase == "RolledBack"
    assert "acc failed 2 time(s), more than failureLimit 1" in sim.events[-1][2]


def test_inconclusive_pauses_and_never_passes_or_rolls_back() -> None:
    sim = started(_analysis_spec(metric(), metric(name="lat", dryRun=True)))
    _complete_step(sim)
    for i in range(3):
        sim.tick(
            [measure("acc", "Inconclusive", sim.now, None), measure("lat", "Fail", sim.now)],
            advance=60 if i else 0,
        )
    assert sim.status.phase == "Paused" and sim.status.paused_reason == "Inconclusive"
    assert "Inconclusive 3 times in a row, more than inconclusiveLimit 2" in (
        sim.status.message or ""
    )
    # The dry-run metric failed three times and gated nothing.
    lat = next(m for m in sim.status.metrics if m.name == "lat")
    assert lat.failures == 3 and lat.dry_run
    # Analysis keeps running while paused; more Inconclusive never becomes a verdict.
    assert due_metrics(sim.spec, sim.status, sim.now + timedelta(minutes=1))
    for _ in range(5):
        sim.tick([measure("acc", "Inconclusive", sim.now, None)], advance=60)
    assert sim.status.phase == "Paused" and sim.status.current_step == 0
    assert "RolledBack" not in sim.reasons()
    # Acknowledged: tallies start over, passes move on.
    sim.spec = sim.spec.model_copy(update={"acknowledged_pause": sim.status.pause_id})
    sim.tick([measure("acc", "Pass", sim.now)], advance=60)
    assert sim.status.phase == "Progressing" and sim.status.current_step == 1


def test_errors_pause_after_the_error_limit_and_are_never_a_verdict() -> None:
    sim = started(_analysis_spec(metric(errorLimit=1)))
    _complete_step(sim)
    sim.tick([measure("acc", "Error", sim.now, None)])
    assert sim.status.phase == "Progressing" and sim.status.current_step == 0
    sim.tick([measure("acc", "Error", sim.now, None)], advance=60)
    assert sim.status.phase == "Paused" and sim.status.paused_reason == "AnalysisError"
    assert "could not be measured 2 times in a row (Error)" in (sim.status.message or "")
    assert sim.last is not None
    assert sim.last.conditions["Progressing"].reason == "AnalysisError"
    assert sim.last.conditions["Ready"].status == "False"
    assert sim.status.pause_id and "AnalysisError" in sim.status.pause_id
    # Errors go on while paused: still no verdict, no rollback.
    for _ in range(3):
        sim.tick([measure("acc", "Error", sim.now, None)], advance=60)
    assert sim.status.phase == "Paused" and sim.status.current_step == 0
    assert "RolledBack" not in sim.reasons()
    # Acknowledged: the tallies start over and a pass moves on.
    sim.spec = sim.spec.model_copy(update={"acknowledged_pause": sim.status.pause_id})
    sim.tick([measure("acc", "Pass", sim.now)], advance=60)
    assert sim.status.phase == "Progressing" and sim.status.current_step == 1


def test_one_pass_resets_the_consecutive_inconclusive_count() -> None:
    sim = started(_analysis_spec(metric(count=3)))
    _complete_step(sim)
    for verdict in ("Inconclusive", "Inconclusive", "Pass", "Inconclusive", "Inconclusive"):
        sim.tick([measure("acc", verdict, sim.now)], advance=60)
    assert sim.status.phase == "Progressing"
    state = sim.status.metrics[0]
    assert (state.passes, state.inconclusive) == (1, 2)


def test_bake_keeps_analysing_after_the_last_step() -> None:
    spec = make_spec(
        steps=[{"percent": 100}], bakeTime="5m", analysis={"metrics": [metric()]},
    )  # fmt: skip
    sim = started(spec, 10)
    _complete_step(sim)
    assert due_metrics(sim.spec, sim.status, sim.now)
    sim.tick([measure("acc", "Pass", sim.now)], advance=300)
    assert sim.status.phase == "Succeeded"
    spec_fail = spec.model_copy()
    sim = started(spec_fail, 10)
    _complete_step(sim)
    sim.tick([measure("acc", "Fail", sim.now)], advance=60)
    assert sim.status.phase == "RolledBack"


@pytest.mark.parametrize(
    ("fields", "canary", "stable", "samples", "verdict", "text"),
    [
        ({}, 0.95, None, 500, "Pass", "value 0.95 >= 0.9 with 500"),
        ({}, 0.85, None, 500, "Fail", "value 0.85 < 0.9"),
        ({"op": "<=", "threshold": 0.2}, 0.3, None, 500, "Fail", "0.3 > 0.2"),
        ({}, 0.95, None, 99, "Inconclusive", "99 canary inferences"),
        ({}, None, None, 0, "Inconclusive", "at least twice Prometheus' scrape interval"),
        ({}, None, None, 500, "Inconclusive", "no value"),
        ({}, math.nan, None, 500, "Inconclusive", "NaN"),
        ({"baseline": "VsStable", "threshold": -0.02}, 0.90, 0.91, 500, "Pass", "stable 0.91"),
        ({"baseline": "VsStable", "threshold": -0.02}, 0.85, 0.91, 500, "Fail", "-0.06 < -0.02"),
        ({"baseline": "VsStable", "threshold": -0.02}, 0.9, None, 500, "Inconclusive", "stable"),
        ({"baseline": "VsStable", "threshold": -0.02}, 0.9, math.nan, 500, "Inconclusive", "no"),
    ],
)
def test_evaluate_value(
    fields: dict[str, Any],
    canary: float | None,
    stable: float | None,
    samples: int,
    verdict: str,
    text: str,
) -> None:
    m = AnalysisMetric.model_validate(metric(**fields))
    got, _, message = evaluate_value(m, canary, stable, samples)
    assert got == verdict and text in message, message


# --- overlap, classify, views -----------------------------------------------------------------


def test_a_newer_rollout_of_the_model_takes_over_and_the_older_reports_the_overlap() -> None:
    newer = RolloutView(
        name="newer", uid="uid-n", created="2026-05-01T00:00:00Z", model="m", version=3,
        phase="Progressing", percent=10,
        selector=make_spec(selector={"matchLabels": {"site": "lab"}}).selector,
    )  # fmt: skip
    sim = Sim(make_spec(steps=[{"percent": 100}]), 0, others=[newer])
    sim.devices = {f"l{i}": device(f"l{i}", labels={"site": "lab"}) for i in range(5)}
    sim.devices.update({f"p{i}": device(f"p{i}") for i in range(5)})
    sim.tick()
    d = sim.tick()
    counts = sim.status.counts
    assert counts is not None and (counts.targeted, counts.overlapping) == (5, 5)
    assert d.conditions["Overlapping"].status == "True"
    assert "newer" in d.conditions["Overlapping"].message
    assert {sim.desired(f"l{i}") for i in range(5)} <= {3, 1}


def test_classify() -> None:
    timeout = timedelta(hours=1)
    told = T0 - timedelta(minutes=10)
    assert classify(device("a", version=2), 2, told, T0, timeout, (PI,))[0] == "updated"
    committed = device("a", version=1, target=2, phase="Committed", at=T0)
    assert classify(committed, 2, told, T0, timeout, (PI,)) == ("updated", T0)
    for phase, state in (
        ("Failed", "failed"),
        ("RolledBack", "rolledBack"),
        ("TimedOut", "timedOut"),
    ):
        assert (
            classify(device("a", target=2, phase=phase, at=T0), 2, told, T0, timeout, (PI,))[0]
            == state
        )
    # An outcome of another version is no outcome of this one.
    assert (
        classify(device("a", target=3, phase="Failed"), 2, told, T0, timeout, (PI,))[0] == "pending"
    )
    assert (
        classify(device("a", target=2, phase="Installing"), 2, told, T0, timeout, (PI,))[0]
        == "inProgress"
    )
    late = T0 + timedelta(hours=2)
    assert classify(device("a"), 2, told, late, timeout, (PI,)) == ("timedOut", told + timeout)
    assert (
        classify(device("a", target_type="mcu"), 2, told, T0, timeout, (PI,))[0] == "incompatible"
    )
    # Without the model's targets, compatibility is not judged.
    assert classify(device("a", target_type="mcu"), 2, told, T0, timeout, ())[0] == "pending"


def test_a_device_retrying_a_failed_download_is_in_progress_until_its_last_attempt() -> None:
    timeout = timedelta(hours=1)
    told = T0 - timedelta(minutes=10)

    def failed(attempt: int, reason: str) -> FleetDevice:
        return replace(
            device("a", target=2, phase="Failed", at=T0),
            update_attempt=attempt,
            update_reason=reason,
        )

    def state(d: FleetDevice, limit: int, now: datetime = T0) -> str:
        return classify(d, 2, told, now, timeout, (PI,), limit)[0]

    assert state(failed(1, "DownloadFailed"), limit=2) == "inProgress"
    assert state(failed(2, "Interrupted"), limit=2) == "inProgress"
    assert state(failed(3, "DownloadFailed"), limit=2) == "failed"  # its last attempt
    assert state(failed(1, "DownloadFailed"), limit=0) == "failed"  # no retries
    assert state(failed(1, "HashMismatch"), limit=2) == "failed"  # no retry cures it
    # Retries count within the device timeout.
    late = T0 + timedelta(hours=2)
    assert state(failed(1, "DownloadFailed"), limit=2, now=late) == "timedOut"


def test_the_rollout_counts_and_says_how_many_devices_are_retrying() -> None:
    sim = started(make_spec(steps=[{"percent": 100}]), 10)
    told = sim.told()
    sim.report(told[:3], "Failed")
    for name in told[:3]:
        sim.devices[name] = replace(sim.devices[name], update_reason="DownloadFailed")
    sim.tick()
    counts = sim.status.counts
    assert counts is not None and (counts.in_progress, counts.retrying, counts.failed) == (3, 3, 0)
    assert "3 in progress (3 retrying a failed download)" in (sim.status.message or "")


def test_the_retries_reach_the_device_from_its_rollout() -> None:
    body = {
        "metadata": {"name": "r", "uid": "u", "creationTimestamp": "2026-05-01T00:00:00Z"},
        "spec": {
            "modelRef": {"name": "m"},
            "version": 2,
            "steps": [{"percent": 100}],
            "deviceRetries": {"limit": 4, "backoffSeconds": 7},
        },
        "status": {"phase": "Progressing", "currentStep": 0},
    }
    view = rollout_view(body)
    assert view is not None and (view.retry_limit, view.retry_backoff_seconds) == (4, 7)
    chosen = desired_version("d", dict(MODEL_LABEL), {"m": 1}, [view])
    assert chosen is not None and (chosen.version, chosen.retries) == (2, (4, 7))
    defaults = rollout_view({**body, "spec": {**body["spec"], "deviceRetries": None}})
    assert defaults is not None and (defaults.retry_limit, defaults.retry_backoff_seconds) == (
        2,
        30,
    )
    # A version no rollout chose carries none: the agent's defaults apply.
    baseline = desired_version("d", dict(MODEL_LABEL), {"m": 1}, [])
    assert baseline is not None and baseline.retries is None


def test_the_controller_and_the_gateway_see_a_rollout_alike() -> None:
    """own_view (controller) and rollout_view (gateway) build the same RolloutView of one
    object: a field one of them forgets would make them disagree on who is told what."""
    spec = make_spec(
        selector={"matchLabels": {"site": "a"}},
        steps=[{"percent": 0, "selector": {"matchLabels": {"ring": "lab"}}}, {"percent": 100}],
        deviceRetries={"limit": 5, "backoffSeconds": 9},
    )
    status = FleetRolloutStatus.model_validate(
        {"phase": "Progressing", "currentStep": 1, "currentPercent": 100, "stableVersion": 1,
         "admittedBuckets": 4000}
    )  # fmt: skip
    body = {
        "metadata": {"name": "r", "uid": UID, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
        "status": status.model_dump(by_alias=True, exclude_none=True, mode="json"),
    }
    assert rollout_view(body) == own_view("r", UID, "2026-01-01T00:00:00Z", spec, status)


def test_fleet_device_from_an_object() -> None:
    body = {
        "metadata": {"name": "cam", "labels": {"site": "a"}},
        "spec": {"targetType": "linux", "approval": "Approved", "reportIntervalSeconds": 5},
        "status": {
            "version": 2,
            "lastSeen": "2026-06-01T12:00:00Z",
            "update": {"targetVersion": 3, "phase": "Failed", "time": "2026-06-01T11:00:00Z"},
        },
    }
    d = fleet_device(body)
    assert (d.name, d.eligible, d.version, d.update_target, d.update_phase) == (
        "cam", True, 2, 3, "Failed",
    )  # fmt: skip
    assert d.report_interval_seconds == 5 and d.labels == {"site": "a"}
    bare = fleet_device({"metadata": {"name": "x"}, "spec": {"decommissioned": True}})
    assert not bare.eligible and bare.version is None and bare.update_phase is None


def test_a_status_written_elsewhere_is_adopted() -> None:
    """A rollout whose status someone set to Progressing at step 0 (no start time, no
    records, no stable version) is carried on from there, not crashed on or restarted."""
    sim = Sim(make_spec(steps=[{"percent": 100}]), 4)
    sim.status = FleetRolloutStatus(phase="Progressing", current_step=0, current_percent=100)
    d = sim.tick()
    assert sim.status.step_started_at == format_time(T0) and sim.status.stable_version == 1
    assert [r.step for r in sim.status.steps] == [0] and d.requeue == pytest.approx(3600)
    sim.report(sim.told())
    sim.tick()
    assert sim.status.phase == "Succeeded"


def test_requeue_never_busy_loops() -> None:
    spec = make_spec(
        steps=[{"percent": 100, "analysis": True}],
        analysis={"metrics": [metric()], "interval": "1s"},
    )  # fmt: skip
    # The API refuses intervals under 1 s now; one stored before that still must not spin.
    assert spec.analysis is not None
    spec.analysis.interval = "100ms"
    sim = started(spec, 2)
    assert sim.last is not None and sim.last.requeue == 0.5
    _complete_step(sim)
    d = sim.tick([measure("acc", "Inconclusive", sim.now, None)])
    assert d.requeue is not None and d.requeue >= 0.5


def test_max_updates_per_minute_admits_the_cohort_gradually() -> None:
    """1000 devices at 100 per minute: a 50 % step is admitted over about 5 minutes, the
    gateway tells exactly the admitted devices, and the step completes only once all of
    its cohort is admitted."""
    spec = make_spec(steps=[{"percent": 50}, {"percent": 100}], maxUpdatesPerMinute=100)
    sim = started(spec, 1000)
    assert sim.status.admitted_buckets == 0 and sim.status.admission_rate == pytest.approx(1000)
    assert "about 5.0 min" in sim.events[-1][2]
    assert sim.told() == []
    told: list[int] = []
    for _ in range(5):
        sim.report(sim.told())  # every admitted device commits at once
        d = sim.tick(advance=60)
        told.append(len(sim.told()))
        counts = sim.status.counts
        assert counts is not None
        # Counted with the admission in force before this pass's raise, like the gateway.
        assert d.requeue is not None and d.requeue <= 60
    # Each minute about 100 more devices (10 % of the buckets) are told; never all at once.
    assert all(60 <= n <= 140 for n in told), told
    assert sim.status.admitted_buckets == 5000 and sim.status.current_step == 0
    sim.report(sim.told())
    sim.tick(advance=1)
    # Once its whole cohort is admitted and updated the step completes; the next one ramps
    # from where this one ended.
    assert sim.status.current_step == 1, sim.status.message
    assert sim.status.admitted_buckets == 5000 and "about 5.0 min" in sim.events[-1][2]


def test_a_pause_freezes_the_ramp() -> None:
    spec = make_spec(steps=[{"percent": 100}], maxUpdatesPerMinute=100)
    sim = started(spec, 1000)
    sim.tick(advance=60)
    admitted = sim.status.admitted_buckets
    assert admitted == 1000
    sim.spec = spec.model_copy(update={"paused": True})
    for _ in range(10):
        sim.tick(advance=60)
    assert sim.status.phase == "Paused" and sim.status.admitted_buckets == admitted
    sim.spec = spec.model_copy(update={"paused": False})
    sim.tick(advance=1)
    sim.tick(advance=60)
    # One more minute of admission (plus the second of the resume), not ten.
    assert sim.status.admitted_buckets is not None
    assert admitted + 1000 <= sim.status.admitted_buckets <= admitted + 1100


def test_ramped_devices_time_out_from_when_they_were_admitted() -> None:
    spec = make_spec(steps=[{"percent": 100}], maxUpdatesPerMinute=100, deviceTimeout="10m")
    sim = started(spec, 1000)
    for _ in range(11):
        sim.tick(advance=60)
    # After 11 minutes only the first minute's devices have been silent for 10.
    counts = sim.status.counts
    assert counts is not None and 50 <= counts.timed_out <= 150, counts


# --- step selectors -------------------------------------------------------------------------


def test_a_step_selector_moves_chosen_devices_first_and_the_gateway_agrees() -> None:
    """A lab step (percent 0 with a selector) moves exactly the lab devices; the next
    steps add cohort buckets and keep the lab; the gateway hands out the same devices."""
    spec = make_spec(
        steps=[
            {"percent": 0, "selector": {"matchLabels": {"ring": "lab"}}},
            {"percent": 10},
            {"percent": 10, "selector": {"matchExpressions": [
                {"key": "site-canary", "operator": "Exists"}]}},
            {"percent": 100},
        ]
    )  # fmt: skip
    sim = Sim(spec, 100)
    lab = {"d003", "d050", "d097"}
    firsts = {"d010", "d020"}
    for name in lab:
        sim.devices[name] = replace(sim.devices[name], labels={**MODEL_LABEL, "ring": "lab"})
    for name in firsts:
        sim.devices[name] = replace(sim.devices[name], labels={**MODEL_LABEL, "site-canary": "yes"})
    sim.tick()
    sim.tick()  # the first pass starts the step, the next counts it
    assert sim.status.current_step == 0 and sim.status.current_percent == 0
    assert set(sim.told()) == lab
    assert sim.status.counts is not None and sim.status.counts.targeted == 3
    assert "plus the devices its selector chooses (ring=lab)" in sim.events[1][2]
    sim.report(sim.told())
    sim.tick(advance=30)
    assert sim.status.current_step == 1
    step1 = {n for n in sim.devices if sim.desired(n) == 2}
    assert lab <= step1 and len(step1 - lab) < 30
    sim.report(sim.told())
    sim.tick(advance=30)
    assert sim.status.current_step == 2
    step2 = {n for n in sim.devices if sim.desired(n) == 2}
    assert step2 == step1 | firsts
    sim.tick()
    assert sim.status.counts is not None and sim.status.counts.targeted == len(step2)
    sim.report(sim.told())
    sim.tick(advance=30)
    sim.report(sim.told())
    sim.tick(advance=30)
    assert sim.status.phase == "Succeeded", sim.status.message


def test_chosen_devices_time_out_from_their_step_and_stay_moved_after_abort() -> None:
    spec = make_spec(
        steps=[{"percent": 0, "selector": {"matchLabels": {"ring": "lab"}}}, {"percent": 100}],
        deviceTimeout="10m",
        onFailure="Abort",
        failureThreshold={"percent": 50, "minDevices": 1},
    )
    sim = Sim(spec, 20)
    sim.devices["d001"] = replace(sim.devices["d001"], labels={**MODEL_LABEL, "ring": "lab"})
    sim.tick()
    assert sim.told() == ["d001"]
    sim.tick(advance=10)
    sim.tick(advance=601)  # silent for deviceTimeout: TimedOut counts, 1 of 1 > 50 %: abort
    assert sim.status.counts is not None and sim.status.counts.timed_out == 1
    assert sim.status.phase == "Aborted"
    # Aborted freezes the step: the lab device keeps the version, nobody else is told.
    assert [n for n in sim.devices if sim.desired(n) == 2] == ["d001"]


def test_an_empty_step_selector_chooses_no_device() -> None:
    spec = make_spec(steps=[{"percent": 10, "selector": {}}, {"percent": 100}])
    sim = started(spec, 100)
    sim.tick()
    cohort = {n for n in sim.devices if in_cohort(UID, n, 10)}
    assert {n for n in sim.devices if sim.desired(n) == 2} == cohort
    assert sim.status.counts is not None and sim.status.counts.targeted == len(cohort)


@pytest.mark.parametrize(
    ("steps", "ok"),
    [
        ([{"percent": 0, "selector": {"matchLabels": {"a": "b"}}}, {"percent": 100}], True),
        ([{"percent": 10}, {"percent": 10, "selector": {}}, {"percent": 100}], True),
        ([{"percent": 0}, {"percent": 100}], False),
        ([{"percent": 10}, {"percent": 10}, {"percent": 100}], False),
        ([{"percent": 50}, {"percent": 10, "selector": {}}, {"percent": 100}], False),
    ],
)
def test_step_percent_and_selector_rules(steps: list[dict[str, Any]], ok: bool) -> None:
    if ok:
        make_spec(steps=steps)
    else:
        with pytest.raises(ValueError, match="percent"):
            make_spec(steps=steps)


def test_reports_from_before_the_rollout_began_are_not_its_failures() -> None:
    """An earlier rollout of the same version left Failed reports behind (its devices gave
    up during a storage outage). A new rollout of that version must not pause on them at
    once: those devices are pending (the agent takes the new rollout as a new update) and
    only what they report from now on counts (second rollout trial, bug 2)."""
    sim = Sim(make_spec(steps=[{"percent": 100}]), 10)
    earlier = T0 - timedelta(minutes=5)
    for name in list(sim.devices)[:5]:
        sim.devices[name] = device(name, phase="Failed", target=2, at=earlier)
    sim.tick()
    sim.tick(advance=5)
    counts = sim.status.counts
    assert counts is not None
    assert (counts.failed, counts.pending + counts.in_progress) == (0, 10)
    assert sim.status.phase == "Progressing"
    # The same devices failing again under this rollout count.
    for name in list(sim.devices)[:5]:
        sim.devices[name] = device(name, phase="Failed", target=2, at=sim.now)
    sim.tick(advance=5)
    assert sim.status.counts is not None and sim.status.counts.failed == 5
