"""Listing and fetching a Dataset's sources: S3 prefixes, HTTP(S) files, the device inbox
and built-in datasets.

Listing is cheap and yields a fingerprint per object (key, ETag, size) so a collection
can tell "nothing new" without downloading anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx

from edgeops.api import DatasetSource, DatasetSpec

from . import builtin, layout
from .protocol import Store
from .readers import matches_format, read_rows
from .rows import Rejected, Row

#: Bounded so one bad URL cannot exhaust the operator's memory.
MAX_HTTP_BYTES = 512 * 1024 * 1024

HttpGet = Callable[[str], bytes]


class SourceUnavailableError(Exception):
    """A source could not be read (HTTP error, checksum mismatch, missing package)."""


@dataclass(frozen=True)
class SourceBatch:
    """One file or built-in dataset: its display name, fingerprint and rows."""

    name: str
    fingerprint: str
    rows: Callable[[], Iterator[Row | Rejected]]


def http_get(url: str) -> bytes:
    try:
        with httpx.stream("GET", url, timeout=30.0, follow_redirects=True) as response:
            response.raise_for_status()
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_HTTP_BYTES:
                    raise SourceUnavailableError(f"{url}: larger than {MAX_HTTP_BYTES} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPStatusError as error:
        raise SourceUnavailableError(f"{url}: HTTP {error.response.status_code}") from None
    except httpx.HTTPError as error:
        raise SourceUnavailableError(f"{url}: {type(error).__name__}") from None


def list_batches(
    spec: DatasetSpec,
    store: Store,
    namespace: str,
    dataset: str,
    fetch_url: HttpGet = http_get,
) -> list[SourceBatch]:
    batches: list[SourceBatch] = []
    for source in spec.sources:
        batches.extend(_batches(source, spec, store, namespace, dataset, fetch_url))
    return batches


def _batches(
    source: DatasetSource,
    spec: DatasetSpec,
    store: Store,
    namespace: str,
    dataset: str,
    fetch_url: HttpGet,
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
        url = source.http.url
        body = fetch_url(url)
        digest = hashlib.sha256(body).hexdigest()
        if source.http.sha256 and source.http.sha256 != digest:
            raise SourceUnavailableError(f"{url}: SHA-256 mismatch (expected {source.http.sha256})")
        yield SourceBatch(url, digest, _reader(lambda: body, spec, url, features, label))
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


def _reader(
    fetch: Callable[[], bytes],
    spec: DatasetSpec,
    name: str,
    features: list[str],
    label: str | None,
) -> Callable[[], Iterator[Row | Rejected]]:
    return lambda: read_rows(fetch(), spec.format, name, features, label)
