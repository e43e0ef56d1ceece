"""The byte encodings a JSON document is signed in.

Signer and verifier must produce the same bytes from the same document, whichever
language parsed it (device firmware is C), so what EdgeOps signs is canonicalised with
RFC 8785, the JSON Canonicalization Scheme (§3.2: UTF-16 key order, ECMAScript number
form, minimal string escapes, no whitespace, UTF-8). Manifests signed before that (schema
``edgeops.dev/bundle-manifest/v1``) were canonicalised with Python's ``json.dumps``;
:func:`legacy_canonical_json` reproduces those bytes so they still verify, and is never
used to sign.
"""

from __future__ import annotations

from typing import Any

from edgeops.canonical_json import jcs, sorted_json


def canonical_json(document: Any) -> bytes:
    """The RFC 8785 (JCS) bytes of ``document``: what is signed.

    Raises ``ValueError`` for what JCS cannot carry: NaN or an infinity, an ``int``
    beyond ±(2**53 - 1), a non-string key, a lone surrogate, a type that is not JSON.
    """
    return jcs(document)


def legacy_canonical_json(document: Any) -> bytes:
    """The bytes v1 manifests were signed over: ``json.dumps`` with sorted keys, ``,``
    and ``:`` separators, non-ASCII as UTF-8, NaN refused. Only to verify them.

    Raises ``ValueError`` for NaN or an infinity and for a lone surrogate.
    """
    return sorted_json(document)
