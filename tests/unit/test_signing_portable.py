"""Signed manifests are portable: RFC 8785 bytes another implementation reproduces, an
Ed25519 signature any library checks, and bundles signed before RFC 8785 still verify.

``_jcs`` below is written from the RFC's rules (§3.2), independently of ``rfc8785``
(which EdgeOps uses): ECMAScript number form from Python's shortest round-trip digits,
the §3.2.2.2 escapes, member order by UTF-16 code units computed by hand. It is itself
checked against the RFC's published examples and Appendix B number table first. Signatures
are checked with ``cryptography``'s Ed25519 directly, not through ``edgeops.signing``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgeops import signing
from edgeops.serving.verify import load_verified
from edgeops.signing import (
    LEGACY_MANIFEST_SCHEMA,
    MANIFEST_SCHEMA,
    V2_MANIFEST_SCHEMA,
    Binding,
    BundleArtifact,
    VerificationError,
    build_manifest,
    canonical_json,
    generate_key,
    key_id,
    sign_manifest,
)

#: What every manifest below is for, and when it is checked (before it expires).
EXPECTED = Binding(namespace="ns", model="motion", version=3, model_uid="uid-motion")
NOW = datetime(2026, 5, 2, tzinfo=UTC)


def verify_manifest(data: bytes, keys: Mapping[str, str]) -> dict[str, Any]:
    return signing.verify_manifest(data, keys, expected=EXPECTED, now=NOW)


def verify_bundle(data: bytes, keys: Mapping[str, str], files: Mapping[str, bytes]) -> Any:
    return signing.verify_bundle(data, keys, files, expected=EXPECTED, now=NOW)


# --- an independent RFC 8785 implementation ---------------------------------------------

# RFC 8785 §3.2.2.2: these two-character escapes, \u00xx for other controls, else as is.
_SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _number(value: float) -> str:
    """ECMA-262 Number::toString, which RFC 8785 §3.2.2.3 adopts."""
    if not math.isfinite(value):
        raise ValueError("RFC 8785 has no NaN or Infinity")
    if value == 0:
        return "0"  # -0 too
    if value < 0:
        return "-" + _number(-value)
    # repr is the shortest decimal that round-trips, nearest to the double: ECMA-262's s, k, n
    # (value = s * 10**(n - k), s of k digits).
    _, digit_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(str(d) for d in digit_tuple)
    k, n = len(digits), exponent + len(digit_tuple)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    e = n - 1
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def _string(text: str) -> str:
    out = []
    for char in text:
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif ord(char) < 0x20:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _utf16_units(text: str) -> list[int]:
    units: list[int] = []
    for char in text:
        point = ord(char)
        if point > 0xFFFF:
            point -= 0x10000
            units += [0xD800 + (point >> 10), 0xDC00 + (point & 0x3FF)]
        else:
            units.append(point)
    return units


def _jcs_text(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if float(value) != value:
            raise ValueError(f"{value} is not a double")
        return _number(float(value))
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ",".join(_jcs_text(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=_utf16_units)
        return "{" + ",".join(_string(k) + ":" + _jcs_text(value[k]) for k in keys) + "}"
    raise TypeError(type(value))


def _jcs(value: Any) -> bytes:
    return _jcs_text(value).encode("utf-8")


# --- the RFC's own examples --------------------------------------------------------------

# RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical form.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B)
def test_numbers_match_rfc8785_appendix_b(bits: str, expected: str) -> None:
    value = struct.unpack(">d", bytes.fromhex(bits))[0]
    assert _number(value) == expected
    assert canonical_json(value) == expected.encode()


def test_rfc8785_examples_sorting_and_primitives() -> None:
    # §3.2.3: member order by UTF-16 code units (U+1F600 is D83D DE00, before U+FB33).
    sorting = json.loads(
        '{"\\u20ac":"Euro Sign","\\r":"Carriage Return","\\ufb33":"Hebrew Letter Dalet With '
        'Dagesh","1":"One","\\ud83d\\ude00":"Emoji: Grinning Face","\\u0080":"Control",'
        '"\\u00f6":"Latin Small Letter O With Diaeresis"}'
    )
    order = ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    for encode in (_jcs, canonical_json):
        assert list(json.loads(encode(sorting))) == order
    # §3.2.2's example: literals, numbers and string escapes.
    source = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    ).encode()
    assert _jcs(json.loads(source)) == canonical_json(json.loads(source)) == expected


# --- EdgeOps manifests, verified without edgeops.signing ---------------------------------

MODEL = b"onnx bytes"


def _artifact() -> BundleArtifact:
    digest = hashlib.sha256(MODEL).hexdigest()
    return BundleArtifact("model.onnx", "onnx", f"s3://edgeops/blobs/{digest}", len(MODEL), digest)


def _tricky_manifest() -> dict[str, Any]:
    """Values where Python's json.dumps and RFC 8785 disagree, or implementations slip."""
    target = {
        "name": "pi4",
        "type": "linux",
        "format": "onnx",
        "hardware": None,
        "numbers": {
            "large": 1e21,  # exponent form from 1e21 on
            "belowLarge": 1e20,  # written out in full below it
            "sum": 0.1 + 0.2,  # 0.30000000000000004
            "negativeZero": -0.0,  # "0"
            "one": 1.0,  # "1", json.dumps writes "1.0"
            "small": 1e-05,  # "0.00001", json.dumps writes "1e-05"
            "tiny": 1e-7,  # "1e-7", json.dumps writes "1e-07"
            "subnormal": 5e-324,
            "max": 1.7976931348623157e308,
            "beyondInt": 295147905179352830000.0,  # read back as an integer beyond 2**53
            "integer": 9007199254740991,
            "negative": -0.0000033333333333333333,
        },
        # U+E000 sorts before U+1F600 by code point, after it by UTF-16 (D83D DE00).
        "\ue000": "private use",
        "\U0001f600": "grinning face",
        "text": 'quote " backslash \\ slash / \b\f\n\r\t \x00\x1f del \x7f \u2028 é € 😀',
    }
    return build_manifest(
        namespace="ns",
        model="motion",
        model_uid="uid-motion",
        version=3,
        target=target,
        artifacts=[_artifact()],
        min_agent_version="0.1.0",
        created="2026-05-01T00:00:00Z",
        expires_at="2026-05-31T00:00:00Z",
    )


