"""RFC 9421 HTTP Message Signatures, the profile devices use, and RFC 9530 Content-Digest.

Every device request carries

    Content-Digest: sha-256=:<base64 sha-256 of the body>:
    Signature-Input: sig=("@method" "@path" "content-digest");created=<unix s>;
        nonce="<random>";keyid="<namespace>/<device>";alg="ed25519"
    Signature: sig=:<base64 Ed25519 signature of the signature base>:

The signature base is built as RFC 9421 §2.5 says (one line per covered component,
``"name": value``, then ``"@signature-params": <inner list>``), so any RFC 9421 library
signs and verifies the same bytes; :func:`signature_base` is checked against the RFC's own
Ed25519 example (Appendix B.2.6). Only this profile is accepted (one signature, these
components at least, these parameters, ``alg="ed25519"``): a strict subset is what an MCU
agent implements in a few lines. Standard library and ``cryptography`` only, so the device
agent can reuse it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

LABEL: Final = "sig"
COMPONENTS: Final = ("@method", "@path", "content-digest")
ALG: Final = "ed25519"

_TOKEN = r"[A-Za-z*][A-Za-z0-9_\-.:%*/]*"  # sf-token; the label is a key (lower case)
_KEY = r"[a-z*][a-z0-9_\-.*]*"
_STRING = r'"(?:[^"\\]|\\[\\"])*"'
_PARAM = rf";({_KEY})(?:=({_STRING}|-?[0-9]{{1,15}}|{_TOKEN}))?"
_INPUT_RE = re.compile(rf"^({_KEY})=\(((?:\s*{_STRING})*)\s*\)((?:{_PARAM})*)$")
_SIGNATURE_RE = re.compile(rf"^({_KEY})=:([A-Za-z0-9+/=]*):$")
_DIGEST_RE = re.compile(r"(?:^|,)\s*sha-256=:([A-Za-z0-9+/=]+):\s*(?:,|$)")


class SignatureError(Exception):
    """The request's signature is missing, malformed or wrong; ``reason`` says which."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def content_digest(body: bytes) -> str:
    """The RFC 9530 ``Content-Digest`` field value of ``body`` (sha-256)."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


def digest_matches(field: str, body: bytes) -> bool:
    """Whether a ``Content-Digest`` field value holds the sha-256 of ``body``."""
    match = _DIGEST_RE.search(field)
    if match is None:
        return False
    try:
        claimed = base64.b64decode(match.group(1), validate=True)
    except (binascii.Error, ValueError):
        return False
    return secrets.compare_digest(claimed, hashlib.sha256(body).digest())


def _sf_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def signature_params(components: Sequence[str], params: Sequence[tuple[str, str | int]]) -> str:
    """The serialized ``@signature-params`` inner list (RFC 9421 §2.3), parameters in
    the given order."""
    inner = " ".join(_sf_string(c) for c in components)
    rendered = "".join(
        f";{name}={value}" if isinstance(value, int) else f";{name}={_sf_string(value)}"
        for name, value in params
    )
    return f"({inner}){rendered}"


def signature_base(values: Sequence[tuple[str, str]], params: str) -> bytes:
    """RFC 9421 §2.5: ``"component": value`` lines, then the ``@signature-params`` line."""
    lines = [f"{_sf_string(name)}: {value}" for name, value in values]
    lines.append(f'"@signature-params": {params}')
    return "\n".join(lines).encode()


@dataclass(frozen=True)
class Parsed:
    label: str
    components: tuple[str, ...]
    params: dict[str, str | int]
    params_text: str  # exactly as sent, which is what was signed
    signature: bytes


def _unquote(text: str) -> str | int:
    if text.startswith('"'):
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return int(text)


def parse(signature_input: str, signature: str) -> Parsed:
    """One ``Signature-Input`` / ``Signature`` pair of the device profile."""
    found = _INPUT_RE.match(signature_input.strip())
    if found is None:
        raise SignatureError("BadSignatureInput", "Signature-Input is not one signature")
    label, inner, params_text = found.group(1), found.group(2), found.group(3)
    components = tuple(str(_unquote(c)) for c in re.findall(_STRING, inner))
    params: dict[str, str | int] = {}
    for name, value in re.findall(_PARAM, params_text):
        if name in params:
            raise SignatureError("BadSignatureInput", f"parameter {name} given twice")
        params[name] = _unquote(value) if value else 1
    sig = _SIGNATURE_RE.match(signature.strip())
    if sig is None or sig.group(1) != label:
        raise SignatureError("BadSignature", f"Signature has no value for label {label}")
    try:
        raw = base64.b64decode(sig.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("BadSignature", "Signature is not base64") from None
    return Parsed(label, components, params, f"({inner}){params_text}", raw)


@dataclass(frozen=True)
class Verified:
    keyid: str
    created: int
    nonce: str
    #: Index, in the keys given to :func:`verify`, of the key the signature verified with.
    key: int = 0


def check_profile(parsed: Parsed) -> Verified:
    """The device profile's components and parameters are all there (before any key is
    looked up)."""
    missing = [c for c in COMPONENTS if c not in parsed.components]
    if missing:
        raise SignatureError("BadSignatureInput", f"the signature does not cover {missing}")
    keyid, created, nonce = (parsed.params.get(p) for p in ("keyid", "created", "nonce"))
    if not isinstance(keyid, str) or not isinstance(created, int) or not isinstance(nonce, str):
        raise SignatureError(
            "BadSignatureInput", "created (integer), nonce and keyid (strings) are required"
        )
    if parsed.params.get("alg") != ALG:
        raise SignatureError("BadSignatureInput", 'alg must be "ed25519"')
    if not 8 <= len(nonce) <= 128:
        raise SignatureError("BadSignatureInput", "nonce must be 8 to 128 characters")
    return Verified(keyid, created, nonce)


def component_values(
    parsed: Parsed, method: str, path: str, headers: Mapping[str, str]
) -> list[tuple[str, str]]:
    values: list[tuple[str, str]] = []
    for name in parsed.components:
        if name == "@method":
            values.append((name, method.upper()))
        elif name == "@path":
            values.append((name, path))
        elif name.startswith("@"):
            raise SignatureError("BadSignatureInput", f"component {name} is not supported")
        else:
            value = headers.get(name)
            if value is None:
                raise SignatureError("BadSignatureInput", f"covered field {name} is missing")
            values.append((name, value.strip()))
    return values


def verify(
    parsed: Parsed,
    keys: Sequence[Ed25519PublicKey],
    method: str,
    path: str,
    headers: Mapping[str, str],
) -> int:
    """The signature is an Ed25519 signature by one of ``keys`` over the request's base;
    returns the index of that key (a gateway tells a rotated key from the current one by
    it). Raises :class:`SignatureError` ``BadSignature`` when none verifies."""
    base = signature_base(component_values(parsed, method, path, headers), parsed.params_text)
    for index, key in enumerate(keys):
        try:
            key.verify(parsed.signature, base)
            return index
        except InvalidSignature:
            continue
    raise SignatureError("BadSignature", "the signature does not verify with the device's key")


def sign_request(
    key: Ed25519PrivateKey,
    keyid: str,
    method: str,
    path: str,
    body: bytes,
    *,
    created: int,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers that sign a request (what a device agent sends)."""
    digest = content_digest(body)
    params = signature_params(
        COMPONENTS,
        [
            ("created", created),
            ("nonce", nonce or secrets.token_urlsafe(16)),
            ("keyid", keyid),
            ("alg", ALG),
        ],
    )
    base = signature_base(
        [("@method", method.upper()), ("@path", path), ("content-digest", digest)], params
    )
    signature = base64.b64encode(key.sign(base)).decode()
    return {
        "Content-Digest": digest,
        "Signature-Input": f"{LABEL}={params}",
        "Signature": f"{LABEL}=:{signature}:",
    }
