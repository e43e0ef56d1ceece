"""``edgeops device token create`` refuses what the API server or the gateway would only
refuse later: a non-positive lifetime, labels Kubernetes does not accept. And an API
refusal no command handles (a missing namespace) is a message, not a traceback."""

from __future__ import annotations

import json

import pytest
import typer
from kubernetes.client.rest import ApiException
from typer.testing import CliRunner

from edgeops import cli


@pytest.mark.parametrize(
    ("text", "seconds"), [("30m", 1800), ("24h", 86400), ("1h30m", 5400), ("7d", 604800)]
)
def test_lifetimes(text: str, seconds: float) -> None:
    assert cli._parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "why"), [("0s", "positive"), ("0d", "positive"),
                                            ("soon", "not a duration"), ("-5m", "not a duration"),
                                            ("", "not a duration")])  # fmt: skip
def test_bad_lifetimes_are_refused(text: str, why: str) -> None:
    with pytest.raises(typer.BadParameter, match=why):
        cli._parse_duration(text)


def test_labels_are_kubernetes_labels() -> None:
    assert cli._parse_labels(["site=plant-1, line = a", "edgeops.dev/zone=z1"]) == {
        "site": "plant-1",
        "line": "a",
        "edgeops.dev/zone": "z1",
    }
    for bad, why in (
        ("site", "not k=v"),
        ("=x", "not k=v"),
        ("site=north wing", "label value 'north wing'"),
        ("bad key=x", "label key 'bad key'"),
        ("k=" + "x" * 64, "at most 63"),
    ):
        with pytest.raises(typer.BadParameter, match=why):
            cli._parse_labels([bad])


def test_an_unhandled_api_refusal_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(*_: object, **__: object) -> None:
        exc = ApiException(status=404, reason="Not Found")
        exc.body = json.dumps({"kind": "Status", "message": 'namespaces "nope" not found'})
        raise exc

    monkeypatch.setattr("edgeops.k8s.fleet.create_token_secret", refuse)
    monkeypatch.setattr("sys.argv", ["edgeops", "device", "token", "create", "-n", "nope"])
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == 1
    err = capsys.readouterr().err
    assert 'answered 404: namespaces "nope" not found' in err and "Traceback" not in err


def test_invalid_labels_fail_before_any_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[str] = []
    monkeypatch.setattr(
        "edgeops.k8s.fleet.create_token_secret", lambda ns, name, data: created.append(name)
    )
    result = CliRunner().invoke(
        cli.app, ["device", "token", "create", "-n", "x", "--labels", "a b=c"]
    )
    assert result.exit_code == 2 and "label key 'a b'" in result.output and not created
    result = CliRunner().invoke(cli.app, ["device", "token", "create", "-n", "x", "--ttl", "0s"])
    assert result.exit_code == 2 and "positive" in result.output and not created


def test_a_token_as_a_document(monkeypatch: pytest.MonkeyPatch) -> None:
    stored: dict[str, dict[str, str]] = {}
    monkeypatch.setattr(
        "edgeops.k8s.fleet.create_token_secret",
        lambda ns, name, data: stored.setdefault(f"{ns}/{name}", data),
    )
    result = CliRunner().invoke(
        cli.app,
        ["device", "token", "create", "-n", "plant", "--max-uses", "3", "--labels", "site=a",
         "--auto-approve", "-o", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["token"].startswith("ebt.") and f"plant/{doc['secret']}" in stored
    assert (doc["maxUses"], doc["autoApprove"], doc["labels"]) == (3, True, {"site": "a"})
    assert doc["expiresAt"] == stored[f"plant/{doc['secret']}"]["expiresAt"]
