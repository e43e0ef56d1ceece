"""Retrying transient S3 failures with capped exponential backoff.

A transient failure is one where trying again can help: the connection was refused or
reset, the request timed out, or the server answered 5xx / SlowDown. When retries run
out the call raises StorageUnavailableError, which controllers turn into a condition.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import urllib3.exceptions
from minio.error import InvalidResponseError, S3Error, ServerError

from .errors import StorageUnavailableError

T = TypeVar("T")
log = logging.getLogger(__name__)

_TRANSIENT_S3_CODES = frozenset(
    {
        "SlowDown",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
        "XMinioServerNotInitialized",
    }
)


@dataclass(frozen=True)
class Backoff:
    attempts: int = 4
    first_delay: float = 0.2
    max_delay: float = 2.0


DEFAULT_BACKOFF = Backoff()


def is_transient(error: BaseException) -> bool:
    if isinstance(error, ServerError | InvalidResponseError):
        return True
    if isinstance(error, S3Error):
        return error.code in _TRANSIENT_S3_CODES
    return isinstance(error, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError)


def with_retries(
    call: Callable[[], T],
    what: str,
    backoff: Backoff = DEFAULT_BACKOFF,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    delay = backoff.first_delay
    for attempt in range(1, backoff.attempts + 1):
        try:
            return call()
        except Exception as error:
            if not is_transient(error):
                raise
            if attempt == backoff.attempts:
                raise StorageUnavailableError(
                    f"{what}: S3 unavailable after {attempt} attempts ({type(error).__name__})"
                ) from error
            log.debug("%s failed (%s), retrying in %.1fs", what, type(error).__name__, delay)
            sleep(delay)
            delay = min(delay * 2, backoff.max_delay)
    raise AssertionError("unreachable")
