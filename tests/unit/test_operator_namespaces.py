"""``edgeops operator run --namespace``: repeated, it limits Kopf to those namespaces plus
the operator's own (its evaluation Jobs run there; the chart's ``watchNamespaces`` passes
one flag per namespace); absent, the whole cluster."""

from __future__ import annotations

from typing import Any

import kopf
import pytest
from typer.testing import CliRunner

from edgeops import cli
from edgeops.controllers import runtime


@pytest.fixture
def kopf_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What runtime.run passes to kopf.operator (not started: no API server here)."""
    calls: list[dict[str, Any]] = []

    async def operator(**kwargs: Any) -> None:
        calls.append(kwargs)

    monkeypatch.setattr(kopf, "operator", operator)
    monkeypatch.setattr(runtime.operator_metrics, "serve", lambda port, address: None)
    return calls


@pytest.mark.parametrize(
    ("flags", "clusterwide", "namespaces"),
    [
        ([], True, []),
        (["--namespace", "team-a"], False, ["team-a", "edgeops-system"]),
        (
            ["--namespace", "team-a", "--namespace", "team-b", "--namespace", "team-a"],
            False,
            ["team-a", "team-b", "edgeops-system"],
        ),
        (["--namespace", "edgeops-system"], False, ["edgeops-system"]),
    ],
)
def test_namespaces_reach_kopf(
    kopf_calls: list[dict[str, Any]], flags: list[str], clusterwide: bool, namespaces: list[str]
) -> None:
    result = CliRunner().invoke(cli.app, ["operator", "run", *flags])
    assert result.exit_code == 0, result.output
    assert [(c["clusterwide"], c["namespaces"]) for c in kopf_calls] == [(clusterwide, namespaces)]
