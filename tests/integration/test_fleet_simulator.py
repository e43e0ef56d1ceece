"""The fleet simulator against the session devcluster's gateway pod: 20 virtual devices
(real agents in one process, Linux and MCU, sites and regions) enroll through the real
token path, install the signed current version, fail a later version's health check on
exactly the share the injection names (and roll it back there), stay away while offline,
and their telemetry reaches Prometheus."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeops.device.simulator import (
    FailingVersion,
    Offline,
    Simulation,
    SimulationConfig,
    load_rows,
    share_hit,
)
from tests.conftest import Cluster, wait_for
from tests.integration.device_fleet import (
    CLASSES,
    Line,
    edge_model,
    onnx_classifier,
    operator_signing_key,
    prometheus_value,
)
from tests.integration.gateway_client import token

pytestmark = pytest.mark.integration

DEVICES = 20
MODEL = "fleet-model"


class SimulationThread:
    """A :class:`Simulation` running in its own thread and event loop until :meth:`stop`."""

    def __init__(self, simulation: Simulation) -> None:
        self.simulation = simulation
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.simulation.run(self._stop))
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
        finally:
            self._loop.close()

    def __enter__(self) -> SimulationThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        # Hundreds of agents may take a while to finish their cycle on a loaded machine.
        self._thread.join(120)
        assert self.error is None, repr(self.error)


@pytest.fixture
def ns(cluster: Cluster) -> Iterator[str]:
    name = cluster.namespace("fleet")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _devices(cluster: Cluster, ns: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in cluster.get("devices", "-n", ns).get("items", [])}


def _on(devices: dict[str, dict[str, Any]], name: str, version: int) -> dict[str, Any] | None:
    update = (devices.get(name, {}).get("status") or {}).get("update") or {}
    terminal = update.get("phase") in ("Committed", "RolledBack", "Failed")
    return update if update.get("targetVersion") == version and terminal else None


def test_a_simulated_fleet_installs_rolls_back_where_injected_and_reports(
    cluster: Cluster, ns: str, tmp_path: Path
) -> None:
    key, trusted = operator_signing_key(cluster)
    line = Line.apply(cluster, ns, edge_model(MODEL), key)
    line.publish(1, onnx_classifier(seed=40))
    grant = token(
        cluster, ns, "--auto-approve", "--max-uses", str(DEVICES),
        "--labels", f"edgeops.dev/model={MODEL}",
    )  # fmt: skip
    fail, offline = FailingVersion(2, 0.3), Offline(0.1)
    config = SimulationConfig(
        gateway=cluster.endpoints["gateway"], namespace=ns, devices=DEVICES, token=grant,
        trusted_keys=trusted, rows=load_rows("builtin:basic-motions"), state_root=tmp_path,
        classes=CLASSES, mcu_share=0.2, fail_versions=[fail], offline=[offline],
        interval_seconds=3.0, ramp_seconds=3.0, slow_network_ms=20,
    )  # fmt: skip
    simulation = Simulation(config)
    views = {v.name: v for v in simulation.views}
    away = {n for n in views if share_hit("offline", n, offline.share)}
    linux = {n for n, v in views.items() if v.target_type == "linux" and n not in away}
    mcu = {n for n, v in views.items() if v.target_type == "mcu" and n not in away}
    failing = {n for n in linux if share_hit("fail:2", n, fail.share)}
    # The hash picks a mix (fixed names, so fixed picks): each case is really exercised.
    assert away and mcu and failing and linux - failing

    with SimulationThread(simulation):
        devices = wait_for(
            lambda: (d := _devices(cluster, ns)) and len(d) == DEVICES - len(away) and d,
            120, "every online device enrolled", interval=2,
        )  # fmt: skip
        assert set(devices) == linux | mcu
        for name, device in devices.items():
            spec, labels = device["spec"], device["metadata"]["labels"]
            assert spec["targetType"] == views[name].target_type
            assert (labels["site"], labels["region"]) == (views[name].site, views[name].region)
        wait_for(
            lambda: all(_on(_devices(cluster, ns), n, 1) for n in linux), 120,
            "the linux devices on v1", interval=2,
        )  # fmt: skip

        line.publish(2, onnx_classifier(seed=41))
        outcomes = wait_for(
            lambda: (d := _devices(cluster, ns)) and all(_on(d, n, 2) for n in linux)
            and {n: _on(d, n, 2) for n in linux},
            120, "every linux device's v2 outcome", interval=2,
        )  # fmt: skip
        rolled_back = {n for n, u in outcomes.items() if u["phase"] == "RolledBack"}
        assert rolled_back == failing
        assert all(outcomes[n]["reasonCode"] == "HealthCheckFailed" for n in failing)
        versions = {n: d["status"].get("version") for n, d in _devices(cluster, ns).items()}
        assert {n: versions[n] for n in linux} == {n: 1 if n in failing else 2 for n in linux}
        # The MCU devices enrolled, but the model has no mcu target: nothing to install.
        assert all(versions[n] is None for n in mcu)

        query = f'sum(edgeops_device_inferences_total{{namespace="{ns}",version="2"}})'
        wait_for(lambda: prometheus_value(cluster, query), 60, "v2 inferences in Prometheus")
        summary = simulation.summary()
        assert summary[("v2", "Running")] == len(linux - failing)
        assert summary[("v1", "RolledBack")] == len(failing)
    assert json.dumps(simulation.summary().most_common())  # the progress data serialises
