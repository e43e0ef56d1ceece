"""The operator's settings: defaults, environment overrides, start-up errors that name the
variable, secrets kept out of reprs and messages, and the README table and Helm chart kept
in step with the model."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from edgeops.cli import app
from edgeops.settings import (
    CHART,
    CHART_DEFAULT,
    CHART_SECRET_KEY,
    GatewaySettings,
    OperatorSettings,
    PredictorSettings,
    SettingsError,
    TrainerSettings,
    env_name,
    gateway_settings,
    predictor_settings,
    readme_block,
    settings,
    trainer_settings,
)

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "edgeops"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No EDGEOPS_* variable of the developer's shell (or the devcluster) leaks in."""
    for name in list(os.environ):
        if name.upper().startswith("EDGEOPS_"):
            monkeypatch.delenv(name)


def _extra(model: type[Any], field: str) -> dict[str, Any]:
    extra = model.model_fields[field].json_schema_extra
    assert isinstance(extra, dict), f"{field} says nothing about the chart"
    return extra


# ----- values -----------------------------------------------------------------------------


def test_defaults() -> None:
    config = settings()
    assert config.namespace == "edgeops-system"
    assert config.resync_interval_seconds == 60
    assert config.s3_endpoint is None and config.s3_job_endpoint is None
    assert config.s3_bucket == "edgeops" and config.s3_region is None
    assert config.s3_ca_bundle is None and config.s3_insecure_skip_verify is False
    assert config.s3_secret is None and config.s3_secret_ref is None
    assert config.s3_access_key is None and config.s3_secret_key is None
    assert config.s3_role_arn is None and config.s3_sts_endpoint is None
    assert config.s3_pod_credentials_seconds == 43200
    assert config.prometheus_url is None and config.prometheus_timeout_seconds == 10
    assert (config.health_port, config.metrics_port, config.bind_address) == (
        8080,
        9090,
        "127.0.0.1",
    )
    assert (config.watch_server_timeout_seconds, config.watch_client_timeout_seconds) == (60, 90)
    assert config.watch_connect_timeout_seconds == 10
    assert config.api_request_timeout_seconds == 60
    assert config.signing_key_refresh_seconds == 300
    assert config.signing_key_secret == "edgeops-signing-key"
    assert config.http_source_allowed_hosts is None and config.http_source_allowlist is None
    assert config.http_source_allow_private_networks is False
    assert config.http_source_deadline_seconds == 120
    assert (config.source_max_object_mib, config.source_max_decompressed_mib) == (64, 128)
    assert config.source_max_rows_per_object == 200_000


def test_every_field_documents_itself() -> None:
    for model in (OperatorSettings, TrainerSettings, PredictorSettings, GatewaySettings):
        for field, info in model.model_fields.items():
            assert info.description and len(info.description) > 40, field
            assert CHART in _extra(model, field), field


