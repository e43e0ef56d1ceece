"""Listing and fetching a Dataset's sources: S3 prefixes, HTTP(S) files, the device inbox
and built-in datasets.

Listing is cheap and yields a fingerprint per object (key, ETag, size) so a collection
can tell "nothing new" without downloading anything. An HTTP(S) file's fingerprint is its
content hash; the ETag / Last-Modified of the last download make the next request
conditional, so an unchanged file (304 Not Modified) is not downloaded again.

A source URL may carry credentials (user:password@, a presigned ?X-Amz-Signature=...):
messages, logs and source names only ever show it through :func:`redact_url`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from edgeops.api import DataFormat, DatasetSource, DatasetSpec, Reason
from edgeops.policy.samples import INBOX_OBJECT_SUFFIX
from edgeops.redaction import redact_url as redact_url  # re-exported: the datasets API
from edgeops.settings import settings

from . import builtin, layout
from .addresses import AddressPolicy, AddressRefusedError, Resolver, check_host, system_resolver
from .cleaning import kept_columns
from .protocol import Store
from .readers import MIB, ReadLimits, matches_format, read_rows
from .rows import Rejected, RejectReason, Row

log = logging.getLogger(__name__)

#: Redirects one download may follow; each hop is checked like the first URL.
MAX_REDIRECTS: Final = 5
#: Seconds to wait for a connection or for one read, within the fetch's overall deadline.
CONNECT_TIMEOUT_SECONDS: Final = 10.0
READ_TIMEOUT_SECONDS: Final = 30.0
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class HttpValidators:
    """What the last download of a URL returned: its content hash and the validators
    that make the next request conditional. ``key`` is a hash of the URL, so the index
    that stores these never holds the URL (nor credentials in it)."""

    key: str
    sha256: str
    etag: str | None = None
    last_modified: str | None = None

    def to_json(self) -> dict[str, str]:
        document = {"sha256": self.sha256}
        if self.etag:
            document["etag"] = self.etag
        if self.last_modified:
            document["lastModified"] = self.last_modified
        return document

    @classmethod
    def from_json(cls, key: str, document: Any) -> HttpValidators | None:
        if not isinstance(document, dict) or not isinstance(document.get("sha256"), str):
            return None
        etag, modified = document.get("etag"), document.get("lastModified")
        return cls(
            key,
            document["sha256"],
            etag if isinstance(etag, str) else None,
            modified if isinstance(modified, str) else None,
        )


@dataclass(frozen=True)
class HttpResponse:
    """A download; ``body`` is None when the server answered 304 Not Modified."""

    body: bytes | None
    etag: str | None = None
    last_modified: str | None = None


#: Fetches a URL, conditionally when validators of an earlier download are given.
HttpFetch = Callable[[str, HttpValidators | None], HttpResponse]


class SourceUnavailableError(Exception):
    """A source could not be read (HTTP error, checksum mismatch, missing package).
    ``reason`` is the Dataset condition reason it is reported with."""

    reason: str = Reason.SOURCE_UNAVAILABLE


class SourceRefusedError(SourceUnavailableError):
    """An HTTP(S) source's host, or a redirect's, may not be fetched from (see
    :mod:`edgeops.datasets.addresses`). Raised before any connection to it; the message
    names the URL (redacted) and the settings, never what the host resolved to."""

    reason = Reason.SOURCE_REFUSED


class SourceLimitError(SourceUnavailableError):
    """An HTTP(S) download went over a configured bound (size or deadline); the message
    names the setting."""

    reason = Reason.SOURCE_LIMIT_EXCEEDED


@dataclass(frozen=True)
class SourceBatch:
    """One file or built-in dataset: its display name, fingerprint and rows."""

    name: str
    fingerprint: str
    rows: Callable[[], Iterator[Row | Rejected]]
    #: An HTTP(S) file's validators, to remember for the next (conditional) request.
    validators: HttpValidators | None = None
    #: The server answered 304: ``fingerprint`` is the remembered content hash and there
    #: are no rows to read (list again without validators to download them).
    not_modified: bool = False
    #: The object's bytes and how to read them, for a collection that tries the
    #: vectorised reader first (:mod:`edgeops.datasets.fastpath`); None for built-in
    #: datasets and objects rejected unread.
    raw: RawObject | None = None


@dataclass(frozen=True)
class RawObject:
    """A source object as bytes: ``fetch`` downloads it, ``read`` gives its rows through
    the row readers (what ``SourceBatch.rows`` does), ``fmt``/``encoding`` as declared."""

    fetch: Callable[[], bytes]
    read: Callable[[bytes], Iterator[Row | Rejected]]
    fmt: DataFormat
    encoding: str | None


def http_key(url: str) -> str:
    """Names a URL in stored state without storing it."""
    return hashlib.sha256(url.encode()).hexdigest()


@dataclass(frozen=True)
class FetchLimits:
    """Bounds of one download: its overall deadline (seconds, from the first name
    resolution to the last byte) and its size (bytes)."""

    deadline_seconds: float
    max_bytes: int
    policy: AddressPolicy

    @classmethod
    def from_settings(cls) -> FetchLimits:
        config = settings()
        return cls(
            config.http_source_deadline_seconds,
            config.source_max_object_mib * MIB,
            AddressPolicy.from_settings(config),
        )


_REFUSED = (
    "refused: the host is not one HTTP(S) sources may use (private, loopback, link-local "
    "and metadata addresses are refused unless EDGEOPS_HTTP_SOURCE_ALLOW_PRIVATE_NETWORKS "
    "is set; EDGEOPS_HTTP_SOURCE_ALLOWED_HOSTS lists the hosts allowed)"
)


def http_fetch(
    url: str,
    known: HttpValidators | None = None,
    *,
    limits: FetchLimits | None = None,
    resolve: Resolver = system_resolver,
) -> HttpResponse:
    """Downloads ``url``. With ``known`` validators the request is conditional
    (If-None-Match / If-Modified-Since) and a 304 returns no body.

    Each hop (the URL, then at most :data:`MAX_REDIRECTS` redirects) is resolved once and
    every address checked (:func:`edgeops.datasets.addresses.check_host`) before the
    connection, which then goes to that checked address with the original host in the
    Host header and TLS server name. ``limits`` default to the settings
    (``EDGEOPS_HTTP_SOURCE_*``, ``EDGEOPS_SOURCE_MAX_OBJECT_MIB``); ``resolve`` is the DNS
    lookup (tests replace it). The environment's proxy variables are not used: a proxy
    would connect to hosts this check never saw.

    Raises:
        SourceRefusedError: a hop's host is refused; nothing was sent to it.
        SourceLimitError: the body is larger than ``limits.max_bytes`` or the download
            took longer than ``limits.deadline_seconds`` in all.
        SourceUnavailableError: an HTTP error status, a connection failure, a redirect
            loop or a redirect to another scheme.
    """
    limits = limits or FetchLimits.from_settings()
    shown = redact_url(url)
    deadline = time.monotonic() + limits.deadline_seconds
    headers: dict[str, str] = {"Accept-Encoding": "identity"}
    if known is not None:
        if known.etag:
            headers["If-None-Match"] = known.etag
        if known.last_modified:
            headers["If-Modified-Since"] = known.last_modified
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise SourceUnavailableError(f"{shown}: not a valid URL") from None
    watchdog = _Watchdog(deadline)
    with watchdog, httpx.Client(trust_env=False, follow_redirects=False) as client:
        for hop in range(MAX_REDIRECTS + 1):
            if target.scheme not in ("http", "https"):
                raise SourceUnavailableError(f"{shown}: redirected to a non-HTTP(S) URL")
            with _send(client, target, headers, limits, watchdog, shown, resolve) as response:
                location = response.headers.get("Location")
                if response.status_code in _REDIRECTS and location:
                    if hop == MAX_REDIRECTS:
                        raise SourceUnavailableError(
                            f"{shown}: more than {MAX_REDIRECTS} redirects"
                        )
                    target = _redirect_target(target, location, shown)
                    continue
                if response.status_code == 304 and known is not None:
                    return HttpResponse(None)
                if response.is_error or response.status_code >= 300:
                    raise SourceUnavailableError(f"{shown}: HTTP {response.status_code}")
                body = _read_body(response, limits, watchdog, shown)
                return HttpResponse(
                    body, response.headers.get("ETag"), response.headers.get("Last-Modified")
                )
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def _redirect_target(current: httpx.URL, location: str, shown: str) -> httpx.URL:
    try:
        target = current.join(location)
    except (httpx.InvalidURL, ValueError):
        raise SourceUnavailableError(f"{shown}: redirected to an invalid URL") from None
    same_origin = (target.scheme, target.host, target.port) == (
        current.scheme,
        current.host,
        current.port,
    )
    if same_origin and not target.userinfo and current.userinfo:
        # Credentials of the URL travel to its own origin only (as httpx does).
        target = target.copy_with(username=current.username, password=current.password)
    return target


class _Watchdog:
    """The overall deadline of one download. Per-read timeouts alone do not end a server
    that trickles a byte every few seconds (each read succeeds), in the headers or the
    body; so at the deadline this shuts down every socket the download opened, which ends
    a blocked read at once. It learns the sockets from httpcore's ``trace`` extension,
    which also confirms each connection goes to the checked address."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._pinned: str | None = None
        self._fired = False
        self._timer = threading.Timer(_remaining(deadline), self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()

    @property
    def expired(self) -> bool:
        return self._fired or time.monotonic() >= self.deadline

    def pin(self, address: str) -> None:
        """The address the next connection must go to."""
        self._pinned = address

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.started" and info.get("host") != self._pinned:
            # Never happens: the URL's host is the checked address. Refuse rather than trust.
            raise httpx.ConnectError("connection to an address that was not checked")
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if isinstance(sock, socket.socket):
                with self._lock:
                    self._sockets.append(sock)
                    fired = self._fired
                if fired:
                    self._fire()

    def _fire(self) -> None:
        with self._lock:
            self._fired = True
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError, ValueError):
                sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def _send(
    client: httpx.Client,
    target: httpx.URL,
    headers: dict[str, str],
    limits: FetchLimits,
    watchdog: _Watchdog,
    shown: str,
    resolve: Resolver,
) -> Iterator[httpx.Response]:
    """Sends one GET to the checked address of ``target``'s host and yields the streamed
    response (headers read, body not)."""
    port = target.port or (443 if target.scheme == "https" else 80)
    remaining = _remaining(watchdog.deadline)
    try:
        address = check_host(target.host, port, limits.policy, remaining, resolve)
    except AddressRefusedError as refused:
        log.warning("HTTP(S) source %s refused: %s", shown, refused.why)
        raise SourceRefusedError(f"{shown}: {_REFUSED}") from None
    watchdog.pin(str(address))
    pinned = target.copy_with(host=str(address))
    remaining = _remaining(watchdog.deadline)
    timeout = httpx.Timeout(
        min(READ_TIMEOUT_SECONDS, remaining), connect=min(CONNECT_TIMEOUT_SECONDS, remaining)
    )
    extensions: dict[str, Any] = {"trace": watchdog.trace}
    if target.scheme == "https":
        extensions["sni_hostname"] = target.host
    request = client.build_request(
        "GET",
        pinned,
        headers={**headers, "Host": target.netloc.decode("ascii")},
        timeout=timeout,
        extensions=extensions,
    )
    try:
        response = client.send(request, stream=True)
    except httpx.HTTPError as error:
        if watchdog.expired:
            raise _deadline_exceeded(shown, limits) from None
        raise SourceUnavailableError(f"{shown}: {type(error).__name__}") from None
    try:
        yield response
    finally:
        response.close()


