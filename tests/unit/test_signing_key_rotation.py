"""Publishing a new signing key keeps the keys that signed earlier bundles."""

from __future__ import annotations

import json

from edgeops.controllers.signing_key import public_keys_document
from edgeops.policy.serving import PUBLIC_KEYS_KEY
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
