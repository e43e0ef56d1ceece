"""Kubernetes Events for the operator's decisions.

``kopf.info`` only posts when ``settings.posting.level`` is INFO or lower, and the runtime
sets it to WARNING so Kopf's own per-tick log lines do not become Events; decisions are
therefore posted with ``kopf.event``, which is not filtered by level.
"""

from __future__ import annotations

from typing import Any

import kopf

MAX_MESSAGE = 1024


def normal(body: Any, reason: str, message: str) -> None:
    kopf.event(body, type="Normal", reason=reason, message=message[:MAX_MESSAGE])


def warning(body: Any, reason: str, message: str) -> None:
    kopf.event(body, type="Warning", reason=reason, message=message[:MAX_MESSAGE])