def test_a_manifest_signed_by_edgeops_verifies_with_another_jcs_and_plain_ed25519() -> None:
    key = generate_key()
    manifest = _tricky_manifest()
    signed = sign_manifest(manifest, key)
    stored = signed.to_bytes()

    independent = _jcs(manifest)
    # The stored file is the canonical envelope, and the signed bytes sit in it verbatim.
    assert stored == _jcs(
        {"keyId": key.key_id, "manifest": manifest, "signature": signed.signature}
    )
    assert b'"manifest":' + independent + b"," in stored
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key.public_b64))
    public.verify(base64.b64decode(signed.signature), independent)  # raises if not

    # The cases are tricky: Python's own sorted json differs, in key order and numbers.
    python = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert python.encode() != independent
    emoji, private_use = '"\U0001f600":', '"\ue000":'
    assert independent.index(emoji.encode()) < independent.index(private_use.encode())
    assert python.index(emoji) > python.index(private_use)
    for written in (b'"large":1e+21', b'"belowLarge":100000000000000000000', b'"one":1,'):
        assert written in independent
    for written in (b'"sum":0.30000000000000004', b'"negativeZero":0,', b'"small":0.00001'):
        assert written in independent
    assert b'"beyondInt":295147905179352830000' in independent

    # And EdgeOps verifies it back to the same document.
    assert verify_manifest(stored, {key.key_id: key.public_b64}) == manifest
    assert verify_bundle(stored, {key.key_id: key.public_b64}, {"model.onnx": MODEL}) == manifest


def test_a_manifest_signed_outside_edgeops_verifies_in_edgeops() -> None:
    private = Ed25519PrivateKey.generate()
    public_b64 = base64.b64encode(private.public_key().public_bytes_raw()).decode()
    manifest = _tricky_manifest()
    signature = base64.b64encode(private.sign(_jcs(manifest))).decode()
    kid = key_id(public_b64)
    stored = _jcs({"manifest": manifest, "keyId": kid, "signature": signature})
    assert verify_manifest(stored, {kid: public_b64}) == manifest


