"""The gateway's ``/v1`` API from the device's side (:mod:`edgeops.api.wire`).

Every request is signed with the device's Ed25519 key (:func:`edgeops.httpsig.sign_request`,
``keyid`` = ``<namespace>/<name>``). Reports get the next number of the device's persistent
:class:`~edgeops.device.sequence.Sequence` (written to disk before the request leaves).
Errors are :class:`GatewayError` carrying the gateway's ``reason``; those worth retrying
later (429, 5xx, the gateway unreachable) are :class:`RetryableError` with the
``Retry-After`` the gateway asked for; :class:`Backoff` turns them into a jittered delay.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ValidationError

from edgeops.api.wire import (
    DesiredState,
    EnrollRequest,
    SampleUpload,
    StatusReport,
    TelemetryReport,
)
from edgeops.device.sequence import Sequence
from edgeops.httpsig import sign_request

DEFAULT_TIMEOUT_SECONDS: Final = 30.0
#: 404 reasons of ``GET .../desired`` meaning "nothing for this device now" (not an error
#: of the request: the device waits and polls again).
UNASSIGNED_REASONS: Final = frozenset({"NothingAssigned", "NoTarget", "NoBundle"})
_CHUNK = 64 * 1024
R = TypeVar("R", StatusReport, TelemetryReport, SampleUpload)


class GatewayError(Exception):
    """The gateway refused a request: HTTP ``status`` (0 when it was not reached) and its
    JSON ``reason`` (CamelCase)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