def test_the_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {
        "EDGEOPS_NAMESPACE": "ops",
        "EDGEOPS_RESYNC_INTERVAL_SECONDS": "2.5",
        "EDGEOPS_SOURCE_POLL_INTERVAL_SECONDS": "4",
        "EDGEOPS_TRIGGER_BATCH_SECONDS": "0",
        "EDGEOPS_PROMETHEUS_TIMEOUT_SECONDS": "2.5",
        "EDGEOPS_DEVICE_SWEEP_SECONDS": "2.5",
        "EDGEOPS_HTTP_SOURCE_ALLOWED_HOSTS": "data.example.com, *.corp.example, 10.20.0.0/16",
        "EDGEOPS_HTTP_SOURCE_ALLOW_PRIVATE_NETWORKS": "true",
        "EDGEOPS_HTTP_SOURCE_DEADLINE_SECONDS": "15",
        "EDGEOPS_SOURCE_MAX_OBJECT_MIB": "8",
        "EDGEOPS_SOURCE_MAX_DECOMPRESSED_MIB": "16",
        "EDGEOPS_SOURCE_MAX_ROWS_PER_OBJECT": "1000",
        "EDGEOPS_S3_ENDPOINT": "https://s3.example:9000",
        "EDGEOPS_S3_JOB_ENDPOINT": "http://minio.storage:9000",
        "EDGEOPS_S3_BUCKET": "models.eu-1",
        "EDGEOPS_S3_REGION": "eu-central-1",
        "EDGEOPS_S3_CA_BUNDLE": str(ca),
        "EDGEOPS_S3_INSECURE_SKIP_VERIFY": "true",
        "EDGEOPS_S3_SECRET": "s3-creds",
        "EDGEOPS_S3_ACCESS_KEY": "AKIA",
        "EDGEOPS_S3_SECRET_KEY": "hunter2",
        "EDGEOPS_S3_ROLE_ARN": "arn:aws:iam::123456789012:role/edgeops-pods",
        "EDGEOPS_S3_STS_ENDPOINT": "https://sts.eu-central-1.amazonaws.com",
        "EDGEOPS_S3_POD_CREDENTIALS_SECONDS": "3600",
        "EDGEOPS_PROMETHEUS_URL": "http://prometheus:9090",
        "EDGEOPS_ADMISSION_PORT": "19443",
        "EDGEOPS_ADMISSION_HOST": "edgeops-admission.ops.svc",
        "EDGEOPS_ADMISSION_CERT_FILE": "/etc/edgeops/admission/tls.crt",
        "EDGEOPS_ADMISSION_KEY_FILE": "/etc/edgeops/admission/tls.key",
        "EDGEOPS_HEALTH_PORT": "18080",
        "EDGEOPS_METRICS_PORT": "19090",
        "EDGEOPS_BIND_ADDRESS": "::",
        "EDGEOPS_WATCH_SERVER_TIMEOUT_SECONDS": "300",
        "EDGEOPS_WATCH_CLIENT_TIMEOUT_SECONDS": "330",
        "EDGEOPS_WATCH_CONNECT_TIMEOUT_SECONDS": "3",
        "EDGEOPS_API_REQUEST_TIMEOUT_SECONDS": "20",
        "EDGEOPS_SIGNING_KEY_REFRESH_SECONDS": "30",
        "EDGEOPS_SIGNING_KEY_SECRET": "vault-signing-key",
        "EDGEOPS_BUNDLE_VALIDITY_DAYS": "7.5",
    }
    assert set(env) == {env_name(f) for f in OperatorSettings.model_fields}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = settings()
    assert config.namespace == "ops" and config.resync_interval_seconds == 2.5
    assert config.source_poll_interval_seconds == 4
    assert config.trigger_batch_seconds == 0
    assert config.prometheus_timeout_seconds == 2.5
    assert config.device_sweep_seconds == 2.5
    allowlist = config.http_source_allowlist
    assert allowlist is not None and allowlist.names == {"data.example.com"}
    assert allowlist.admits_name("a.corp.example") and not allowlist.admits_name("corp.example")
    assert allowlist.admits_address(ipaddress.ip_address("10.20.3.4"))
    assert config.http_source_allow_private_networks is True
    assert config.http_source_deadline_seconds == 15
    assert (config.source_max_object_mib, config.source_max_decompressed_mib) == (8, 16)
    assert config.source_max_rows_per_object == 1000
    assert config.bundle_validity_days == 7.5
    assert config.s3_endpoint == "https://s3.example:9000"
    assert config.s3_job_endpoint == "http://minio.storage:9000"
    assert (config.s3_bucket, config.s3_region) == ("models.eu-1", "eu-central-1")
    assert config.s3_ca_bundle == ca and config.s3_insecure_skip_verify is True
    assert config.s3_secret_ref == ("ops", "s3-creds")  # no namespace: the operator's
    assert config.s3_access_key is not None and config.s3_secret_key is not None
    assert config.s3_access_key.get_secret_value() == "AKIA"
    assert config.s3_secret_key.get_secret_value() == "hunter2"
    assert config.s3_role_arn == "arn:aws:iam::123456789012:role/edgeops-pods"
    assert config.s3_sts_endpoint == "https://sts.eu-central-1.amazonaws.com"
    assert config.s3_pod_credentials_seconds == 3600
    assert config.prometheus_url == "http://prometheus:9090"
    assert (config.health_port, config.metrics_port, config.bind_address) == (18080, 19090, "::")
    assert (config.admission_port, config.admission_host) == (19443, "edgeops-admission.ops.svc")
    assert config.admission_cert_file == "/etc/edgeops/admission/tls.crt"
    assert config.admission_key_file == "/etc/edgeops/admission/tls.key"
    assert config.watch_server_timeout_seconds == 300
    assert config.watch_client_timeout_seconds == 330
    assert config.watch_connect_timeout_seconds == 3
    assert config.api_request_timeout_seconds == 20
    assert config.signing_key_refresh_seconds == 30
    assert config.signing_key_secret == "vault-signing-key"
    assert settings() is config  # read once per process