# --- bundles signed before RFC 8785 (schema v1) ------------------------------------------

# Written by edgeops.signing at commit 532453a (Python json.dumps canonical form) with the
# Ed25519 key whose private half is base64 XvV7uI1GxOFrHDdoNT6wQcEI/SMMPi5gQJGxlaaBLhM=.
V1_PUBLIC = "HaCV/jP2CD4Rxa+MFKD2bWrINZF0uenxnqxe4INpmA0="
V1_KEY_ID = "ed25519:c8682e3c6999c1b6"
_V1_ARTIFACTS = (
    b'{"artifacts":[{"format":"onnx","name":"model.onnx","sha256":"c1650a9961b22b18b791901'
    b'6db749eb46e2f14ad9da48dd02aa586fe8a335978","size":10,"uri":"s3://edgeops/blobs/sha256/c1'
    b'650a9961b22b18b7919016db749eb46e2f14ad9da48dd02aa586fe8a335978"}],"created":"2026-05-01'
    b'T00:00:00Z","minAgentVersion":"0.1.0","model":"motion","namespace":"ns","schema":"edgeo'
    b'ps.dev/bundle-manifest/v1",'
)
# The bundle a target got: strings and integers only, as bundles.publish wrote them.
V1_BUNDLE = (
    b'{"keyId":"ed25519:c8682e3c6999c1b6","manifest":'
    + _V1_ARTIFACTS
    + b'"target":{"format":"onnx","hardware":null,"name":"pi4","type":"linux"},"version":3},'
    b'"signature":"c9m4enuiPM0VFGIPMShoMsRTyPpwgOi5f3mMtZygPqUco0LYewiBhgSMIhrLFdy/Aq6HrXk8VzL'
    b'mhZnilj0AAw=="}'
)
# With floats, whose v1 bytes (1.0, 1e-05) are not their RFC 8785 bytes (1, 0.00001).
V1_BUNDLE_WITH_FLOATS = (
    b'{"keyId":"ed25519:c8682e3c6999c1b6","manifest":'
    + _V1_ARTIFACTS
    + b'"target":{"big":1e+21,"format":"onnx","hardware":null,"latencyBudgetMs":1.0,"name":"pi4'
    b'","scale":1e-05,"type":"linux"},"version":3},"signature":"Xc8xzmZumFPwywBtSoIB27TCRNzdm3k'
    b'ck0/IetlyyiBoZDVbz20+5Fx+rKbWrmLsj19ABg+qUEP6fh8m/OVvAQ=="}'
)


@pytest.mark.parametrize("stored", [V1_BUNDLE, V1_BUNDLE_WITH_FLOATS])
def test_bundles_signed_before_rfc8785_still_verify(stored: bytes) -> None:
    keys = {V1_KEY_ID: V1_PUBLIC}
    manifest = verify_bundle(stored, keys, {"model.onnx": MODEL})
    assert manifest["schema"] == LEGACY_MANIFEST_SCHEMA and manifest["version"] == 3
    for position in range(0, len(stored), 7):
        tampered = bytearray(stored)
        tampered[position] ^= 0x01
        with pytest.raises(VerificationError):
            verify_manifest(bytes(tampered), keys)


def test_v1_needs_its_own_encoding_and_the_schema_cannot_be_swapped() -> None:
    keys = {V1_KEY_ID: V1_PUBLIC}
    envelope = json.loads(V1_BUNDLE_WITH_FLOATS)
    manifest, signature = envelope["manifest"], base64.b64decode(envelope["signature"])
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(V1_PUBLIC))
    # Under RFC 8785 these bytes are different, so v1 must be checked as v1.
    with pytest.raises(InvalidSignature):
        public.verify(signature, _jcs(manifest))
    # Relabelled v2 (in v2's encoding) with the v1 signature: refused.
    relabelled = {**envelope, "manifest": {**manifest, "schema": MANIFEST_SCHEMA}}
    with pytest.raises(VerificationError, match="does not match"):
        verify_manifest(_jcs(relabelled), keys)
    # And a v2 manifest relabelled v1 (in v1's encoding): refused too.
    key = generate_key()
    signed = sign_manifest(_tricky_manifest(), key).to_json()
    signed["manifest"]["schema"] = LEGACY_MANIFEST_SCHEMA
    legacy = json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    with pytest.raises(VerificationError, match="does not match"):
        verify_manifest(legacy.encode(), {key.key_id: key.public_b64})


