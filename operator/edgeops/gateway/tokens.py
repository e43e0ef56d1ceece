"""Bootstrap tokens: what ``edgeops device token create`` writes and the gateway checks.

A token is ``ebt.<id>.<secret>``; it lives in Secret ``edgeops-bootstrap-<id>`` of the
device's namespace (labelled ``edgeops.dev/bootstrap-token: "true"``), which holds only the
SHA-256 of the whole token (``tokenSha256``), never the token, with ``expiresAt`` (RFC 3339),
``maxUses``, ``uses``, ``labels`` (JSON object given to every Device it enrolls) and
``autoApprove`` (``true``: devices start Approved). The id lets the gateway read one Secret
instead of listing them.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from edgeops.api.common import format_time

PREFIX: Final = "ebt"
SECRET_PREFIX: Final = "edgeops-bootstrap-"
_TOKEN_RE: Final = re.compile(r"^ebt\.([a-f0-9]{12})\.([A-Za-z0-9_-]{32,64})$")


class TokenError(Exception):
    """The token cannot enroll a device; ``reason`` is the API's reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh token and the name of the Secret that is to hold its hash."""
    token_id = secrets.token_hex(6)
    return f"{PREFIX}.{token_id}.{secrets.token_urlsafe(32)}", SECRET_PREFIX + token_id


def secret_name(token: str) -> str:
    """The Secret a token is recorded in. Raises TokenError for a malformed token."""
    match = _TOKEN_RE.match(token)
    if match is None:
        raise TokenError("InvalidToken", "the bootstrap token is malformed")
    return SECRET_PREFIX + match.group(1)


def token_data(
    token: str,
    *,
    expires_at: datetime,
    max_uses: int,
    labels: dict[str, str],
    auto_approve: bool,
) -> dict[str, str]:
    """The Secret data of a new token (no token in it, only its hash)."""
    return {
        "tokenSha256": token_hash(token),
        "expiresAt": format_time(expires_at),
        "maxUses": str(max_uses),
        "uses": "0",
        "labels": json.dumps(labels, sort_keys=True),
        "autoApprove": "true" if auto_approve else "false",
    }


@dataclass(frozen=True)
class TokenGrant:
    """What a valid token gives the device it enrolls."""

    labels: dict[str, str]
    auto_approve: bool
    uses: int
    max_uses: int


def check_token(token: str, data: dict[str, str], now: datetime) -> TokenGrant:
    """Whether ``token`` may enroll one more device now. Raises TokenError with reason
    InvalidToken (unknown or wrong token, malformed Secret), TokenExpired or TokenUsedUp."""
    expected = data.get("tokenSha256", "")
    if not secrets.compare_digest(expected.encode(), token_hash(token).encode()):
        raise TokenError("InvalidToken", "the bootstrap token is not valid")
    try:
        expires = datetime.fromisoformat(data["expiresAt"].replace("Z", "+00:00"))
        uses, max_uses = int(data.get("uses", "0")), int(data["maxUses"])
        labels = json.loads(data.get("labels") or "{}")
    except (KeyError, ValueError):
        raise TokenError("InvalidToken", "the bootstrap token's Secret is malformed") from None
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise TokenError("InvalidToken", "the bootstrap token's labels are malformed")
    if now >= expires:
        raise TokenError("TokenExpired", f"the bootstrap token expired at {data['expiresAt']}")
    if uses >= max_uses:
        raise TokenError("TokenUsedUp", f"the bootstrap token was used {uses} of {max_uses} times")
    return TokenGrant(labels, data.get("autoApprove") == "true", uses, max_uses)
