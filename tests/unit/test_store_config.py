"""Store configuration, key derivation and the retry policy (no server needed)."""

from __future__ import annotations

import pytest
import urllib3.exceptions
from minio.error import S3Error, ServerError

from edgeops.settings import OperatorSettings
from edgeops.store import StorageUnavailableError, StoreConfig, blob_key
from edgeops.store.artifacts import _cap
from edgeops.store.retry import Backoff, is_transient, with_retries

ENV = {
    "EDGEOPS_S3_ENDPOINT": "http://127.0.0.1:9000",
    "EDGEOPS_S3_ACCESS_KEY": "env-access",
    "EDGEOPS_S3_SECRET_KEY": "env-secret",
}


def _settings(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> OperatorSettings:
    for name in (*ENV, "EDGEOPS_S3_BUCKET", "EDGEOPS_S3_SECRET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return OperatorSettings()


def test_config_from_settings_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    config = StoreConfig.from_settings(_settings(monkeypatch, ENV))
    assert (config.host, config.secure, config.bucket) == ("127.0.0.1:9000", False, "edgeops")
    assert (config.access_key, config.secret_key) == ("env-access", "env-secret")
    from_secret = StoreConfig.from_settings(
        _settings(monkeypatch, {"EDGEOPS_S3_BUCKET": "data"}),
        {"accessKey": "a", "secretKey": "s", "endpoint": "https://s3.example:443"},
    )
    assert from_secret.secure and from_secret.access_key == "a" and from_secret.bucket == "data"


def test_secret_credentials_win_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    config = StoreConfig.from_settings(
        _settings(monkeypatch, ENV), {"accessKey": "sa", "secretKey": "ss"}
    )
    assert (config.access_key, config.secret_key) == ("sa", "ss")
    assert "ss" not in repr(config) and "env-secret" not in repr(config)


def test_missing_settings_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    partial = {"EDGEOPS_S3_ENDPOINT": "http://x:1", "EDGEOPS_S3_SECRET_KEY": "s"}
    with pytest.raises(ValueError, match="access key"):
        StoreConfig.from_settings(_settings(monkeypatch, partial))
    settings = _settings(monkeypatch, {"EDGEOPS_S3_ACCESS_KEY": "a", "EDGEOPS_S3_SECRET_KEY": "s"})
    with pytest.raises(ValueError, match="endpoint must be"):
        StoreConfig.from_settings(settings, {"endpoint": "ftp://x"})


def test_blob_keys_are_derived_from_the_hash() -> None:
    sha = "ab" + "0" * 62
    assert blob_key(sha) == f"blobs/sha256/ab/{sha}"
    with pytest.raises(ValueError):
        blob_key("AB" + "0" * 62)


def test_presigned_lifetimes_are_capped() -> None:
    from datetime import timedelta

    assert _cap(timedelta(days=7)) == timedelta(hours=1)
    with pytest.raises(ValueError):
        _cap(timedelta(0))


def _s3_error(code: str) -> S3Error:
    return S3Error(None, code, "m", "r", "req", "host")  # type: ignore[arg-type]


def test_transient_errors_are_classified() -> None:
    assert is_transient(ServerError("boom", 503))
    assert is_transient(urllib3.exceptions.MaxRetryError(None, "/", None))  # type: ignore[arg-type]
    assert is_transient(_s3_error("SlowDown"))
    assert not is_transient(_s3_error("AccessDenied"))
    assert not is_transient(ValueError("bug"))


def test_retries_then_succeeds_or_reports_unavailable() -> None:
    sleeps: list[float] = []
    calls = iter([ServerError("x", 500), ServerError("x", 500), "ok"])

    def flaky() -> str:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    assert with_retries(flaky, "op", Backoff(attempts=3, first_delay=0.1), sleeps.append) == "ok"
    assert sleeps == [0.1, 0.2]

    def down() -> str:
        raise urllib3.exceptions.NewConnectionError(None, "refused")  # type: ignore[arg-type]

    with pytest.raises(StorageUnavailableError, match="after 4 attempts"):
        with_retries(down, "op", Backoff(), lambda _: None)


def test_permanent_errors_are_not_retried() -> None:
    sleeps: list[float] = []

    def denied() -> None:
        raise _s3_error("AccessDenied")

    with pytest.raises(S3Error):
        with_retries(denied, "op", Backoff(), sleeps.append)
    assert sleeps == []
