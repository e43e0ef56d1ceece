"""Content-addressed objects, JSON documents and presigned URLs in one S3 bucket.

Blobs live at ``blobs/sha256/<2 hex>/<64 hex>``: the key is derived from the content, so a
put is idempotent (an existing blob of the right size is not uploaded again) and every read
is verified against the key. Publishing is the caller's job, with one rule this module
makes easy: write the blobs first and the small document that references them last.

Blobs are **write-once**: a put is a conditional write, ``If-None-Match: *`` (RFC 9110
§13.1.2; S3 and MinIO conditional writes), so it never replaces an object already at the
key, whoever wrote it. When one is there (412 Precondition Failed) its content is hashed:
the right bytes are kept as they are; bytes that do not hash to the key (a torn upload, a
tampered blob) are replaced with ``If-Match: <their ETag>``, so exactly the bad object
checked is replaced and never a good one written meanwhile. The conditional PUT goes
through a presigned URL (the minio client cannot send ``If-None-Match`` on a PUT; the
headers it is given become user metadata), one request of up to 5 GiB. A store that
answers 501 Not Implemented to conditional writes gets the old check-then-put
(``stat`` first), which leaves a window in which a concurrent writer can replace a blob.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import certifi
import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error, ServerError

from edgeops.canonical_json import sorted_json

from .config import StoreConfig
from .errors import IntegrityError, ObjectMissingError, StorageRejectedError, StoreError
from .retry import DEFAULT_BACKOFF, Backoff, with_retries

BLOB_PREFIX = "blobs/sha256/"
CHUNK = 1024 * 1024
#: Objects larger than this are uploaded in parts of this size (S3 multipart upload).
PART_SIZE = 16 * 1024 * 1024
#: Presigned URLs are for one device download or one Job upload: keep them short-lived.
MAX_URL_LIFETIME = timedelta(hours=1)
T = TypeVar("T")
log = logging.getLogger(__name__)
#: Largest object one PUT may carry (S3's limit for a single PUT).
MAX_SINGLE_PUT = 5 * 1024**3
#: How often a write-once put looks again when the key changes under it.
WRITE_ONCE_ATTEMPTS = 3
#: Lifetime of the presigned URL of one conditional PUT.
_PUT_URL_LIFETIME = timedelta(minutes=15)
_ERROR_CODE = re.compile(rb"<Code>([A-Za-z0-9.]{1,64})</Code>")
#: "The object does not exist". A missing bucket is not one: it is a StorageRejectedError.
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchObject"})


def blob_key(sha256: str) -> str:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a lowercase hex SHA-256: {sha256!r}")
    return f"{BLOB_PREFIX}{sha256[:2]}/{sha256}"


@dataclass(frozen=True)
class BlobRef:
    sha256: str
    size: int

    @property
    def key(self) -> str:
        return blob_key(self.sha256)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    last_modified: datetime | None


class ArtifactStore:
    def __init__(
        self, config: StoreConfig, client: Minio | None = None, backoff: Backoff = DEFAULT_BACKOFF
    ) -> None:
        self.config = config
        self.bucket = config.bucket
        self._backoff = backoff
        # Conditional PUTs (write-once blobs) go through presigned URLs on this pool.
        self._http = _http_client(config)
        self._client = client or Minio(
            endpoint=config.host,
            access_key=config.access_key,
            secret_key=config.secret_key,
            session_token=config.session_token,
            secure=config.secure,
            region=config.region,
            http_client=_http_client(config),
            cert_check=not config.insecure_skip_verify,
        )

    # ----- bucket -------------------------------------------------------------------------

    def ping(self) -> None:
        """Raises StorageUnavailableError unless S3 answers, StorageRejectedError unless the
        bucket exists and the credentials may use it."""
        exists = self._retry(lambda: self._client.bucket_exists(self.bucket), "bucket check")
        if not exists:
            raise StorageRejectedError(
                "NoSuchBucket", f"S3 refused: NoSuchBucket (bucket {self.bucket!r} does not exist)"
            )

    def ensure_bucket(self) -> None:
        if not self._retry(lambda: self._client.bucket_exists(self.bucket), "bucket check"):
            self._retry(lambda: self._client.make_bucket(self.bucket), "make bucket")

    # ----- content-addressed blobs --------------------------------------------------------

    def put_blob(self, data: bytes) -> BlobRef:
        """Stores ``data`` at its content address, write-once (see the module docstring).
        Raises IntegrityError when the key keeps holding other bytes, StoreError."""
        ref = BlobRef(hashlib.sha256(data).hexdigest(), len(data))
        self._write_once(ref, data)
        return ref

    def put_blob_file(self, path: Path) -> BlobRef:
        """Streams a file (up to :data:`MAX_SINGLE_PUT`) to its content address without
        reading it whole, write-once as :meth:`put_blob`."""
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        ref = BlobRef(digest.hexdigest(), path.stat().st_size)
        self._write_once(ref, path)
        return ref

    def get_blob(self, sha256: str) -> bytes:
        data = self.get_bytes(blob_key(sha256))
        if hashlib.sha256(data).hexdigest() != sha256:
            raise IntegrityError(f"blob {sha256} is corrupt: content hash differs")
        return data

    def download_blob(self, sha256: str, path: Path) -> None:
        """Streams a blob to ``path``, verifying it; a corrupt download leaves no file."""
        tmp = path.with_name(path.name + ".part")

        def fetch() -> str:
            digest = hashlib.sha256()
            response = self._client.get_object(self.bucket, blob_key(sha256))
            try:
                with tmp.open("wb") as out:
                    for chunk in response.stream(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            finally:
                response.close()
                response.release_conn()
            return digest.hexdigest()

        actual = self._retry(fetch, f"get blob {sha256}", key=blob_key(sha256))
        if actual != sha256:
            tmp.unlink(missing_ok=True)
            raise IntegrityError(f"blob {sha256} is corrupt: content hash differs")
        tmp.replace(path)

    def _has_blob(self, ref: BlobRef) -> bool:
        info = self.stat(ref.key)
        # Present at the right size: nothing to write (every reader verifies the content).
        return info is not None and info.size == ref.size

    def _write_once(self, ref: BlobRef, body: bytes | Path) -> None:
        """Writes the blob unless its key already holds its bytes; never replaces an object
        whose content hashes to the key. Raises IntegrityError when the key still holds
        other bytes after :data:`WRITE_ONCE_ATTEMPTS` tries, ValueError over
        :data:`MAX_SINGLE_PUT`, StoreError."""
        if self._has_blob(ref):
            return
        if ref.size > MAX_SINGLE_PUT:
            raise ValueError(f"blob of {ref.size} bytes is over {MAX_SINGLE_PUT} (one PUT)")
        condition = {"If-None-Match": "*"}
        for _ in range(WRITE_ONCE_ATTEMPTS):
            written = self._conditional_put(ref.key, body, ref.size, condition)
            if written is None:  # the store cannot write conditionally: check, then put
                if not self._has_blob(ref):
                    self._put_unconditionally(ref.key, body, ref.size)
                return
            if written:
                return
            # An object holds the key already: a concurrent writer of the same bytes, or a
            # torn or tampered one. Kept when it is right; else exactly it is replaced.
            info = self.stat(ref.key)
            if info is None:
                condition = {"If-None-Match": "*"}  # deleted meanwhile
            elif self._content_matches(ref):
                return
            else:
                log.warning(
                    "blob %s holds %d bytes that do not hash to its key: replacing them",
                    ref.key,
                    info.size,
                )
                condition = {"If-Match": f'"{info.etag.strip(chr(34))}"'}
        raise IntegrityError(
            f"blob {ref.sha256} could not be stored: its key kept holding other bytes"
        )

    def _content_matches(self, ref: BlobRef) -> bool:
        """Whether the object at ``ref.key`` hashes to ``ref.sha256`` (streamed)."""

        def digest() -> str:
            hashed = hashlib.sha256()
            response = self._client.get_object(self.bucket, ref.key)
            try:
                for chunk in response.stream(CHUNK):
                    hashed.update(chunk)
            finally:
                response.close()
                response.release_conn()
            return hashed.hexdigest()

        try:
            return self._retry(digest, f"verify {ref.key}", key=ref.key) == ref.sha256
        except ObjectMissingError:
            return False

    def _conditional_put(
        self, key: str, body: bytes | Path, size: int, condition: dict[str, str]
    ) -> bool | None:
        """One PUT of ``body`` to ``key`` under ``condition`` (``If-None-Match: *`` or
        ``If-Match: <etag>``) through a presigned URL. True when written, False when the
        condition failed (412), None when the store does not support conditional writes
        (501). Raises StorageRejectedError (any other refusal), StorageUnavailableError."""

        def send() -> bool | None:
            url = self._client.presigned_put_object(self.bucket, key, _PUT_URL_LIFETIME)
            headers = {
                **condition,
                "Content-Length": str(size),
                "Content-Type": "application/octet-stream",
            }
            if isinstance(body, Path):
                with body.open("rb") as handle:
                    response = self._http.request("PUT", url, body=handle, headers=headers)
            else:
                response = self._http.request("PUT", url, body=body, headers=headers)
            if 200 <= response.status < 300:
                return True
            if response.status == 412:
                return False
            found = _ERROR_CODE.search(response.data or b"")
            code = found.group(1).decode() if found else f"HTTP{response.status}"
            if response.status == 501 or code == "NotImplemented":
                return None
            if response.status >= 500:
                raise ServerError(f"put {key}: HTTP {response.status} {code}", response.status)
            raise StorageRejectedError(
                code, f"S3 refused: {code} (put {key} in bucket {self.bucket!r})"
            )

        return self._retry(send, f"put {key}", key=key)

    def _put_unconditionally(self, key: str, body: bytes | Path, size: int) -> None:
        def upload() -> object:
            if isinstance(body, Path):
                with body.open("rb") as handle:
                    return self._client.put_object(
                        self.bucket, key, handle, size, part_size=PART_SIZE
                    )
            return self._client.put_object(
                self.bucket, key, io.BytesIO(body), size, part_size=PART_SIZE
            )

        self._retry(upload, f"put {key}")

    # ----- plain objects ------------------------------------------------------------------

    def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        self._retry(
            lambda: self._client.put_object(
                self.bucket, key, io.BytesIO(data), len(data), content_type=content_type
            ),
            f"put {key}",
        )

    def get_bytes(self, key: str, bucket: str | None = None) -> bytes:
        def fetch() -> bytes:
            response = self._client.get_object(bucket or self.bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return self._retry(fetch, f"get {key}", bucket=bucket, key=key)

    def put_json(self, key: str, document: Any) -> None:
        """Stores ``document`` as :func:`~edgeops.canonical_json.sorted_json` (the bytes
        written so far). Raises ``ValueError`` for NaN or an infinity, which JSON cannot
        carry, before anything is written."""
        self.put_bytes(key, sorted_json(document), "application/json")

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def stat(self, key: str, bucket: str | None = None) -> ObjectInfo | None:
        try:
            obj = self._retry(
                lambda: self._client.stat_object(bucket or self.bucket, key),
                f"stat {key}",
                bucket=bucket,
                key=key,
            )
        except ObjectMissingError:
            return None
        return ObjectInfo(key, int(obj.size or 0), str(obj.etag or ""), obj.last_modified)

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def list(self, prefix: str, bucket: str | None = None) -> list[ObjectInfo]:
        """Every object under ``prefix`` (recursively), sorted by key."""

        def listing() -> list[ObjectInfo]:
            return [
                ObjectInfo(
                    str(o.object_name),
                    int(o.size or 0),
                    str(o.etag or "").strip('"'),
                    o.last_modified,
                )
                for o in self._client.list_objects(
                    bucket or self.bucket, prefix=prefix, recursive=True
                )
                if o.object_name and not o.is_dir
            ]

        return sorted(self._retry(listing, f"list {prefix}", bucket=bucket), key=lambda o: o.key)

    def delete(self, keys: Iterable[str]) -> int:
        """Deletes objects (missing ones are fine); returns how many were requested."""
        batch = [DeleteObject(k) for k in keys]
        if not batch:
            return 0

        def remove() -> None:
            errors = list(self._client.remove_objects(self.bucket, batch))
            if errors:
                raise StoreError(f"could not delete {len(errors)} objects: {errors[0].message}")

        self._retry(remove, f"delete {len(batch)} objects")
        return len(batch)

    # ----- presigned URLs -----------------------------------------------------------------

    def presigned_get(self, key: str, lifetime: timedelta = timedelta(minutes=15)) -> str:
        return self._retry(
            lambda: self._client.presigned_get_object(self.bucket, key, _cap(lifetime)),
            f"presign get {key}",
        )

    def presigned_put(self, key: str, lifetime: timedelta = timedelta(minutes=15)) -> str:
        return self._retry(
            lambda: self._client.presigned_put_object(self.bucket, key, _cap(lifetime)),
            f"presign put {key}",
        )

    def _retry(
        self, call: Callable[[], T], what: str, bucket: str | None = None, key: str | None = None
    ) -> T:
        """Transient failures are retried (then StorageUnavailableError); an S3 error
        answer becomes ObjectMissingError or StorageRejectedError, never a raw S3Error."""
        bucket = bucket or self.bucket
        try:
            return with_retries(call, what, self._backoff)
        except S3Error as error:
            code = error.code or "UnknownError"
            if code in _MISSING_CODES:
                shown = f"s3://{bucket}/{key}" if key is not None else f"{what} (bucket {bucket})"
                raise ObjectMissingError(f"{shown} does not exist") from None
            detail = f": {error.message}" if error.message else ""
            raise StorageRejectedError(
                code, f"S3 refused: {code} ({what} in bucket {bucket!r}{detail})"
            ) from error


def _cap(lifetime: timedelta) -> timedelta:
    if lifetime <= timedelta(0):
        raise ValueError("URL lifetime must be positive")
    return min(lifetime, MAX_URL_LIFETIME)


def _http_client(config: StoreConfig) -> urllib3.PoolManager:
    # Short timeouts and no low-level retries: with_retries owns the retry policy, and a
    # down server must surface as StorageUnavailableError within seconds, not minutes.
    # Several Kopf handler threads share one client, hence a pool larger than urllib3's 1.
    timeout = urllib3.Timeout(connect=3.0, read=60.0)
    retries = urllib3.Retry(connect=0, read=0, status=0, other=0, raise_on_status=False)
    if config.insecure_skip_verify:
        return urllib3.PoolManager(
            timeout=timeout, retries=retries, maxsize=16, cert_reqs="CERT_NONE"
        )
    return urllib3.PoolManager(
        timeout=timeout,
        retries=retries,
        maxsize=16,
        cert_reqs="CERT_REQUIRED",
        ca_certs=config.ca_bundle or certifi.where(),
    )
