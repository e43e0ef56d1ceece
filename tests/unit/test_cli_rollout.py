"""``edgeops rollout``: each command is a spec change (what kubectl or Git would write), and
status renders phase, step, counts and measurements."""

from __future__ import annotations

import sys
from pathlib import Path
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


@pytest.mark.parametrize(
    ("command", "phase"),
    [("resume", "RolledBack"), ("approve", "Succeeded"), ("pause", "Aborted"),
     ("abort", "Succeeded"), ("abort", "RolledBack"), ("abort", "Aborted")],
)  # fmt: skip
def test_commands_on_an_ended_rollout_are_refused(
    monkeypatch: pytest.MonkeyPatch, command: str, phase: str
) -> None:
    """The trial's `resume` on a RolledBack and `approve` on a Succeeded rollout printed a
    spec change that changed nothing and exited 0; `abort` on an ended rollout set
    spec.abort silently (issue 12)."""
    sent: list[dict[str, Any]] = []
    ended = {**ROLLOUT, "status": {**ROLLOUT["status"], "phase": phase, "pausedReason": None,
                                   "finishedAt": "2026-11-30T03:00:00Z"}}  # fmt: skip
    monkeypatch.setattr(objects, "read_custom", lambda ns, plural, name: ended)
    monkeypatch.setattr(custom, "patch_user_spec", lambda *a: sent.append(a[3]) or {})
    result = CliRunner().invoke(cli.app, ["rollout", command, "r", "-n", "plant"])
    assert result.exit_code == 1
    assert sent == []
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert f"cannot {command}: the rollout ended ({phase} at 2026-11-30T03:00:00Z)" in lines[0]


def test_status_watch_without_a_terminal_prints_one_full_line_per_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Piped (no TTY), -w printed only the last frame, cut at 80 columns: now one line per
    change, no cursor control, nothing cut."""
    import time

    long_message = "step 1/2 (10 %): waiting for 95 % " + "x" * 150

    def read(updated: int, phase: str) -> dict[str, Any]:
        status = {**ROLLOUT["status"], "phase": phase, "pausedReason": None, "pauseId": None,
                  "counts": {"targeted": 12, "updated": updated},
                  "message": long_message}  # fmt: skip
        return {**ROLLOUT, "status": status}

    reads = iter([read(1, "Progressing"), read(1, "Progressing"), read(5, "Progressing"),
                  read(12, "Succeeded")])  # fmt: skip
    monkeypatch.setattr(objects, "read_custom", lambda ns, plural, name: next(reads))
    monkeypatch.setattr(time, "sleep", lambda _: None)
    result = CliRunner().invoke(cli.app, ["rollout", "status", "r", "-n", "plant", "-w"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3, result.output  # the repeated frame is not printed again
    assert "\x1b" not in result.output
    assert lines[0].startswith("phase=Progressing step=1/2 (10 %) targeted=12 updated=1 ")
    assert "updated=5" in lines[1] and lines[2].startswith("phase=Succeeded")
    assert all(line.endswith(long_message) for line in lines)


def test_status_without_a_terminal_is_not_cut_to_80_columns(
    patches: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Piped (CI logs, `| less`), rich would cut the table's headers to 80 columns
    (`targ… ┃ upda…`); the CLI's console is wide there unless COLUMNS says otherwise."""
    monkeypatch.delenv("COLUMNS", raising=False)
    with (tmp_path / "log").open("w") as not_a_terminal:
        assert cli._piped_width(not_a_terminal) == 200
    # As the module builds it at import, with stderr captured (not a terminal) here.
    monkeypatch.setattr(cli, "console", Console(stderr=True, width=cli._piped_width(sys.stderr)))
    result = CliRunner().invoke(cli.app, ["rollout", "status", "r", "-n", "plant"])
    assert result.exit_code == 0, result.output
    assert "targeted" in result.output and "updated" in result.output
    assert "…" not in result.output