class RetryableError(GatewayError):
    """Worth trying again later: rate limited, gateway overloaded or unreachable.
    ``retry_after`` is the delay in seconds the gateway asked for, if it did."""

    def __init__(
        self, status: int, reason: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(status, reason, message)
        self.retry_after = retry_after


class DownloadError(Exception):
    """An artifact could not be fetched (``reason``: DownloadFailed or SizeMismatch)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Backoff:
    """Exponential backoff with full jitter (seconds), never shorter than a Retry-After.

    Delay ``n`` (0-based) is uniform in ``[0, min(cap, base * 2**n)]``, so a fleet that lost
    its gateway does not come back in lockstep.
    """

    def __init__(
        self, base: float = 1.0, cap: float = 300.0, rng: random.Random | None = None
    ) -> None:
        self.base, self.cap = base, cap
        self.rng = rng or random.Random()
        self.failures = 0

    def next_delay(self, retry_after: float | None = None) -> float:
        """The delay before the next try after one more failure."""
        ceiling = min(self.cap, self.base * 2**self.failures)
        self.failures += 1
        delay = self.rng.uniform(0, ceiling)
        return max(delay, retry_after or 0.0)

    def reset(self) -> None:
        """A request succeeded: the next failure starts from ``base`` again."""
        self.failures = 0


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date: ignore, the jittered backoff still applies


def _error(response: httpx.Response) -> GatewayError:
    try:
        body = response.json()
        reason, message = str(body["reason"]), str(body.get("message", ""))
    except (ValueError, KeyError, TypeError):
        reason, message = f"Http{response.status_code}", response.text[:200]
    if response.status_code == 429 or response.status_code >= 500:
        return RetryableError(response.status_code, reason, message, _retry_after(response))
    return GatewayError(response.status_code, reason, message)


class GatewayClient:
    """One device's signed conversation with the gateway (asyncio; one per device)."""

    def __init__(
        self,
        base_url: str,
        namespace: str,
        name: str,
        key: Ed25519PrivateKey,
        sequence: Sequence,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.namespace, self.name = namespace, name
        self.keyid = f"{namespace}/{name}"
        self._key = key
        self.sequence = sequence
        self._clock = clock
        self._http = httpx.AsyncClient(base_url=base_url, transport=transport, timeout=timeout)
        # Presigned artifact URLs point at S3, not at the gateway: no base URL, no signature.
        self._downloads = httpx.AsyncClient(transport=transport, timeout=timeout)
        self._etag: str | None = None
        self._desired: DesiredState | None = None
        #: Why the last poll assigned nothing (404 ``NothingAssigned``, ``NoTarget``,
        #: ``NoBundle``), None after a poll that assigned a version.
        self.refusal: GatewayError | None = None

    @property
    def device_path(self) -> str:
        return f"/v1/devices/{self.namespace}/{self.name}"

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._downloads.aclose()

    async def _send(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        stream: bool = False,
    ) -> httpx.Response:
        signed = sign_request(self._key, self.keyid, method, path, body, created=int(self._clock()))
        all_headers = {**signed, **(headers or {})}
        if body:
            all_headers["Content-Type"] = "application/json"
        request = self._http.build_request(method, path, content=body, headers=all_headers)
        try:
            return await self._http.send(request, stream=stream)
        except httpx.TransportError as exc:
            raise RetryableError(0, "GatewayUnreachable", f"{type(exc).__name__}: {exc}") from None

    async def _json(self, method: str, path: str, document: BaseModel) -> Any:
        body = document.model_dump_json(by_alias=True, exclude_none=True).encode()
        response = await self._send(method, path, body)
        if response.status_code >= 300:
            raise _error(response)
        return response.json() if response.content else None

    async def enroll(self, request: EnrollRequest) -> str:
        """``POST /v1/enroll`` signed with the key it enrolls; the enrollment state
        (``Pending``, ``Approved``). Raises :class:`GatewayError`."""
        answer = await self._json("POST", "/v1/enroll", request)
        return str(answer.get("enrollment", "Pending"))

    async def desired(self) -> DesiredState | None:
        """The device's desired state, re-using the last one on 304 (ETag); None when the
        gateway assigns nothing (404 ``NothingAssigned``, ``NoTarget``, ``NoBundle``; kept
        in :attr:`refusal`). Raises :class:`GatewayError` (e.g. 403 ``DevicePending``)."""
        headers = {"If-None-Match": self._etag} if self._etag and self._desired else None
        response = await self._send("GET", f"{self.device_path}/desired", headers=headers)
        if response.status_code == 304 and self._desired is not None:
            self.refusal = None
            return self._desired
        if response.status_code == 404:
            error = _error(response)
            if error.reason in UNASSIGNED_REASONS:
                self._etag, self._desired, self.refusal = None, None, error
                return None
            raise error
        if response.status_code >= 300:
            raise _error(response)
        try:
            desired = DesiredState.model_validate_json(response.content)
        except ValidationError as exc:
            raise GatewayError(200, "InvalidDesiredState", str(exc)[:500]) from None
        self._etag, self._desired = response.headers.get("etag"), desired
        self.refusal = None
        return desired

    async def download_artifact(self, sha256: str, dest: Path, max_bytes: int) -> None:
        """Fetches the artifact ``sha256`` of the device's desired manifest into ``dest``
        (fsync-ed): ``GET .../artifacts/{sha256}`` answers 307 to a presigned URL, which is
        streamed with at most ``max_bytes`` accepted (the manifest's size: a longer body is
        refused before it fills the disk). Raises :class:`GatewayError` when the gateway
        refuses and :class:`DownloadError` when the transfer fails or is too long."""
        # Streamed: a gateway answering with the bytes themselves is read within the bound.
        response = await self._send("GET", f"{self.device_path}/artifacts/{sha256}", stream=True)
        try:
            await self._follow(response, dest, max_bytes)
        except httpx.TransportError as exc:
            raise DownloadError("DownloadFailed", f"{type(exc).__name__}: {exc}") from None
        finally:
            await response.aclose()

    async def _follow(self, response: httpx.Response, dest: Path, max_bytes: int) -> None:
        if response.status_code in (301, 302, 303, 307, 308):
            location = response.headers.get("location")
            if not location:
                raise DownloadError("DownloadFailed", "redirect without a Location")
            url = self._http.base_url.join(location)
            async with self._downloads.stream("GET", url) as body:
                await self._save(body, dest, max_bytes)
            return
        if response.status_code >= 300:
            await response.aread()  # the error body is small: {reason, message}
            raise _error(response)
        await self._save(response, dest, max_bytes)

    @staticmethod
    async def _save(response: httpx.Response, dest: Path, max_bytes: int) -> None:
        if response.status_code != 200:
            raise DownloadError(
                "DownloadFailed", f"artifact download answered HTTP {response.status_code}"
            )
        size = 0
        with dest.open("wb") as handle:
            async for chunk in response.aiter_bytes(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise DownloadError(
                        "SizeMismatch", f"artifact is longer than the {max_bytes} bytes listed"
                    )
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())

    async def _report(self, kind: str, report: R) -> R:
        # The number is on disk before the request leaves: a crash can skip it, never reuse.
        numbered = report.model_copy(update={"sequence": self.sequence.next()})
        await self._json("POST", f"{self.device_path}/{kind}", numbered)
        return numbered

    async def post_status(self, report: StatusReport) -> StatusReport:
        """``POST .../status`` with the next sequence (the one in ``report`` is replaced);
        the report as sent. Raises :class:`GatewayError`."""
        return await self._report("status", report)

    async def post_telemetry(self, report: TelemetryReport) -> TelemetryReport:
        """``POST .../telemetry``, numbered as :meth:`post_status`."""
        return await self._report("telemetry", report)

    async def post_samples(self, upload: SampleUpload) -> SampleUpload:
        """``POST .../samples``, numbered as :meth:`post_status`."""
        return await self._report("samples", upload)