def test_a_secret_in_another_namespace_and_empty_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEOPS_S3_SECRET", "storage/s3-creds")
    monkeypatch.setenv("EDGEOPS_S3_BUCKET", "")  # as the chart renders an empty value
    monkeypatch.setenv("EDGEOPS_S3_ENDPOINT", "")
    config = settings()
    assert config.s3_secret_ref == ("storage", "s3-creds")
    assert (config.s3_bucket, config.s3_endpoint) == ("edgeops", None)


# ----- bad values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("EDGEOPS_RESYNC_INTERVAL_SECONDS", "0", "greater than 0 (got '0')"),
        ("EDGEOPS_RESYNC_INTERVAL_SECONDS", "often", "valid number"),
        ("EDGEOPS_HEALTH_PORT", "70000", "less than or equal to 65535"),
        ("EDGEOPS_METRICS_PORT", "http", "valid integer"),
        ("EDGEOPS_WATCH_SERVER_TIMEOUT_SECONDS", "60.5", "valid integer"),
        ("EDGEOPS_S3_BUCKET", "My_Bucket", "should match pattern"),
        ("EDGEOPS_S3_INSECURE_SKIP_VERIFY", "maybe", "valid boolean"),
        ("EDGEOPS_S3_SECRET", "a/b/c", "'namespace/name' or 'name'"),
        ("EDGEOPS_S3_CA_BUNDLE", "/no/such/ca.pem", "does not point to a file"),
        ("EDGEOPS_S3_ENDPOINT", "s3.example:9000", "must be http(s)://host[:port]"),
        ("EDGEOPS_PROMETHEUS_URL", "prometheus:9090", "must be http(s)://host[:port]"),
        ("EDGEOPS_BIND_ADDRESS", "localhost", "IPv4 or IPv6 address"),
        ("EDGEOPS_NAMESPACE", "Edge_Ops", "should match pattern"),
        ("EDGEOPS_HTTP_SOURCE_ALLOWED_HOSTS", "data.example/x", "'data.example/x' is not a host"),
        ("EDGEOPS_HTTP_SOURCE_ALLOWED_HOSTS", " , ", "lists no host"),
        ("EDGEOPS_SOURCE_MAX_ROWS_PER_OBJECT", "0", "greater than or equal to 1"),
        ("EDGEOPS_SIGNING_KEY_SECRET", "Signing_Key", "should match pattern"),
    ],
)
def test_a_bad_value_is_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        settings()
    message = str(caught.value)
    assert message.startswith(f"invalid configuration: {name}: ")
    assert expected in message and "\n" not in message


def test_errors_never_show_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEOPS_S3_ENDPOINT", "ftp://user:hunter2@s3.example?token=abc")
    monkeypatch.setenv("EDGEOPS_S3_ACCESS_KEY", "AKIA-VALUE")
    monkeypatch.setenv("EDGEOPS_S3_SECRET_KEY", "SECRET-VALUE")
    monkeypatch.setenv("EDGEOPS_HEALTH_PORT", "x")
    with pytest.raises(SettingsError) as caught:
        settings()
    message = str(caught.value)
    assert "EDGEOPS_S3_ENDPOINT" in message and "EDGEOPS_HEALTH_PORT" in message
    assert "s3.example" in message
    for secret in ("hunter2", "abc", "AKIA-VALUE", "SECRET-VALUE"):
        assert secret not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"EDGEOPS_WATCH_CLIENT_TIMEOUT_SECONDS": "60"},
            "EDGEOPS_WATCH_CLIENT_TIMEOUT_SECONDS (60) must exceed "
            "EDGEOPS_WATCH_SERVER_TIMEOUT_SECONDS (60)",
        ),
        (
            {"EDGEOPS_HEALTH_PORT": "9000", "EDGEOPS_METRICS_PORT": "9000"},
            "EDGEOPS_HEALTH_PORT and EDGEOPS_METRICS_PORT are both 9000",
        ),
    ],
)
def test_settings_that_disagree_are_named(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=re.escape(expected)):
        settings()


