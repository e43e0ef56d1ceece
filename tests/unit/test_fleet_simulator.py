"""The fleet simulator's pure parts: injection specs, which devices an injection hits, the
input streams (noise, data drift, concept drift) and the simulated network."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from edgeops.device.injections import Injections
from edgeops.device.simulator import (
    ConceptDrift,
    DataDrift,
    FailingVersion,
    Offline,
    Rows,
    SimTransport,
    Simulation,
    SimulationConfig,
    SpecError,
    load_rows,
    share_hit,
)


def test_injection_specs_parse_and_refuse_what_they_cannot_read() -> None:
    assert DataDrift.parse("acc_x_mean=+2.5@60,0.3") == DataDrift("acc_x_mean", 60, 0.3, 2.5)
    assert DataDrift.parse("t=-1@0") == DataDrift("t", 0, 1.0, shift=-1.0)
    assert DataDrift.parse("t=*1.5@10,0.5") == DataDrift("t", 10, 0.5, scale=1.5)
    assert ConceptDrift.parse("eu@120") == ConceptDrift("eu", 120)
    assert FailingVersion.parse("3:0.5") == FailingVersion(3, 0.5)
    assert Offline.parse("0.1") == Offline(0.1)
    assert Offline.parse("0.1@30+60") == Offline(0.1, 30, 60)
    for bad in ("t=2@1", "t=+2", "t=+2@1,1.5"):
        with pytest.raises(SpecError, match="--drift"):
            DataDrift.parse(bad)
    with pytest.raises(SpecError, match="--fail-version"):
        Injections.parse(fail_versions=["v3:0.5"])
    with pytest.raises(SpecError, match="share"):
        Offline.parse("2")


def test_an_injection_hits_a_stable_share_of_devices() -> None:
    names = [f"sim-{i:04d}" for i in range(2000)]
    hit = [n for n in names if share_hit("fail:2", n, 0.25)]
    assert 0.22 < len(hit) / len(names) < 0.28
    assert hit == [n for n in names if share_hit("fail:2", n, 0.25)]  # pure
    # Another injection picks other devices, not the same quarter.
    assert set(hit) != {n for n in names if share_hit("offline", n, 0.25)}
    assert not any(share_hit("x", n, 0.0) for n in names)
    assert all(share_hit("x", n, 1.0) for n in names)
    off = Offline(1.0, at=10, duration=5)
    assert [off.applies("d", t) for t in (9, 10, 14.9, 15)] == [False, True, True, False]


def _rows() -> Rows:
    records = [{"a": float(i), "b": 10.0 + i, "y": "up" if i % 2 else "down"} for i in range(8)]
    return Rows.of(["a", "b"], records, "y")


def _simulation(tmp_path: Path, devices: int = 2, **kw: object) -> Simulation:
    config = SimulationConfig(
        gateway="http://127.0.0.1:9", namespace="ns", devices=devices, token="t", trusted_keys={},
        rows=_rows(), state_root=tmp_path, noise=0.0, regions=("eu",), **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    return Simulation(config)


def test_streams_replay_rows_with_drift_and_concept_drift_as_scheduled(tmp_path: Path) -> None:
    import random

    sim = _simulation(
        tmp_path, drift=[DataDrift("b", at=0, share=1.0, shift=100)],
        concept_drift=[ConceptDrift("eu", at=0)],
    )  # fmt: skip
    rows = list(itertools.islice(sim.stream("sim-0000", "eu", random.Random(1)), 8))
    by_a = {int(r.features["a"]): r for r in rows}
    assert sorted(by_a) == list(range(8))  # every row once per pass, in some order
    for a, row in by_a.items():
        assert row.features["b"] == pytest.approx(110.0 + a)  # shifted
        assert np.allclose(row.vector, [a, 110.0 + a])
        # Concept drift: each class reported as the next ("down" -> "up" -> "down").
        assert row.label == ("down" if a % 2 else "up")
    other = list(itertools.islice(sim.stream("sim-0001", "us", random.Random(1)), 8))
    assert {r.label for r in other if int(r.features["a"]) % 2} == {"up"}  # not its region


def test_builtin_rows_are_basic_motions() -> None:
    rows = load_rows("builtin:basic-motions")
    assert rows.values.shape == (80, 24) and rows.labels is not None
    assert sorted(set(rows.labels)) == ["Badminton", "Running", "Standing", "Walking"]
    with pytest.raises(SpecError):
        load_rows("rows.parquet")


def test_a_simulated_outage_and_latency_apply_per_device() -> None:
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(200)

    inner = httpx.MockTransport(answer)
    down = {"now": True}
    transport = SimTransport(inner, delay_seconds=0.01, offline=lambda: down["now"])

    async def main() -> None:
        async with httpx.AsyncClient(transport=transport) as http:
            with pytest.raises(httpx.ConnectError):
                await http.get("http://gw/x")
            down["now"] = False
            assert (await http.get("http://gw/y")).status_code == 200
        # The shared pool outlives one device's client.
        async with httpx.AsyncClient(transport=inner) as again:
            assert (await again.get("http://gw/z")).status_code == 200

    asyncio.run(main())
    assert calls == ["http://gw/y", "http://gw/z"]


def test_devices_get_the_example_hardware_or_the_given_mix(tmp_path: Path) -> None:
    default = _simulation(tmp_path / "a", mcu_share=0.5)
    by_type = {(v.target_type, v.hardware) for v in default.views}
    assert by_type <= {("linux", "raspberry-pi-4"), ("mcu", "esp32-s3")}
    assert {a.config.hardware for a in default.agents} == {v.hardware for v in default.views}
    mixed = _simulation(tmp_path / "b", devices=40, hardware=["pi4", "jetson"], mcu_hardware=[])
    assert {v.hardware for v in mixed.views} == {"pi4", "jetson"}
    again = _simulation(tmp_path / "c", devices=40, hardware=["pi4", "jetson"])
    assert [v.hardware for v in again.views] == [v.hardware for v in mixed.views]  # stable


def test_why_devices_wait_is_grouped_by_reason_with_a_hint(tmp_path: Path) -> None:
    from rich.console import Console

    from edgeops.device.client import GatewayError, RetryableError
    from edgeops.device.simulator import progress_table

    sim = _simulation(tmp_path, devices=5, mcu_share=0.5)
    refusal = GatewayError(404, "NoTarget", "motion-classifier has no target for this device")
    for view in sim.views[:4]:
        view.phase, view.problem = "Waiting", refusal
    sim.views[4].problem = RetryableError(0, "GatewayUnreachable", "ConnectError: refused")
    [no_target, unreachable] = sim.problems()
    assert (no_target.reason, no_target.status, no_target.devices) == ("NoTarget", 404, 4)
    assert no_target.linux + no_target.mcu == 4
    assert "--hardware" in no_target.hint and sim.views[0].name in no_target.example
    assert "hardware raspberry-pi-4" in no_target.example or "esp32-s3" in no_target.example
    assert unreachable.reason == "GatewayUnreachable" and unreachable.devices == 1
    console = Console(width=200, record=True)
    console.print(progress_table(sim, final=True))
    text = console.export_text()
    assert "NoTarget (404) on 4 devices" in text and "has no target for this device" in text
    assert "final: 5 devices" in text


def test_delayed_labels_arrive_later_by_row_key(tmp_path: Path) -> None:
    import random

    sim = _simulation(tmp_path, label_delay_seconds=30.0)
    stream = sim.stream("sim-0000", "eu", random.Random(1))
    rows = list(itertools.islice(stream, 4))
    assert all(r.label is None and r.key for r in rows)
    assert list(sim.due_labels("sim-0000")) == []  # not due yet
    sim.started -= 31  # 31 s later
    due = list(sim.due_labels("sim-0000"))
    assert [k for k, _ in due] == [r.key for r in rows]
    assert {label for _, label in due} <= {"up", "down"}
    assert list(sim.due_labels("sim-0000")) == []  # delivered once


def test_injections_start_and_stop_on_command(tmp_path: Path) -> None:
    live = Injections.parse(drift=["b=+100@0,1"])
    assert [a.id for a in live.items] == ["drift-1"]
    started = live.start("concept-drift", "eu", now=50)
    assert started.injection == ConceptDrift("eu", 50)
    assert live.concept_drift[0].applies("eu", 60) and not live.concept_drift[0].applies("us", 60)
    live.start("offline", "0.5+20", now=50)
    assert live.offline == [Offline(0.5, 50, 20)]
    live.start("slow-network", "200", now=10)
    assert live.network_delay(9) == 0 and live.network_delay(10) == pytest.approx(0.2)
    live.start("drift", "a=*2,0.5", now=70)
    assert live.drift[1] == DataDrift("a", 70, 0.5, scale=2.0)
    [ended] = live.stop("drift-1", now=80)
    assert ended.injection.until == 80
    assert live.drift[0].applies("sim-0000", 79) and not live.drift[0].applies("sim-0000", 80)
    with pytest.raises(SpecError, match="no active injection"):
        live.stop("drift-1", now=90)
    with pytest.raises(SpecError, match="--drift"):
        live.start("drift", "a=2", now=1)
    assert {a.id for a in live.stop("all", now=100)} == {"concept-drift-2", "slow-network-4",
                                                          "drift-5"}  # fmt: skip
    # Scheduled drift on a stream follows the live set: stopped drift no longer shifts.
    sim = _simulation(tmp_path, drift=[DataDrift("b", at=0, share=1.0, shift=100)])
    [drift] = sim.injections.items
    sim.injections.stop(drift.id, now=0)
    import random

    rows = list(itertools.islice(sim.stream("sim-0000", "eu", random.Random(1)), 8))
    assert all(r.features["b"] < 100 for r in rows)


def test_the_control_file_carries_commands_and_answers(tmp_path: Path) -> None:
    from edgeops.device.control import Command, ControlFile, read_state, send, wait_for_answer

    send(tmp_path, Command("old", kind="drift", spec="a=+1"))  # before the simulator ran
    control = ControlFile(tmp_path)
    live = Injections()
    send(tmp_path, Command("c1", kind="drift", spec="a=+1,0.5"))
    send(tmp_path, Command("c2", kind="drift", spec="a=1"))
    (tmp_path / "control.jsonl").open("a").write('{"id": "c3", "kind": "volcano"}\nnot json\n')
    send(tmp_path, Command("c4", stop="drift-1"))
    assert control.apply(live, now=12.0) == 5
    control.publish(live, now=12.0)
    state = read_state(tmp_path)
    assert state is not None
    answers = state["answers"]
    assert answers["c1"] == {
        "applied": True, "message": "drift-1: drift a=+1,0.5 from 12 s (now 12 s)"
    }  # fmt: skip
    assert not answers["c2"]["applied"] and "--drift" in answers["c2"]["message"]
    assert "old" not in answers and "c3" not in answers  # no answer to what it cannot read
    assert answers["c4"] == {"applied": True, "message": "stopped drift-1 at 12 s"}
    assert [(i["id"], i["until"], i["active"]) for i in state["injections"]] == [
        ("drift-1", 12.0, False)
    ]
    assert wait_for_answer(tmp_path, "c1", 0) == answers["c1"]
    assert wait_for_answer(tmp_path, "nope", 0) is None
    # A half-written line waits for its end.
    (tmp_path / "control.jsonl").open("a").write('{"id": "c5", "kind": "offline", ')
    assert control.apply(live, now=13) == 0
    (tmp_path / "control.jsonl").open("a").write('"spec": "0.2"}\n')
    assert control.apply(live, now=14) == 1 and live.offline == [Offline(0.2, 14)]


def test_edgeops_fleet_inject_starts_lists_and_stops_through_a_running_simulator(
    tmp_path: Path,
) -> None:
    import threading

    from typer.testing import CliRunner

    from edgeops import cli
    from edgeops.device.control import ControlFile

    runner = CliRunner()
    # No simulator with this state directory: no answer, exit 1, and it says why.
    alone = runner.invoke(cli.app, ["fleet", "inject", "--state-dir", str(tmp_path),
                                    "--drift", "a=+1", "--wait", "0.3"])  # fmt: skip
    assert alone.exit_code == 1 and "no answer within 0.3 s" in alone.output

    live, stop = Injections(), threading.Event()
    control = ControlFile(tmp_path)

    def simulator() -> None:  # the simulator's control loop, at a fixed "now"
        while not stop.is_set():
            if control.apply(live, now=42.0):
                control.publish(live, now=42.0)
            stop.wait(0.05)

    thread = threading.Thread(target=simulator, daemon=True)
    thread.start()
    try:
        base = ["fleet", "inject", "--state-dir", str(tmp_path)]
        started = runner.invoke(cli.app, [*base, "--drift", "a=*2,0.5", "--concept-drift", "eu"])
        assert started.exit_code == 0, started.output
        assert "drift-1: drift a=*2,0.5 from 42 s" in started.output
        assert "concept-drift-2: concept-drift eu from 42 s" in started.output
        refused = runner.invoke(cli.app, [*base, "--fail-version", "x"])
        assert refused.exit_code == 1 and "refused" in refused.output
        listed = runner.invoke(cli.app, [*base, "--stop", "drift-1", "--list"])
        assert listed.exit_code == 0, listed.output
        assert "stopped drift-1 at 42 s" in listed.output
        assert "concept-drift-2\tconcept-drift\teu\tfrom 42 s\tactive" in listed.output
        assert live.drift[0].until == 42.0 and live.concept_drift[0].until is None
        as_json = runner.invoke(cli.app, [*base, "--list", "-o", "json"])
        assert as_json.exit_code == 0, as_json.output
        listed_doc = {item["id"]: item for item in json.loads(as_json.stdout)}
        assert listed_doc["concept-drift-2"]["active"] is True
        assert listed_doc["drift-1"]["until"] == 42.0
    finally:
        stop.set()
        thread.join(5)
