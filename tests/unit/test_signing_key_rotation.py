"""Publishing a new signing key keeps the keys that signed earlier bundles."""

from __future__ import annotations

import json

import pytest

from edgeops.controllers import signing_key
from edgeops.controllers.signing_key import PRIVATE_KEY, public_keys_document
from edgeops.policy.serving import PUBLIC_KEYS_KEY
from edgeops.settings import settings
from edgeops.signing import generate_key


def test_rotation_keeps_previous_public_keys() -> None:
    old, new = generate_key(), generate_key()
    first = public_keys_document(old, {})
    assert json.loads(first[PUBLIC_KEYS_KEY]) == {old.key_id: old.public_b64}
    rotated = public_keys_document(new, first)
    assert json.loads(rotated[PUBLIC_KEYS_KEY]) == {
        old.key_id: old.public_b64,
        new.key_id: new.public_b64,
    }
    assert rotated["keyId"] == new.key_id  # new bundles are signed with the new key
    # A damaged document is replaced rather than crashing publication.
    assert json.loads(public_keys_document(new, {PUBLIC_KEYS_KEY: "{"})[PUBLIC_KEYS_KEY]) == {
        new.key_id: new.public_b64
    }


def test_a_key_rotated_in_the_secret_signs_after_the_next_reload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old, new = generate_key(), generate_key()
    stored = {PRIVATE_KEY: old.private_b64}
    clock = [1000.0]
    monkeypatch.setattr(signing_key, "_key", None)
    monkeypatch.setattr(signing_key, "_published", {"ns": 990.0})
    monkeypatch.setattr(signing_key.custom, "create_secret_once", lambda *_: dict(stored))
    monkeypatch.setattr(signing_key.time, "monotonic", lambda: clock[0])
    assert signing_key.current_key().key_id == old.key_id
    stored[PRIVATE_KEY] = new.private_b64  # an administrator rotates the Secret
    clock[0] += settings().signing_key_refresh_seconds - 1
    assert signing_key.current_key().key_id == old.key_id  # cached a little while
    clock[0] += 1
    assert signing_key.current_key().key_id == new.key_id
    assert signing_key._published == {}  # the new public key is published at once
