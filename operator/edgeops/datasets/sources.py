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

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from edgeops.api import DatasetSource, DatasetSpec

from . import builtin, layout
from .protocol import Store
from .readers import matches_format, read_rows
from .rows import Rejected, Row

#: Bounded so one bad URL cannot exhaust the operator's memory.
MAX_HTTP_BYTES = 512 * 1024 * 1024


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
    """A source could not be read (HTTP error, checksum mismatch, missing package)."""


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


def redact_url(url: str) -> str:
    """``url`` without what may be credentials: user:password@ becomes ***@ and a query
    (tokens, presigned signatures) or fragment becomes ?***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = "***" if parts.query or parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def http_key(url: str) -> str:
    """Names a URL in stored state without storing it."""
    return hashlib.sha256(url.encode()).hexdigest()


def http_fetch(url: str, known: HttpValidators | None = None) -> HttpResponse:
    """Downloads ``url`` (at most MAX_HTTP_BYTES). With ``known`` validators the request
    is conditional (If-None-Match / If-Modified-Since) and a 304 returns no body."""
    shown = redact_url(url)
    headers: dict[str, str] = {}
    if known is not None:
        if known.etag:
            headers["If-None-Match"] = known.etag
        if known.last_modified:
            headers["If-Modified-Since"] = known.last_modified
    try:
        with httpx.stream(
            "GET", url, headers=headers, timeout=30.0, follow_redirects=True
        ) as response:
            if response.status_code == 304 and headers:
                return HttpResponse(None)
            response.raise_for_status()
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_HTTP_BYTES:
                    raise SourceUnavailableError(f"{shown}: larger than {MAX_HTTP_BYTES} bytes")
                chunks.append(chunk)
            return HttpResponse(
                b"".join(chunks),
                response.headers.get("ETag"),
                response.headers.get("Last-Modified"),
            )
    except httpx.HTTPStatusError as error:
        raise SourceUnavailableError(f"{shown}: HTTP {error.response.status_code}") from None
    except httpx.HTTPError as error:
        raise SourceUnavailableError(f"{shown}: {type(error).__name__}") from None


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
    (its batch is ``not_modified``)."""
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
    if source.builtin is not None:
        try:
            data = builtin.load(source.builtin.name)
        except builtin.BuiltinUnavailableError as error:
            raise SourceUnavailableError(str(error)) from None
        yield SourceBatch(f"builtin:{data.name}", data.fingerprint(), data.rows)
        return
    if source.http is not None:
        yield _http_batch(source.http.url, source.http.sha256, spec, fetch_url, known)
        return
    if source.s3 is not None:
        bucket, prefix = source.s3.bucket, source.s3.prefix
    else:
        assert source.inbox is not None
        bucket, prefix = None, layout.source_inbox_prefix(namespace, dataset, source.inbox.prefix)
    shown_bucket = bucket or store.bucket
    for info in store.list(prefix, bucket=bucket):
        if not matches_format(info.key, spec.format):
            continue
        name = layout.s3_uri(shown_bucket, info.key)

        def fetch(key: str = info.key) -> bytes:
            return store.get_bytes(key, bucket=bucket)

        yield SourceBatch(
            name, f"{info.key}:{info.etag}:{info.size}", _reader(fetch, spec, name, features, label)
        )


def _http_batch(
    url: str,
    pinned: str | None,
    spec: DatasetSpec,
    fetch_url: HttpFetch,
    known: Mapping[str, HttpValidators],
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
        shown, digest, _reader(lambda: body, spec, shown, features, label), validators
    )


def _not_downloaded(shown: str) -> Callable[[], Iterator[Row | Rejected]]:
    def rows() -> Iterator[Row | Rejected]:
        raise AssertionError(f"{shown} was not downloaded (304): list without validators")

    return rows


def _reader(
    fetch: Callable[[], bytes],
    spec: DatasetSpec,
    name: str,
    features: list[str],
    label: str | None,
) -> Callable[[], Iterator[Row | Rejected]]:
    return lambda: read_rows(fetch(), spec.format, name, features, label)
