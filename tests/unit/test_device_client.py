"""The agent's identity, its persistent report sequence and the gateway client's wire
behaviour: signatures the gateway's verifier accepts, ETags, errors with their reason,
back-off honouring Retry-After."""

from __future__ import annotations

import asyncio
import json
import random
import stat
from pathlib import Path

import httpx
import pytest

from edgeops.api.wire import StatusReport
from edgeops.device.client import (
    Backoff,
    DownloadError,
    GatewayClient,
    GatewayError,
    RetryableError,
)
from edgeops.device.identity import KEY_FILE, IdentityError, load_or_create
from edgeops.device.sequence import SEQUENCE_FILE, Sequence
from tests.unit.device_support import NAMESPACE, FakeGateway, onnx_classifier


def test_the_key_is_generated_once_private_and_reloaded(tmp_path: Path) -> None:
    first = load_or_create(tmp_path)
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert load_or_create(tmp_path).public_b64 == first.public_b64
    (tmp_path / KEY_FILE).chmod(0o644)
    with pytest.raises(IdentityError, match="group or others"):
        load_or_create(tmp_path)


def test_the_sequence_survives_restarts(tmp_path: Path) -> None:
    seq = Sequence(tmp_path)
    assert [seq.next(), seq.next()] == [0, 1]
    assert Sequence(tmp_path).next() == 2


def test_a_sequence_reserving_blocks_writes_once_per_block_and_never_reuses(
    tmp_path: Path,
) -> None:
    writes: list[int] = []
    seq = Sequence(tmp_path, block=10)
    for _ in range(25):
        value = seq.next()
        on_disk = json.loads((tmp_path / SEQUENCE_FILE).read_text())["last"]
        assert on_disk >= value  # covered by the reservation before it is used
        if not writes or writes[-1] != on_disk:
            writes.append(on_disk)
    assert writes == [9, 19, 29]  # three writes for 25 numbers
    # A crash (no clean shutdown) after 24: the restart goes on after the reservation.
    again = Sequence(tmp_path, block=10)
    assert again.next() == 30
    with pytest.raises(ValueError, match="block"):
        Sequence(tmp_path, block=0)


def client_for(tmp_path: Path, gateway: FakeGateway) -> GatewayClient:
    identity = load_or_create(tmp_path)
    gateway.device_key = identity.public_b64
    return GatewayClient(
        "http://gateway.local", NAMESPACE, "dev-1", identity.key, Sequence(tmp_path),
        transport=gateway.transport(),
    )  # fmt: skip


def test_reports_are_signed_and_numbered_on_disk_before_they_leave(tmp_path: Path) -> None:
    gateway = FakeGateway()
    on_disk: list[int] = []
    gateway.on_request = lambda _: on_disk.append(
        json.loads((tmp_path / SEQUENCE_FILE).read_text())["last"]
    )
    client = client_for(tmp_path, gateway)

    async def go() -> list[int]:
        sent = [await client.post_status(StatusReport(sequence=0)) for _ in range(3)]
        return [s.sequence for s in sent]

    assert asyncio.run(go()) == [0, 1, 2]
    assert gateway.sequences == [0, 1, 2] and on_disk == [0, 1, 2]


def test_desired_uses_the_etag_and_none_when_nothing_is_assigned(tmp_path: Path) -> None:
    gateway = FakeGateway()
    client = client_for(tmp_path, gateway)
    seen: list[str | None] = []
    gateway.on_request = lambda r: seen.append(r.headers.get("if-none-match"))

    async def go() -> None:
        assert await client.desired() is None  # 404 NothingAssigned
        desired = gateway.publish(onnx_classifier(1))
        assert await client.desired() == desired
        assert await client.desired() == desired  # answered 304
        assert seen[0] is None and seen[1] is None and seen[2] is not None

    asyncio.run(go())


@pytest.mark.parametrize(
    ("response", "kind", "reason", "retry_after"),
    [
        (httpx.Response(429, json={"reason": "RateLimited", "message": "slow"},
                        headers={"Retry-After": "7"}), RetryableError, "RateLimited", 7.0),
        (httpx.Response(503, text="busy"), RetryableError, "Http503", None),
        (httpx.Response(403, json={"reason": "DevicePending", "message": "wait"}),
         GatewayError, "DevicePending", None),
    ],
)  # fmt: skip
def test_errors_carry_the_gateways_reason(
    tmp_path: Path,
    response: httpx.Response,
    kind: type[GatewayError],
    reason: str,
    retry_after: float | None,
) -> None:
    identity = load_or_create(tmp_path)
    client = GatewayClient(
        "http://gateway.local", NAMESPACE, "dev-1", identity.key, Sequence(tmp_path),
        transport=httpx.MockTransport(lambda _: response),
    )  # fmt: skip
    with pytest.raises(kind) as caught:
        asyncio.run(client.desired())
    assert caught.value.reason == reason
    assert type(caught.value) is kind
    assert getattr(caught.value, "retry_after", None) == retry_after


def test_an_unreachable_gateway_is_retryable(tmp_path: Path) -> None:
    gateway = FakeGateway(down=True)
    with pytest.raises(RetryableError) as caught:
        asyncio.run(client_for(tmp_path, gateway).desired())
    assert (caught.value.status, caught.value.reason) == (0, "GatewayUnreachable")


def test_backoff_is_jittered_exponential_and_honours_retry_after() -> None:
    backoff = Backoff(base=1.0, cap=8.0, rng=random.Random(3))
    delays = [backoff.next_delay() for _ in range(6)]
    assert all(0 <= d <= min(8.0, 2**i) for i, d in enumerate(delays))
    assert len(set(delays)) == 6  # jittered: no fleet in lockstep
    assert backoff.next_delay(retry_after=30) == 30
    backoff.reset()
    assert backoff.next_delay() <= 1.0


@pytest.mark.parametrize("limit_slack", [0, -1])
def test_an_artifact_served_directly_is_streamed_within_the_bound(
    tmp_path: Path, limit_slack: int
) -> None:
    data = b"x" * 300_000
    identity = load_or_create(tmp_path)
    client = GatewayClient(
        "http://gateway.local", NAMESPACE, "dev-1", identity.key, Sequence(tmp_path),
        transport=httpx.MockTransport(lambda _: httpx.Response(200, content=data)),
    )  # fmt: skip
    dest = tmp_path / "artifact"
    download = client.download_artifact("a" * 64, dest, len(data) + limit_slack)
    if limit_slack == 0:
        asyncio.run(download)
        assert dest.read_bytes() == data
    else:
        with pytest.raises(DownloadError) as caught:
            asyncio.run(download)
        assert caught.value.reason == "SizeMismatch"
        assert dest.stat().st_size < len(data)  # stopped at the bound