def test_operator_run_stops_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEOPS_SIGNING_KEY_REFRESH_SECONDS", "-5")
    result = CliRunner().invoke(app, ["operator", "run"])
    assert result.exit_code == 2
    assert result.stderr == (
        "error: invalid configuration: EDGEOPS_SIGNING_KEY_REFRESH_SECONDS: "
        "Input should be greater than 0 (got '-5')\n"
    )
    assert "Traceback" not in result.output


# ----- secrets ----------------------------------------------------------------------------


def test_secrets_are_not_in_the_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEOPS_S3_ACCESS_KEY", "AKIA-VALUE")
    monkeypatch.setenv("EDGEOPS_S3_SECRET_KEY", "SECRET-VALUE")
    config = settings()
    for shown in (repr(config), str(config), config.model_dump_json(), str(config.model_dump())):
        assert "AKIA-VALUE" not in shown and "SECRET-VALUE" not in shown


# ----- the predictor ----------------------------------------------------------------------


def test_the_predictor_reads_its_public_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEOPS_SIGNING_PUBLIC_KEYS", '{"k1": "AAAA"}')
    for name, value in (("NAMESPACE", "ns"), ("NAME", "motion"), ("VERSION", "3")):
        monkeypatch.setenv(f"EDGEOPS_MODEL_{name}", value)
    config = predictor_settings()
    assert config.signing_public_keys == {"k1": "AAAA"}
    assert (config.model_namespace, config.model_name, config.model_version) == ("ns", "motion", 3)
    assert config.model_uid is None
    assert config.predictor_max_request_bytes == 4 * 1024 * 1024


def test_the_predictors_request_bound_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEOPS_SIGNING_PUBLIC_KEYS", '{"k1": "AAAA"}')
    for name, value in (("NAMESPACE", "ns"), ("NAME", "motion"), ("VERSION", "3")):
        monkeypatch.setenv(f"EDGEOPS_MODEL_{name}", value)
    monkeypatch.setenv("EDGEOPS_PREDICTOR_MAX_REQUEST_BYTES", "65536")
    assert predictor_settings().predictor_max_request_bytes == 65536
    predictor_settings.cache_clear()
    monkeypatch.setenv("EDGEOPS_PREDICTOR_MAX_REQUEST_BYTES", "10")
    with pytest.raises(SettingsError, match="EDGEOPS_PREDICTOR_MAX_REQUEST_BYTES: "):
        predictor_settings()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "Field required"),
        ("{", "Invalid JSON"),
        ("{}", "at least 1 item"),
        ("[1]", "valid dictionary"),
    ],
)
def test_the_predictor_needs_public_keys(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: str
) -> None:
    if value is not None:
        monkeypatch.setenv("EDGEOPS_SIGNING_PUBLIC_KEYS", value)
    with pytest.raises(SettingsError, match="EDGEOPS_SIGNING_PUBLIC_KEYS: ") as caught:
        predictor_settings()
    assert expected in str(caught.value)


# ----- documentation and chart ------------------------------------------------------------


def test_the_readme_table_is_generated_from_the_model() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme_block() in readme, (
        "README.md's settings table is stale: run `python -m edgeops.settings README.md`"
    )