def _read_body(
    response: httpx.Response, limits: FetchLimits, watchdog: _Watchdog, shown: str
) -> bytes:
    """The body, read until ``limits.max_bytes`` or the deadline, whichever comes first."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise _too_large(shown, limits)
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limits.max_bytes:
                raise _too_large(shown, limits)
            if watchdog.expired:
                raise _deadline_exceeded(shown, limits)
            chunks.append(chunk)
    except httpx.HTTPError as error:
        if watchdog.expired:
            raise _deadline_exceeded(shown, limits) from None
        raise SourceUnavailableError(f"{shown}: {type(error).__name__}") from None
    if watchdog.expired:
        raise _deadline_exceeded(shown, limits)
    return b"".join(chunks)


def _remaining(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.001)


def _too_large(shown: str, limits: FetchLimits) -> SourceLimitError:
    return SourceLimitError(
        f"{shown}: larger than {limits.max_bytes} bytes (EDGEOPS_SOURCE_MAX_OBJECT_MIB)"
    )


def _deadline_exceeded(shown: str, limits: FetchLimits) -> SourceLimitError:
    return SourceLimitError(
        f"{shown}: not downloaded within {limits.deadline_seconds:g}s "
        "(EDGEOPS_HTTP_SOURCE_DEADLINE_SECONDS)"
    )


def http_get(url: str) -> bytes:
    """Downloads ``url`` unconditionally."""
    body = http_fetch(url).body
    assert body is not None  # only a conditional request can answer 304
    return body


def list_batches(
    spec: DatasetSpec,
    store: Store,
    namespace: str,
    dataset: str,
    fetch_url: HttpFetch = http_fetch,
    known: Mapping[str, HttpValidators] | None = None,
) -> list[SourceBatch]:
    """Every source's batches. ``known`` holds the validators of earlier downloads by
    :func:`http_key`: an HTTP(S) file the server reports unchanged is not downloaded
    (its batch is ``not_modified``).

    Raises SourceRefusedError before anything is listed or read when an ``s3`` source
    resolves to a reserved root of the operator's own bucket (:func:`layout.check_s3_source`,
    whether the bucket is named or defaulted), SourceUnavailableError, StoreError."""
    operator_buckets = {store.bucket, settings().s3_bucket}
    for source in spec.sources:
        if source.s3 is not None:
            try:
                layout.check_s3_source(
                    source.s3.bucket or store.bucket, source.s3.prefix, operator_buckets
                )
            except ValueError as error:
                raise SourceRefusedError(str(error)) from None
    batches: list[SourceBatch] = []
    for source in spec.sources:
        batches.extend(_batches(source, spec, store, namespace, dataset, fetch_url, known or {}))
    return batches


def _batches(
    source: DatasetSource,
    spec: DatasetSpec,
    store: Store,
    namespace: str,
    dataset: str,
    fetch_url: HttpFetch,
    known: Mapping[str, HttpValidators],
) -> Iterator[SourceBatch]:
    schema = spec.data_schema
    features = [f.name for f in schema.features] if schema else []
    label = schema.label if schema else None
    used = kept_columns(schema) if schema else None
    if source.builtin is not None:
        try:
            data = builtin.load(source.builtin.name)
        except builtin.BuiltinUnavailableError as error:
            raise SourceUnavailableError(str(error)) from None
        yield SourceBatch(f"builtin:{data.name}", data.fingerprint(), data.rows)
        return
    if source.http is not None:
        yield _http_batch(
            source.http.url, source.http.sha256, spec, fetch_url, known, source.encoding, used
        )
        return
    if source.s3 is not None:
        bucket, prefix = source.s3.bucket, source.s3.prefix
    else:
        assert source.inbox is not None
        bucket, prefix = None, layout.source_inbox_prefix(namespace, dataset, source.inbox.prefix)
    shown_bucket = bucket or store.bucket
    limits = ReadLimits.from_settings()
    for info in store.list(prefix, bucket=bucket):
        fmt = _object_format(info.key, spec.format, inbox=source.inbox is not None)
        if fmt is None:
            continue
        name = layout.s3_uri(shown_bucket, info.key)
        fingerprint = f"{info.key}:{info.etag}:{info.size}"
        if info.size > limits.max_object_bytes:
            # Rejected unread: the listing says how large it is.
            yield SourceBatch(name, fingerprint, _too_large_object(name, info.size, limits))
            continue

        def fetch(key: str = info.key) -> bytes:
            return store.get_bytes(key, bucket=bucket)

        # The gateway writes an inbox's objects as UTF-8: a declared encoding (refused for
        # inbox sources at admission; older objects may hold one) never applies to them.
        encoding = None if source.inbox is not None else source.encoding
        yield SourceBatch(
            name,
            fingerprint,
            _reader(fetch, fmt, name, features, label, encoding, used),
            raw=RawObject(
                fetch, _parser(fmt, name, features, label, encoding, used), fmt, encoding
            ),
        )


def _object_format(key: str, fmt: DataFormat, *, inbox: bool) -> DataFormat | None:
    """The format an object of a source is read in, or None to skip it: ``spec.format``
    by its extension; in an inbox also the gateway's device uploads (``*.jsonl``, see
    :mod:`edgeops.policy.samples`), which are JSON Lines whatever ``spec.format`` says."""
    if matches_format(key, fmt):
        return fmt
    if inbox and key.endswith(INBOX_OBJECT_SUFFIX):
        return "jsonl"
    return None


def _too_large_object(
    name: str, size: int, limits: ReadLimits
) -> Callable[[], Iterator[Row | Rejected]]:
    detail = (
        f"{size} bytes, more than {limits.max_object_bytes} (EDGEOPS_SOURCE_MAX_OBJECT_MIB); "
        "not downloaded"
    )
    return lambda: iter([Rejected(name, None, RejectReason.TOO_LARGE, detail)])


def _http_batch(
    url: str,
    pinned: str | None,
    spec: DatasetSpec,
    fetch_url: HttpFetch,
    known: Mapping[str, HttpValidators],
    encoding: str | None = None,
    used: list[str] | None = None,
) -> SourceBatch:
    schema = spec.data_schema
    features = [f.name for f in schema.features] if schema else []
    label = schema.label if schema else None
    shown, key = redact_url(url), http_key(url)
    previous = known.get(key)
    response = fetch_url(url, previous)
    if response.body is None:
        if previous is None:
            raise SourceUnavailableError(f"{shown}: HTTP 304 to an unconditional request")
        digest = previous.sha256
    else:
        digest = hashlib.sha256(response.body).hexdigest()
    if pinned and pinned != digest:
        raise SourceUnavailableError(f"{shown}: SHA-256 mismatch (expected {pinned})")
    if response.body is None:
        return SourceBatch(shown, digest, _not_downloaded(shown), previous, not_modified=True)
    body = response.body
    validators = None
    if response.etag or response.last_modified:
        validators = HttpValidators(key, digest, response.etag, response.last_modified)
    return SourceBatch(
        shown,
        digest,
        _reader(lambda: body, spec.format, shown, features, label, encoding, used),
        validators,
        raw=RawObject(
            lambda: body,
            _parser(spec.format, shown, features, label, encoding, used),
            spec.format,
            encoding,
        ),
    )


def _not_downloaded(shown: str) -> Callable[[], Iterator[Row | Rejected]]:
    def rows() -> Iterator[Row | Rejected]:
        raise AssertionError(f"{shown} was not downloaded (304): list without validators")

    return rows


def _reader(
    fetch: Callable[[], bytes],
    fmt: DataFormat,
    name: str,
    features: list[str],
    label: str | None,
    encoding: str | None = None,
    used: list[str] | None = None,
) -> Callable[[], Iterator[Row | Rejected]]:
    """Reads ``fetch()`` when called; ``used``: the columns the schema uses (see
    :func:`read_rows`)."""
    parse = _parser(fmt, name, features, label, encoding, used)
    return lambda: parse(fetch())


def _parser(
    fmt: DataFormat,
    name: str,
    features: list[str],
    label: str | None,
    encoding: str | None = None,
    used: list[str] | None = None,
) -> Callable[[bytes], Iterator[Row | Rejected]]:
    """:func:`read_rows` of given bytes, with this object's arguments."""
    return lambda data: read_rows(data, fmt, name, features, label, encoding=encoding, used=used)
