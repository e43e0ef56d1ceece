"""What storage failures become: store exceptions from S3 error answers, a misconfigured
store or credentials Secret, and the Dataset conditions each of them sets."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import urllib3.exceptions
from minio.error import S3Error

from edgeops.controllers import dataset as controller
from edgeops.controllers import storage
from edgeops.k8s import client as k8s
from edgeops.store import (
    ArtifactStore,
    ObjectMissingError,
    StorageMisconfiguredError,
    StorageRejectedError,
    StorageUnavailableError,
    StoreConfig,
)
from edgeops.store.retry import Backoff
from tests.unit.test_datasets_controller import SPEC, Harness
from tests.unit.test_datasets_ingest import ROWS, MemoryStore

CONFIG = StoreConfig("http://127.0.0.1:9", "access", "secret")


def _s3_error(code: str, message: str = "refused") -> S3Error:
    return S3Error(None, code, message, "/edgeops/k", "req", "host")  # type: ignore[arg-type]


class FailingClient:
    """A minio client whose every call raises ``error`` (and counts the calls)."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        def call(*_: Any, **__: Any) -> Any:
            self.calls += 1
            raise self.error

        return call


def _store(error: Exception) -> tuple[ArtifactStore, FailingClient]:
    client = FailingClient(error)
    store = ArtifactStore(CONFIG, client=client, backoff=Backoff(attempts=3, first_delay=0))  # type: ignore[arg-type]
    return store, client


@pytest.mark.parametrize(
    "code", ["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket"]
)
def test_refusals_become_storage_rejected_without_retries(code: str) -> None:
    store, client = _store(_s3_error(code, "The request was refused."))
    for operation in (
        lambda: store.get_bytes("k"),
        lambda: store.list("raw/"),
        lambda: store.stat("k"),
        lambda: store.put_bytes("k", b"x"),
    ):
        client.calls = 0
        with pytest.raises(StorageRejectedError) as caught:
            operation()
        assert caught.value.code == code
        assert str(caught.value).startswith(f"S3 refused: {code} (")
        assert "The request was refused." in str(caught.value)
        assert client.calls == 1  # permanent: not retried
    assert caught.value.credentials == (code != "NoSuchBucket")


def test_the_refused_bucket_is_named() -> None:
    store, _ = _store(_s3_error("NoSuchBucket"))
    with pytest.raises(StorageRejectedError, match="list raw/ in bucket 'other'"):
        store.list("raw/", bucket="other")


def test_a_missing_object_is_not_a_refusal() -> None:
    store, _ = _store(_s3_error("NoSuchKey"))
    with pytest.raises(ObjectMissingError, match=r"s3://other/k does not exist"):
        store.get_bytes("k", bucket="other")
    assert store.stat("k") is None
    assert not store.exists("k")


def test_transient_failures_are_retried_then_unavailable() -> None:
    for error in (
        _s3_error("SlowDown"),
        urllib3.exceptions.NewConnectionError(None, "refused"),  # type: ignore[arg-type]
    ):
        store, client = _store(error)
        with pytest.raises(StorageUnavailableError, match="after 3 attempts"):
            store.get_bytes("k")
        assert client.calls == 3


def test_a_bad_endpoint_is_shown_without_its_credentials() -> None:
    with pytest.raises(ValueError, match="endpoint must be") as caught:
        StoreConfig("ftp://user:hunter2@s3.example?token=abc", "a", "s")
    assert "hunter2" not in str(caught.value) and "abc" not in str(caught.value)
    assert "s3.example" in str(caught.value)


# ----- the operator's store: environment and credentials Secret -------------------------


@pytest.fixture
def fresh_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "_store", None)
    for name in ("EDGEOPS_S3_ACCESS_KEY", "EDGEOPS_S3_SECRET_KEY", "EDGEOPS_S3_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EDGEOPS_S3_ENDPOINT", "http://127.0.0.1:9")


