"""``-o json|yaml`` on the commands that print state: the same facts as the table, on stdout
only, parseable by scripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from edgeops import cli
from edgeops.devcluster.cluster import ComponentStatus
from edgeops.k8s import fleet, objects
from tests.unit.test_cli_rollout import ROLLOUT

MODEL: dict[str, Any] = {
    "metadata": {"name": "m", "namespace": "plant"},
    "status": {
        "fleetVersion": 2,
        "versions": [
            {"number": 2, "trainingRun": "m-2", "datasetVersion": "ab" * 32, "keyId": "k1"}
        ],
    },
}
DEVICES = [
    {
        "metadata": {"name": "d1", "labels": {"edgeops.dev/model": "m"}},
        "status": {"model": "m", "version": 2},
    }
]


def _parse(output: str, fmt: str) -> Any:
    return json.loads(output) if fmt == "json" else yaml.safe_load(output)


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_rollout_status(monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    monkeypatch.setattr(objects, "read_custom", lambda ns, plural, name: ROLLOUT)
    result = CliRunner().invoke(cli.app, ["rollout", "status", "r", "-n", "plant", "-o", fmt])
    assert result.exit_code == 0, result.output
    doc = _parse(result.stdout, fmt)
    assert doc["kind"] == "FleetRollout"
    assert (doc["metadata"]["name"], doc["metadata"]["namespace"]) == ("r", "plant")
    assert doc["status"]["phase"] == "Paused" and doc["status"]["counts"]["timedOut"] == 1
    assert doc["spec"]["version"] == 2


def test_rollout_status_watch_with_output_prints_the_object_until_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ended = {**ROLLOUT, "status": {**ROLLOUT["status"], "phase": "Succeeded"}}
    monkeypatch.setattr(objects, "read_custom", lambda ns, plural, name: ended)
    result = CliRunner().invoke(cli.app, ["rollout", "status", "r", "--watch", "-o", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"]["phase"] == "Succeeded"


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_lineage(monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    monkeypatch.setattr(objects, "read_custom", lambda ns, plural, name: MODEL)
    monkeypatch.setattr(fleet, "list_objects", lambda ns, plural: DEVICES)
    result = CliRunner().invoke(cli.app, ["lineage", "m", "-n", "plant", "-o", fmt])
    assert result.exit_code == 0, result.output
    doc = _parse(result.stdout, fmt)
    assert (doc["model"], doc["fleetVersion"]) == ("m", 2)
    (row,) = doc["devices"]
    assert row["device"] == "d1" and row["version"] == 2
    assert row["datasetVersion"] == "ab" * 32  # whole, where the table shortens it


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_dev_status(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fmt: str) -> None:
    statuses = [
        ComponentStatus("etcd", 10, True, True, "http://127.0.0.1:1", tmp_path / "etcd.log"),
        ComponentStatus("node", 11, False, False, "", tmp_path / "node.log"),
        ComponentStatus("operator", None, False, False, "", tmp_path / "operator.log"),
    ]
    monkeypatch.setattr(cli.DevCluster, "status", lambda self: statuses)
    monkeypatch.setattr(cli.DevCluster, "gateway_status", lambda self: (False, "http://g:1"))
    result = CliRunner().invoke(cli.app, ["dev", "status", "--home", str(tmp_path), "-o", fmt])
    assert result.exit_code == 1  # a crashed component, as with the table
    doc = _parse(result.stdout, fmt)
    assert [(c["component"], c["state"]) for c in doc] == [
        ("etcd", "ready"),
        ("node", "crashed"),
        ("operator", "not started"),
        ("gateway", "not ready"),
    ]
    assert doc[-1]["endpoint"] == "http://g:1"