def _value(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for part in path.split("."):
        assert isinstance(node, dict) and part in node, f"{path} is not in values.yaml"
        node = node[part]
    return node


def _env_entries(template: str) -> dict[str, str]:
    """Each ``- name: EDGEOPS_...`` entry of the Deployment template with the line after it."""
    lines = template.splitlines()
    return {
        match.group(1): lines[i + 1]
        for i, line in enumerate(lines)
        if (match := re.fullmatch(r"\s*- name: (EDGEOPS_[A-Z0-9_]+)", line))
    }


def _check_chart_entries(model: type[Any], entries: dict[str, str]) -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    for field, info in model.model_fields.items():
        extra = _extra(model, field)
        source = entries[env_name(field, model)]
        path = extra[CHART]
        if path is None:
            assert "valueFrom" in source, field
            continue
        chart_value = _value(values, path)
        if CHART_SECRET_KEY in extra:
            assert f"name: {{{{ .Values.{path} }}}}" in source, field
            assert f"key: {extra[CHART_SECRET_KEY]}" in source, field
            continue
        assert source.strip() == f"value: {{{{ .Values.{path} | quote }}}}", field
        default = extra.get(CHART_DEFAULT, info.default)
        assert chart_value == ("" if default is None else default), (
            f"values.yaml {path} = {chart_value!r}, but the default of "
            f"{env_name(field, model)} is {default!r}"
        )


def test_the_chart_sets_every_setting_from_its_value() -> None:
    entries = _env_entries((CHART_DIR / "templates" / "deployment.yaml").read_text())
    fields = OperatorSettings.model_fields
    assert set(entries) == {env_name(f) for f in fields}, "the chart sets exactly the settings"
    _check_chart_entries(OperatorSettings, entries)


def test_the_chart_sets_every_gateway_setting_from_its_value() -> None:
    entries = _env_entries((CHART_DIR / "templates" / "gateway.yaml").read_text())
    own = {e: line for e, line in entries.items() if e.startswith("EDGEOPS_GATEWAY_")}
    assert set(own) == {env_name(f, GatewaySettings) for f in GatewaySettings.model_fields}
    _check_chart_entries(GatewaySettings, own)
    # The rest are the operator's settings the gateway reads (S3), never a setting of its own.
    assert set(entries) - set(own) <= {env_name(f) for f in OperatorSettings.model_fields}


def test_every_edgeops_variable_in_the_code_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    # Python names that merely look like variables: a constant of the api package.
    not_variables = {"EDGEOPS_IMAGE_REPOSITORIES"}
    named = set()
    for path in (ROOT / "operator" / "edgeops").rglob("*.py"):
        named |= set(re.findall(r"[\"'](EDGEOPS_[A-Z0-9_]*[A-Z0-9])[\"']", path.read_text()))
    named |= {env_name(f) for f in OperatorSettings.model_fields}
    named |= {env_name(f, PredictorSettings) for f in PredictorSettings.model_fields}
    named |= {env_name(f, GatewaySettings) for f in GatewaySettings.model_fields}
    undocumented = sorted(n for n in named - not_variables if f"`{n}`" not in readme)
    assert undocumented == [], "document these in README.md, Configuration"


def test_a_training_pod_reads_its_session_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEOPS_S3_SESSION_TOKEN", "token-of-the-run")
    token = trainer_settings().s3_session_token
    assert token is not None and token.get_secret_value() == "token-of-the-run"
    assert "token-of-the-run" not in repr(trainer_settings())
    trainer_settings.cache_clear()


def test_the_gateway_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "EDGEOPS_GATEWAY_PORT": "9443",
        "EDGEOPS_GATEWAY_BIND_ADDRESS": "0.0.0.0",
        "EDGEOPS_GATEWAY_MAX_BODY_BYTES": "4096",
        "EDGEOPS_GATEWAY_SIGNATURE_WINDOW_SECONDS": "60",
        "EDGEOPS_GATEWAY_REQUESTS_PER_MINUTE": "10",
        "EDGEOPS_GATEWAY_ENROLLMENTS_PER_MINUTE": "5",
        "EDGEOPS_GATEWAY_CACHE_SECONDS": "0",
        "EDGEOPS_GATEWAY_LAST_SEEN_SECONDS": "30",
        "EDGEOPS_GATEWAY_PRESIGN_SECONDS": "120",
        "EDGEOPS_GATEWAY_REPLAY_SCOPE": "replica",
    }
    assert set(env) == {env_name(f, GatewaySettings) for f in GatewaySettings.model_fields}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    gateway_settings.cache_clear()
    config = gateway_settings()
    assert (config.gateway_port, config.gateway_bind_address) == (9443, "0.0.0.0")
    assert config.gateway_max_body_bytes == 4096
    assert config.gateway_signature_window_seconds == 60
    assert config.gateway_requests_per_minute == 10
    assert config.gateway_enrollments_per_minute == 5
    assert (config.gateway_cache_seconds, config.gateway_last_seen_seconds) == (0, 30)
    assert config.gateway_presign_seconds == 120
    assert config.gateway_replay_scope == "replica"
    gateway_settings.cache_clear()