class ApiError(Exception):
    """Stands in for kubernetes' ApiException (the controller matches on .status)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"({status})")
        self.status = status


@pytest.mark.usefixtures("fresh_store")
def test_missing_settings_are_a_misconfiguration() -> None:
    with pytest.raises(StorageMisconfiguredError, match="missing access key"):
        storage.artifact_store()


@pytest.mark.usefixtures("fresh_store")
@pytest.mark.parametrize(
    ("status", "expected"), [(404, "does not exist"), (403, "not readable by the operator")]
)
def test_an_unusable_secret_is_a_misconfiguration(
    monkeypatch: pytest.MonkeyPatch, status: int, expected: str
) -> None:
    monkeypatch.setenv("EDGEOPS_S3_SECRET", "edgeops-system/s3-creds")

    def read(_ns: str, _name: str) -> dict[str, str]:
        raise ApiError(status)

    monkeypatch.setattr(k8s, "read_secret", read)
    with pytest.raises(
        StorageMisconfiguredError, match=f"Secret edgeops-system/s3-creds.*{expected}"
    ):
        storage.artifact_store()


@pytest.mark.usefixtures("fresh_store")
def test_an_unreachable_api_server_is_not_a_misconfiguration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDGEOPS_S3_SECRET", "s3-creds")
    monkeypatch.setenv("EDGEOPS_NAMESPACE", "ops")

    def read(_ns: str, _name: str) -> dict[str, str]:
        raise ApiError(503)

    monkeypatch.setattr(k8s, "read_secret", read)
    with pytest.raises(StorageUnavailableError, match="Secret ops/s3-creds"):
        storage.artifact_store()


@pytest.mark.usefixtures("fresh_store")
def test_an_incomplete_secret_is_named_but_its_values_are_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDGEOPS_S3_SECRET", "edgeops-system/s3-creds")
    monkeypatch.setattr(k8s, "read_secret", lambda _ns, _n: {"accessKey": "AKIA-VALUE"})
    with pytest.raises(StorageMisconfiguredError) as caught:
        storage.artifact_store()
    message = str(caught.value)
    assert "missing secret key" in message and "Secret edgeops-system/s3-creds" in message
    assert "AKIA-VALUE" not in message
    # Fixed: the next use reads the Secret again.
    monkeypatch.setattr(k8s, "read_secret", lambda _ns, _n: {"accessKey": "a", "secretKey": "s"})
    assert storage.artifact_store().config.secret_key == "s"


# ----- Dataset conditions ---------------------------------------------------------------


class RefusingStore(MemoryStore):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def list(self, prefix: str, bucket: str | None = None) -> Any:
        raise self.error


def test_a_misconfigured_store_sets_storage_available_false(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    harness = Harness(monkeypatch, SPEC)

    def misconfigured() -> Any:
        raise StorageMisconfiguredError("S3 store is not configured: missing access key")

    monkeypatch.setattr(controller, "artifact_store", misconfigured)
    harness.tick()
    state, reason, message = harness.condition("StorageAvailable")
    assert (state, reason) == ("False", "StorageMisconfigured")
    assert message == "S3 store misconfigured: S3 store is not configured: missing access key"
    assert harness.condition("Ready")[:2] == ("False", "StorageMisconfigured")
    assert harness.events == [("StorageMisconfigured", message)]
    assert harness.retentions == 0  # retention needs the store too, and says so in the log


def test_refused_credentials_name_the_code_and_where_to_fix_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    harness = Harness(monkeypatch, SPEC)
    monkeypatch.setenv("EDGEOPS_S3_SECRET", "edgeops-system/edgeops-s3")
    forgotten: list[bool] = []
    monkeypatch.setattr(storage, "forget_store", lambda: forgotten.append(True))
    harness.store = RefusingStore(
        StorageRejectedError("InvalidAccessKeyId", "S3 refused: InvalidAccessKeyId (list x)")
    )
    harness.tick()
    state, reason, message = harness.condition("StorageAvailable")
    assert (state, reason) == ("False", "StorageRejected")
    assert message.startswith("S3 refused: InvalidAccessKeyId (list x); check the S3 credentials")
    assert "Secret edgeops-system/edgeops-s3" in message
    assert forgotten == [True]  # a corrected Secret is read again on the next attempt
    harness.tick()  # still refused: no second Event
    assert [r for r, _ in harness.events] == ["StorageRejected"]


def test_a_missing_bucket_is_a_refusal_not_an_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    harness = Harness(monkeypatch, SPEC)
    harness.store = RefusingStore(StorageRejectedError("NoSuchBucket", "S3 refused: NoSuchBucket"))
    harness.tick()
    state, reason, message = harness.condition("StorageAvailable")
    assert (state, reason) == ("False", "StorageRejected")
    assert "NoSuchBucket" in message and "check the bucket name" in message


def test_an_outage_is_still_storage_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    harness = Harness(monkeypatch, SPEC)
    harness.store = RefusingStore(StorageUnavailableError("list: S3 unavailable after 4 attempts"))
    harness.tick()
    assert harness.condition("StorageAvailable")[:2] == ("False", "StorageUnavailable")
    assert harness.condition("Ready")[:2] == ("False", "StorageUnavailable")


def test_an_object_deleted_while_collecting_is_retried_soon(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    harness = Harness(monkeypatch, SPEC)  # a 24h schedule
    harness.drop("a.csv", ROWS)
    harness.tick()
    published = harness.object["status"]["latestVersion"]
    harness.drop("b.csv", ROWS[:5])
    harness.memo["last_attempt"] -= timedelta(days=1)  # the next collection is due
    reads = harness.store.get_bytes

    def vanishing(key: str, bucket: str | None = None) -> bytes:
        if key.endswith("b.csv"):
            harness.store.objects.pop(key)
        return reads(key, bucket)

    monkeypatch.setattr(harness.store, "get_bytes", vanishing)
    harness.tick()
    state, reason, message = harness.condition("Ready")
    assert (state, reason) == ("True", "CollectionFailed")
    assert "collection failed: inbox/team/imu/b.csv (a source object was removed" in message
    assert "retrying in 10s" in message
    assert harness.condition("StorageAvailable")[:2] == ("True", "StorageReachable")
    assert harness.object["status"]["latestVersion"] == published
    # Retried after RACE_RETRY_SECONDS, not after the 24h schedule.
    monkeypatch.setattr(harness.store, "get_bytes", reads)
    harness.memo["retry_at"] -= timedelta(seconds=controller.RACE_RETRY_SECONDS)
    harness.tick()
    assert harness.condition("Ready")[:2] == ("True", "NoNewData")
