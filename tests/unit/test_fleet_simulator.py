"""The fleet simulator's pure parts: injection specs, which devices an injection hits, the
input streams (noise, data drift, concept drift) and the simulated network."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import httpx
import numpy as np
import pytest

from edgeops.device.simulator import (
    ConceptDrift,
    DataDrift,
    FailingVersion,
    Offline,
    Rows,
    Schedule,
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
        Schedule.parse(fail_versions=["v3:0.5"])
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


def _simulation(tmp_path: Path, **kw: object) -> Simulation:
    config = SimulationConfig(
        gateway="http://127.0.0.1:9", namespace="ns", devices=2, token="t", trusted_keys={},
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
