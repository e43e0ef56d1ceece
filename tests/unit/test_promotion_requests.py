"""Manual promotion: the suggested kubectl command always makes a new request (it carries a
nonce, like the CLI's), and a request equal to the last handled one changes nothing."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from typing import Any

import kopf
import pytest

from edgeops.api.constants import Annotations
from edgeops.api.edgemodel import EdgeModelSpec, EdgeModelStatus, ModelVersion, TriggerState
from edgeops.controllers import edgemodel
from edgeops.policy import promotion


def _kubectl_command(message: str) -> str:
    commands = [c for c in re.findall(r"`([^`]*)`", message) if c.startswith("kubectl ")]
    assert len(commands) == 1, message
    return commands[0]


def test_instructions_name_the_cli_and_a_kubectl_command_with_a_nonce() -> None:
    message = promotion.manual_instructions("motion", 2)
    assert "`edgeops promote motion 2`" in message
    assert _kubectl_command(message) == (
        'kubectl annotate edgemodel motion edgeops.dev/promote="2 $(date +%s)" --overwrite'
    )


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_suggested_kubectl_command_sets_a_parseable_request() -> None:
    # Run the command as a shell would, with kubectl printing its arguments.
    command = _kubectl_command(promotion.manual_instructions("motion", 2))
    script = f'kubectl() {{ printf "%s\\n" "$@"; }}; {command}'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    args = out.stdout.splitlines()
    assert args[:3] == ["annotate", "edgemodel", "motion"] and args[-1] == "--overwrite"
    key, value = args[3].split("=", 1)
    assert key == Annotations.PROMOTE
    request = promotion.parse_request(value)
    assert request is not None and request.version == 2
    assert value.split()[1].isdigit()  # the nonce: seconds since the epoch


def _version(number: int) -> ModelVersion:
    return ModelVersion(
        number=number, training_run=f"m-r{number}", created="2025-01-01T00:00:00Z", state="Approved"
    )


def _tick(current: int, handled: str) -> edgemodel.Tick:
    spec = EdgeModelSpec.model_validate(
        {
            "training": {"datasetRef": {"name": "d"}, "exports": ["onnx"]},
            "targets": [{"name": "pi", "targetType": "linux", "format": "onnx"}],
            "promotion": {"mode": "Manual"},
        }
    )
    status = EdgeModelStatus(
        versions=[_version(1), _version(2)],
        latest_version=2,
        current_version=current,
        triggers=TriggerState.model_validate({"promoteRequest": handled}),
    )
    body = kopf.Body({"metadata": {"name": "m", "uid": "u"}})
    return edgemodel.Tick(body, "ns", "m", spec, status, dt.datetime(2025, 1, 1, tzinfo=dt.UTC))


def _meta(value: str) -> kopf.Meta:
    return kopf.Meta(kopf.Body({"metadata": {"annotations": {Annotations.PROMOTE: value}}}))


@pytest.fixture(autouse=True)
def _no_events(monkeypatch: pytest.MonkeyPatch) -> None:
    def ignore(*_: Any) -> None:
        return None

    monkeypatch.setattr(edgemodel.events, "normal", ignore)
    monkeypatch.setattr(edgemodel.events, "warning", ignore)


def test_the_last_handled_request_changes_nothing() -> None:
    # Promoted 2 with "2 100", then rolled back to 1: the old annotation is not re-applied.
    tick = _tick(current=1, handled="2 100")
    edgemodel._handle_promote_request(tick, _meta("2 100"))
    assert tick.status.current_version == 1 and not tick.conditions


def test_the_same_version_with_a_new_nonce_is_promoted_again() -> None:
    tick = _tick(current=1, handled="2 100")
    edgemodel._handle_promote_request(tick, _meta("2 200"))
    assert tick.status.current_version == 2
    assert tick.triggers.promote_request == "2 200"
    state, reason, message = tick.conditions["Promoted"]
    assert state == "True" and "v2 is current (was v1)" in message, (reason, message)