# --- bundles signed as v2 (RFC 8785, before manifests carried a UID and an expiry) -------

# Written by edgeops.signing at commit c003d31 (schema v2) with the v1 key above.
V2_BUNDLE = (
    b'{"keyId":"ed25519:c8682e3c6999c1b6","manifest":{"artifacts":[{"format":"onnx","name":"'
    b'model.onnx","sha256":"c1650a9961b22b18b7919016db749eb46e2f14ad9da48dd02aa586fe8a335978",'
    b'"size":10,"uri":"s3://edgeops/blobs/sha256/c1/c1650a9961b22b18b7919016db749eb46e2f14ad9d'
    b'a48dd02aa586fe8a335978"}],"created":"2026-05-01T00:00:00Z","minAgentVersion":"0.1.0","mo'
    b'del":"motion","namespace":"ns","schema":"edgeops.dev/bundle-manifest/v2","target":{"form'
    b'at":"onnx","hardware":null,"name":"kserve","type":"server"},"version":3},"signature":"TvR'
    b'0UI5Xrvm8hZfTO6qAvfn44iHOp+tEEdQn9xeEljzprkfI3w7rmEhCvLdmV9AwK4Qe8BRMJ5ccjO3xdzlNAQ=="}'
)


def test_bundles_signed_as_v2_still_verify_and_stay_bound() -> None:
    keys = {V1_KEY_ID: V1_PUBLIC}
    manifest = verify_bundle(V2_BUNDLE, keys, {"model.onnx": MODEL})
    assert manifest["schema"] == V2_MANIFEST_SCHEMA and "expiresAt" not in manifest
    with pytest.raises(VerificationError, match="manifest is for version 3"):
        signing.verify_manifest(V2_BUNDLE, keys, expected=Binding("ns", "motion", 4), now=NOW)
    with pytest.raises(VerificationError, match="manifest is for namespace 'ns'"):
        signing.verify_manifest(V2_BUNDLE, keys, expected=Binding("x", "motion", 3), now=NOW)


def test_the_predictor_loads_v1_v2_and_v3_bundles(tmp_path: Path) -> None:
    key = generate_key()
    v3 = tmp_path / "v3"
    v3.mkdir()
    (v3 / "bundle.json").write_bytes(sign_manifest(_tricky_manifest(), key).to_bytes())
    (v3 / "model.onnx").write_bytes(MODEL)
    loaded = load_verified(v3, {key.key_id: key.public_b64}, EXPECTED, NOW)
    assert loaded.data == MODEL and loaded.manifest["schema"] == MANIFEST_SCHEMA
    with pytest.raises(VerificationError, match="expired"):
        load_verified(v3, {key.key_id: key.public_b64}, EXPECTED, datetime(2026, 6, 1, tzinfo=UTC))
    with pytest.raises(VerificationError, match="manifest is for model"):
        load_verified(v3, {key.key_id: key.public_b64}, Binding("ns", "other", 3), NOW)

    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "bundle.json").write_bytes(V2_BUNDLE)
    (v2 / "model.onnx").write_bytes(MODEL)
    loaded = load_verified(v2, {V1_KEY_ID: V1_PUBLIC}, EXPECTED, NOW)
    assert loaded.version == 3 and loaded.manifest["schema"] == V2_MANIFEST_SCHEMA

    v1 = tmp_path / "v1"
    v1.mkdir()
    (v1 / "bundle.json").write_bytes(V1_BUNDLE)
    (v1 / "model.onnx").write_bytes(MODEL)
    loaded = load_verified(v1, {V1_KEY_ID: V1_PUBLIC}, EXPECTED, NOW)
    assert loaded.version == 3 and loaded.manifest["schema"] == LEGACY_MANIFEST_SCHEMA
    (v1 / "model.onnx").write_bytes(MODEL[:-1] + b"!")
    with pytest.raises(VerificationError, match="sha256"):
        load_verified(v1, {V1_KEY_ID: V1_PUBLIC}, EXPECTED, NOW)
