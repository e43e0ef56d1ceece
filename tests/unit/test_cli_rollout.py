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


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_status_output_json_and_yaml(patches: list[dict[str, Any]], output: str) -> None:
    import json

    import yaml

    result = CliRunner().invoke(cli.app, ["rollout", "status", "r", "-n", "plant", "-o", output])
    assert result.exit_code == 0, result.output
    loaded = json.loads(result.output) if output == "json" else yaml.safe_load(result.output)
    assert loaded["kind"] == "FleetRollout" and loaded["metadata"]["name"] == "r"
    assert loaded["status"]["counts"] == {"targeted": 12, "updated": 11, "timedOut": 1}
    assert loaded["status"]["pausedReason"] == "Inconclusive"


def test_status_watch_prints_each_change_until_the_rollout_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """-w -o yaml prints a document per new resourceVersion and stops at a terminal phase;
    -w alone redraws the table until then."""
    import time

    import yaml

    def version(rv: str, phase: str, updated: int) -> dict[str, Any]:
        status = {**ROLLOUT["status"], "phase": phase, "counts": {"updated": updated}}
        return {**ROLLOUT, "metadata": {**ROLLOUT["metadata"], "resourceVersion": rv},
                "status": status}  # fmt: skip

    reads = iter([version("1", "Progressing", 1), version("1", "Progressing", 1),
                  version("2", "Progressing", 5), version("3", "Succeeded", 12)])  # fmt: skip
    monkeypatch.setattr(objects, "read_custom", lambda ns, plural, name: next(reads))
    monkeypatch.setattr(time, "sleep", lambda _: None)
    result = CliRunner().invoke(
        cli.app, ["rollout", "status", "r", "-n", "plant", "-w", "-o", "yaml", "--interval", "1"]
    )
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.output))
    assert [d["status"]["counts"]["updated"] for d in documents] == [1, 5, 12]
    assert documents[-1]["status"]["phase"] == "Succeeded"

    reads = iter([version("1", "Progressing", 1), version("2", "RolledBack", 3)])
    result = CliRunner().invoke(cli.app, ["rollout", "status", "r", "-n", "plant", "-w"])
    assert result.exit_code == 0, result.output
    assert "RolledBack" in result.output


def test_status_refuses_an_unknown_output(patches: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(cli.app, ["rollout", "status", "r", "-n", "plant", "-o", "xml"])
    assert result.exit_code == 2 and "'xml' is not one of" in result.output
