"""The agent's loop against the in-process gateway: enrollment with its own key, install of
the desired version, inference on its stream into telemetry and samples, status; a terminal
report that could not be sent is delivered after the gateway comes back, after a restart."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgeops.api.wire import DesiredSampling, ProfileFeature, StatusReport, TelemetryReport
from edgeops.device.agent import Agent, AgentConfig, parse_trusted_keys
from edgeops.device.client import GatewayError, RetryableError
from edgeops.device.health import check_artifact
from edgeops.device.runtime import InputRow
from edgeops.device.slots import SlotStore
from edgeops.drift.histograms import bin_counts
from edgeops.signing import generate_key
from tests.unit.device_support import (
    DEVICE,
    FEATURES,
    NAMESPACE,
    FakeGateway,
    onnx_classifier,
)

EDGES = [-0.5, 0.0, 0.5]


def stream(seed: int = 0) -> Iterator[InputRow]:
    rng = np.random.default_rng(seed)
    for i in itertools.count():
        vector = rng.standard_normal(FEATURES).astype(np.float32)
        yield InputRow(
            vector=vector,
            features={f"f{j}": float(vector[j]) for j in range(FEATURES)},
            label="0" if i % 2 else None,
        )


def make_agent(state_dir: Path, gateway: FakeGateway, rows: Iterator[InputRow]) -> Agent:
    config = AgentConfig(
        gateway="http://gateway.local", namespace=NAMESPACE, name=DEVICE, state_dir=state_dir,
        target_type="linux", trusted_keys=gateway.keys, token="ebt.x.y", rows_per_cycle=50,
    )  # fmt: skip
    return Agent(config, rows, transport=gateway.transport())


def test_one_cycle_enrolls_installs_infers_and_reports(tmp_path: Path) -> None:
    gateway = FakeGateway()
    gateway.publish(
        onnx_classifier(1),
        profile={"f0": ProfileFeature(edges=EDGES)},
        sampling=DesiredSampling(confidence_below=0.9, max_rows_per_hour=5),
        interval=30,
    )
    rows = list(itertools.islice(stream(), 50))
    agent = make_agent(tmp_path, gateway, iter(rows))
    delay = asyncio.run(agent.run_once())
    assert 27 <= delay <= 33  # reportIntervalSeconds ±10 %
    assert gateway.device_key == agent.identity.public_b64
    statuses = [StatusReport.model_validate(s) for s in gateway.statuses]
    phases = [s.update.phase for s in statuses if s.update]
    assert phases[:5] == ["Downloading", "Verifying", "Installing", "HealthCheck", "Committed"]
    last = statuses[-1]
    assert (last.model, last.version, last.health) == ("motion", 1, "Healthy")
    assert last.slots is not None and last.slots.active == "A"
    assert last.slots.a is not None and last.slots.a.version == 1
    [telemetry] = [TelemetryReport.model_validate(t) for t in gateway.telemetry]
    assert telemetry.inferences == 50 and telemetry.version == 1
    assert telemetry.features["f0"].counts == bin_counts([r.features["f0"] for r in rows], EDGES)
    assert telemetry.feedback is not None
    assert telemetry.feedback.correct + telemetry.feedback.incorrect == 25
    [upload] = gateway.samples
    assert 1 <= len(upload["rows"]) <= 5  # capped per hour
    # One sequence across status, telemetry and samples, strictly increasing.
    assert gateway.sequences == sorted(set(gateway.sequences))
    assert SlotStore(tmp_path).load().pending_reports == []


def test_a_terminal_report_is_delivered_after_a_reconnect_and_a_restart(tmp_path: Path) -> None:
    gateway = FakeGateway()
    gateway.publish(onnx_classifier(1))
    asyncio.run(make_agent(tmp_path, gateway, stream()).run_once())
    gateway.publish(onnx_classifier(2, poison=True), version=2)
    agent = make_agent(tmp_path, gateway, stream())

    def health_check_while_the_gateway_drops(data: bytes, fmt: str) -> object:
        gateway.down = True
        return check_artifact(data, fmt)

    agent.installer.health_check = health_check_while_the_gateway_drops

    async def install_while_the_gateway_drops() -> None:
        desired = await agent.client.desired()
        assert desired is not None
        await agent.installer.install(desired)  # the outcome cannot be sent
        with pytest.raises(RetryableError):
            await agent.flush_pending()

    asyncio.run(install_while_the_gateway_drops())
    [pending] = SlotStore(tmp_path).load().pending_reports
    assert (pending.phase, pending.reason_code) == ("RolledBack", "HealthCheckFailed")
    gateway.down = False
    before = len(gateway.statuses)
    restarted = make_agent(tmp_path, gateway, stream())  # the agent restarts meanwhile
    asyncio.run(restarted.run_once())
    updates = [s.get("update") for s in gateway.statuses[before:]]
    assert updates[0] is not None
    assert (updates[0]["phase"], updates[0]["reasonCode"]) == ("RolledBack", "HealthCheckFailed")
    assert SlotStore(tmp_path).load().pending_reports == []
    assert gateway.statuses[-1]["version"] == 1  # still running the committed v1


def test_the_loop_backs_off_while_the_gateway_is_down(tmp_path: Path) -> None:
    gateway = FakeGateway(down=True)
    agent = make_agent(tmp_path, gateway, stream())
    stop = asyncio.Event()
    delays: list[float | None] = []
    original = agent.backoff.next_delay

    def record(retry_after: float | None = None) -> float:
        delays.append(retry_after)
        if len(delays) == 3:
            stop.set()
        return original(retry_after) * 0.001  # keep the test fast

    agent.backoff.next_delay = record  # type: ignore[method-assign]
    asyncio.run(asyncio.wait_for(agent.run(stop), timeout=10))
    assert len(delays) == 3 and agent.backoff.failures == 3


def test_trusted_keys_from_the_command_line() -> None:
    key = generate_key()
    assert parse_trusted_keys([key.public_b64]) == {key.key_id: key.public_b64}
    assert parse_trusted_keys([f'{{"{key.key_id}": "{key.public_b64}"}}']) == {
        key.key_id: key.public_b64
    }
    with pytest.raises(ValueError):
        parse_trusted_keys(["not-a-key"])


def test_features_are_binned_only_for_the_version_the_profile_is_for(tmp_path: Path) -> None:
    gateway = FakeGateway()
    gateway.publish(onnx_classifier(1), profile={"f0": ProfileFeature(edges=EDGES)})
    agent = make_agent(tmp_path, gateway, stream())
    asyncio.run(agent.run_once())
    assert "f0" in gateway.telemetry[-1]["features"]
    # v2 fails its health check: the device keeps running v1, and v2's bins (which may
    # differ from v1's) are not applied to v1's inputs.
    gateway.publish(
        onnx_classifier(2, poison=True),
        version=2,
        profile={"f0": ProfileFeature(edges=[0.0])},
    )
    asyncio.run(agent.run_once())
    last = gateway.telemetry[-1]
    assert last["version"] == 1 and last["inferences"] > 0 and not last.get("features")


@pytest.mark.parametrize(("reason", "fatal"), [("DeviceRevoked", True), ("NoBundle", False)])
def test_the_loop_stops_only_on_refusals_no_retry_can_change(
    tmp_path: Path, reason: str, fatal: bool
) -> None:
    gateway = FakeGateway(refuse=(403, reason))
    (tmp_path / "enrollment.json").write_text("{}")  # enrolled before
    agent = make_agent(tmp_path, gateway, stream())
    gateway.device_key = agent.identity.public_b64
    agent.backoff.next_delay = lambda retry_after=None: 0.001  # type: ignore[method-assign]
    stop = asyncio.Event()

    async def go() -> None:
        asyncio.get_running_loop().call_later(0.3, stop.set)
        await agent.run(stop)

    if fatal:
        with pytest.raises(GatewayError, match=reason):
            asyncio.run(go())
    else:
        asyncio.run(go())  # kept trying until stopped


def test_the_command_line_refuses_a_bad_trust_key_and_target(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgeops.cli import app

    runner = CliRunner()
    base = ["device", "run", "--gateway", "http://127.0.0.1:1", "--name", "d"]
    base += ["--state-dir", str(tmp_path)]
    bad_key = runner.invoke(app, [*base, "--trust-key", "nope"])
    assert bad_key.exit_code == 2 and "--trust-key" in bad_key.output
    key = generate_key().public_b64
    bad_target = runner.invoke(app, [*base, "--trust-key", key, "--target-type", "gpu"])
    assert bad_target.exit_code == 2 and "linux or mcu" in bad_target.output


def test_an_idle_device_says_why_the_gateway_assigns_nothing(tmp_path: Path) -> None:
    gateway = FakeGateway()
    agent = make_agent(tmp_path, gateway, stream())
    asyncio.run(agent.run_once())
    assert agent.waiting is not None and agent.waiting.reason == "NothingAssigned"
    assert agent.client.refusal is agent.waiting
    gateway.publish(onnx_classifier(1))
    asyncio.run(agent.run_once())
    assert agent.waiting is None and agent.client.refusal is None


def test_labels_arriving_later_count_as_feedback_of_their_prediction(tmp_path: Path) -> None:
    gateway = FakeGateway()
    gateway.publish(onnx_classifier(1))
    rows = [
        InputRow(vector=r.vector, features=r.features, key=f"row-{i}")
        for i, r in enumerate(itertools.islice(stream(), 50))
    ]
    arrived: list[tuple[str, str]] = []
    config = AgentConfig(
        gateway="http://gateway.local", namespace=NAMESPACE, name=DEVICE, state_dir=tmp_path,
        target_type="linux", trusted_keys=gateway.keys, token="ebt.x.y", rows_per_cycle=50,
    )  # fmt: skip

    def labels() -> list[tuple[str, str]]:
        due, arrived[:] = list(arrived), []
        return due

    agent = Agent(config, iter(rows), transport=gateway.transport(), label_source=labels)
    asyncio.run(agent.run_once())
    assert agent.runner is not None
    predicted = [agent.runner.awaiting[f"row-{i}"][1] for i in range(50)]
    [first] = [TelemetryReport.model_validate(t) for t in gateway.telemetry]
    assert first.inferences == 50 and first.feedback is None  # no label yet
    # The ground truth of 10 rows arrives one cycle later (and one for an unknown row).
    arrived.extend((f"row-{i}", "0") for i in range(10))
    arrived.append(("row-999", "0"))
    agent.rows = iter(())
    asyncio.run(agent.run_once())
    assert agent.runner is not None and len(agent.runner.awaiting) == 40
    second = TelemetryReport.model_validate(gateway.telemetry[-1])
    assert second.inferences == 0 and second.feedback is not None
    assert (second.feedback.correct, second.feedback.incorrect) == (
        sum(p == "0" for p in predicted[:10]), sum(p != "0" for p in predicted[:10]),
    )  # fmt: skip
