"""Keeping credentials out of messages and logs: the one redaction helper of EdgeOps.

A URL may carry credentials in its userinfo (``https://user:password@host/``) and in its
query (a presigned ``?X-Amz-Signature=...&X-Amz-Credential=...``, ``?token=...``). Status
messages, Events, stored source names and every log line show URLs only through
:func:`redact_url` (one URL) or :func:`redact_text` (free text that may contain URLs or
loose ``X-Amz-Signature=...`` parameters). :class:`RedactingLogFilter`, installed once per
process by :func:`install_log_redaction`, applies :func:`redact_text` to every log record,
so the HTTP client's, urllib3's and minio's own DEBUG/INFO lines are covered too.

Standard library only: the operator, the trainer, the gateway and the settings module
import it.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

#: What replaces a secret.
MASK: Final = "***"

#: Query parameters (case-insensitive) whose values are credentials, also outside a URL
#: (e.g. a signed request line or header a client logs).
SECRET_PARAMETERS: Final[tuple[str, ...]] = (
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "X-Goog-Signature",
    "X-Goog-Credential",
    "Signature",
    "AWSAccessKeyId",
    "sig",
    "token",
    "access_token",
    "api_key",
    "apikey",
    "password",
    "secret",
)

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>`]+")
_PARAMETER = re.compile(
    r"(?i)(?<![A-Za-z0-9_-])("
    + "|".join(re.escape(p) for p in SECRET_PARAMETERS)
    + r")=[^&\s\"'<>,;]+"
)


def redact_url(url: str) -> str:
    """``url`` without what may be credentials: ``user:password@`` becomes ``***@`` and a
    query or fragment (tokens, presigned signatures) becomes ``?***``. A string that is
    not a URL at all comes back as ``<invalid URL>``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@" + netloc.rpartition("@")[2]
    query = MASK if parts.query or parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (:func:`redact_url`) and the value of every
    credential parameter (:data:`SECRET_PARAMETERS`, e.g. ``X-Amz-Signature=...``) that
    stands outside a URL masked. Text without either comes back unchanged (the same
    object)."""
    if "://" not in text and "=" not in text:
        return text
    redacted = _URL.sub(lambda m: _redact_url_in_text(m.group(0)), text)
    redacted = _PARAMETER.sub(lambda m: f"{m.group(1)}={MASK}", redacted)
    return redacted if redacted != text else text


def _redact_url_in_text(url: str) -> str:
    # Punctuation that ends a sentence or a parenthesis is not part of the URL.
    stripped = url.rstrip(".,;:)]}")
    shown = redact_url(stripped)
    return (shown if shown != "<invalid URL>" else MASK) + url[len(stripped) :]


class RedactingLogFilter(logging.Filter):
    """Rewrites a log record so that its message, exception text and stack carry no
    credentials (see :func:`redact_text`). A record whose rendered message changes gets
    the redacted text as ``msg`` and no ``args``; a record without secrets is untouched.
    Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def redact_record(record: logging.LogRecord) -> None:
    """Redacts ``record`` in place (see :class:`RedactingLogFilter`)."""
    try:
        message = record.getMessage()
    except Exception:  # a record whose args do not fit its format: show it raw, redacted
        message = f"{record.msg} {record.args!r}"
    shown = redact_text(message)
    if shown is not message:
        record.msg, record.args = shown, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact_text(record.exc_text)
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)


_installed = threading.Lock()
_factory_installed = False


def install_log_redaction() -> None:
    """Redacts every log record this process creates from now on, whatever its logger
    and handlers: a filter on a logger does not see records its children propagate, and
    a filter on a handler misses handlers added later, so the filter runs in the log
    record factory. Idempotent."""
    global _factory_installed
    with _installed:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()
        redacting = RedactingLogFilter()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            redacting.filter(record)
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True
