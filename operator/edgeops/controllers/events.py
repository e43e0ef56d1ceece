"""Kubernetes Events for the operator's decisions: the one way every controller posts them.

``kopf.event`` is used rather than ``kopf.info``/``kopf.warn`` because it does not depend on
``settings.posting.level``: a decision is always posted, whatever the log level.
"""

from __future__ import annotations

from typing import Any

import kopf

MAX_MESSAGE = 1024


def normal(body: Any, reason: str, message: str) -> None:
    kopf.event(body, type="Normal", reason=reason, message=message[:MAX_MESSAGE])


def warning(body: Any, reason: str, message: str) -> None:
    kopf.event(body, type="Warning", reason=reason, message=message[:MAX_MESSAGE])
