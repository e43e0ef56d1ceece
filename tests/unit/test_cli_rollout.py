"""``edgeops rollout``: each command is a spec change (what kubectl or Git would write), and
status renders phase, step, counts and measurements."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from edgeops import cli
from edgeops.k8s import custom, objects

ROLLOUT: dict[str, Any] = {
    "metadata": {"name": "r", "namespace": "plant"},
    "spec": {"modelRef": {"name": "m"}, "version": 2, "steps": [{"percent": 10}, {"percent": 100}]},
    "status": {
        "phase": "Paused", "pausedReason": "Inconclusive", "pauseId": "step0-Inconclusive-x",
        "currentStep": 0, "currentPercent": 10, "stableVersion": 1,
        "counts": {"targeted": 12, "updated": 11, "timedOut": 1},
        "metrics": [{"name": "acc", "query": "q", "op": ">=", "threshold": 0.9, "value": None,
                     "samples": 3, "verdict": "Inconclusive", "passes": 0}],
        "message": "paused (Inconclusive) at step 1/2 (10 %)",
    },
}  # fmt: skip


@pytest.fixture
def patches(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(objects, "read_custom", lambda ns, plural, name: ROLLOUT)
    monkeypatch.setattr(
        custom, "patch_user_spec", lambda ns, plural, name, spec: sent.append(spec) or {}
    )
    return sent


@pytest.mark.parametrize(
    ("command", "spec"),
    [
        ("pause", {"paused": True}),
        ("resume", {"paused": False, "acknowledgedPause": "step0-Inconclusive-x"}),
        ("approve", {"approvedStep": 0}),
        ("abort", {"abort": True}),
    ],
)
def test_commands_are_spec_changes(
    patches: list[dict[str, Any]], command: str, spec: dict[str, Any]
) -> None:
    result = CliRunner().invoke(cli.app, ["rollout", command, "r", "-n", "plant"])
    assert result.exit_code == 0, result.output
    assert patches == [spec]


def test_status_shows_phase_counts_and_measurements() -> None:
    console = Console(record=True, width=160)
    console.print(cli.rollout_view(ROLLOUT))
    text = console.export_text()
    assert "plant/r" in text and "Paused (Inconclusive)" in text and "step 1/2 (10 %)" in text
    assert "v1 -> v2" in text and "Inconclusive" in text and "edgeops rollout resume" in text
    assert "12" in text and "11" in text
