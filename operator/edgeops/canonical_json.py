"""The project's canonical JSON encodings: the bytes that are hashed or signed.

Two encodings, one module, importable from every layer (``api``, ``policy``, ``signing``,
the device agent...): it imports only the standard library and ``rfc8785`` (pure Python),
and nothing else of ``edgeops`` (an import-linter contract keeps it so).

* :func:`jcs` - RFC 8785, the JSON Canonicalization Scheme (§3.2): object members sorted
  by the UTF-16 code units of their names (§3.2.3), strings with the minimal escapes of
  §3.2.2.2, numbers as ECMAScript's ``Number.prototype.toString`` writes IEEE 754 doubles
  (§3.2.2.3: ``1e+21``, ``0.000001``, ``1e-7``, ``-0`` as ``0``, ``1.0`` as ``1``), no
  whitespace, UTF-8 (§3.2.4). Any language with a JCS library produces the same bytes, so
  this is the encoding of everything that is signed (bundle manifests).
* :func:`sorted_json` - Python's ``json.dumps`` with sorted keys and no whitespace. Not
  portable (``1e-05``, ``1.0``, code-point key order), but the bytes of hashes EdgeOps has
  already persisted are built on it: dataset rows, shards, manifests and so version ids,
  split assignment, the trainer-config and code hashes in status, the applied-spec
  annotation. Those must not change for the same content, so they keep this encoding.

Both refuse NaN and Infinity (JSON has no portable spelling for them): equal content
means equal bytes, and a document that cannot be written portably is an error, not a
``NaN`` token that other parsers reject.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

__all__ = ["jcs", "sorted_json"]


def jcs(document: Any) -> bytes:
    """The RFC 8785 (JCS) bytes of ``document``.

    ``document`` is JSON data as Python holds it: ``dict`` with ``str`` keys, ``list`` or
    ``tuple``, ``str``, ``int``, ``float``, ``bool`` or ``None`` (subclasses such as
    ``StrEnum`` included). Raises ``ValueError`` (an ``rfc8785.CanonicalizationError``)
    for NaN or an infinity, an ``int`` outside the range a double holds exactly
    (±(2**53 - 1), I-JSON, RFC 7493 §2.2), a non-string key, a string that is not valid
    Unicode (a lone surrogate) or any other type.
    """
    return rfc8785.dumps(document)


def sorted_json(document: Any, *, ensure_ascii: bool = False) -> bytes:
    """``json.dumps`` with sorted keys and ``,``/``:`` separators, UTF-8: the encoding of
    the hashes EdgeOps already persists (see the module docstring), byte for byte.

    ``ensure_ascii`` escapes every non-ASCII character as ``\\uXXXX``; the trainer-config
    hash, the code hash and the applied-spec annotation were computed that way, the
    dataset hashes and stored documents were not. Raises ``ValueError`` for NaN or an
    infinity and (without ``ensure_ascii``) for a lone surrogate, ``TypeError`` for a
    value ``json`` cannot encode or keys of mixed types (``int``, ``float``, ``bool`` and
    ``None`` keys are written as strings, as ``json.dumps`` does).
    """
    return json.dumps(
        document,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=ensure_ascii,
        allow_nan=False,
    ).encode("utf-8")
