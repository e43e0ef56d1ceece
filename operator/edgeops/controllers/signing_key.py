"""The operator's Ed25519 signing key: a Secret in the operator's namespace
(``EDGEOPS_SIGNING_KEY_SECRET``, so an existing Secret can be brought), generated on
first start if absent (never logged), and the public keys published as ConfigMap
``edgeops-signing`` in the operator's namespace only.

Public keys are trusted only from there: a copy in a tenant's namespace is an object the
tenant can edit (add its own key, and its own bytes would verify). Verifiers in tenant
namespaces (the KServe predictor) get the keys from the operator, written into what it
applies (:func:`trusted_public_keys`), never by reference to a tenant's ConfigMap."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Final

from edgeops.k8s import apply, custom
from edgeops.policy.serving import PUBLIC_KEYS_KEY, SIGNING_CONFIG_MAP
from edgeops.settings import settings
from edgeops.signing import SigningKey, generate_key, signing_key

log = logging.getLogger(__name__)

PRIVATE_KEY: Final = "privateKey"

_lock = threading.Lock()
_key: SigningKey | None = None
_loaded_at = 0.0
#: namespace -> when its ConfigMap was last checked (a namespace can be recreated).
_published: dict[str, float] = {}
#: the public keys last published in the operator's namespace ({keyId: base64 key}).
_trusted: dict[str, str] = {}


def operator_namespace() -> str:
    """The namespace the operator runs in (``EDGEOPS_NAMESPACE``), home of the key Secret."""
    return settings().namespace


def current_key() -> SigningKey:
    """Loaded (or generated and stored) on first use, and read again every
    ``EDGEOPS_SIGNING_KEY_REFRESH_SECONDS`` so that a key rotated in the Secret signs the
    next versions without a restart."""
    global _key, _loaded_at
    refresh = settings().signing_key_refresh_seconds
    with _lock:
        if _key is None or time.monotonic() - _loaded_at >= refresh:
            # The operator's own namespace exists (it runs there); creating it would need a
            # cluster-wide permission the chart rightly does not grant.
            namespace = operator_namespace()
            fresh = generate_key()
            stored = custom.create_secret_once(
                namespace, settings().signing_key_secret, {PRIVATE_KEY: fresh.private_b64}
            )
            key = signing_key(stored[PRIVATE_KEY])
            _loaded_at = time.monotonic()
            if _key is None or key.key_id != _key.key_id:
                origin = "generated" if key.key_id == fresh.key_id else "loaded"
                if _key is not None:
                    origin = f"rotated from {_key.key_id}, loaded"
                    _published.clear()  # publish the new public key now, keeping the old
                log.info(
                    "signing key %s %s from Secret %s/%s",
                    key.key_id,
                    origin,
                    namespace,
                    settings().signing_key_secret,
                )
            _key = key
        return _key


def public_keys_document(key: SigningKey, published: dict[str, str]) -> dict[str, str]:
    """The ConfigMap data: the current key plus every key published before. A key rotation
    must not make bundles signed with the previous key (deployed versions, rollback targets)
    unverifiable; retiring an old key is an explicit edit of the ConfigMap."""
    try:
        known = json.loads(published.get(PUBLIC_KEYS_KEY) or "{}")
    except json.JSONDecodeError:
        known = {}
    keys = {str(k): str(v) for k, v in known.items()} if isinstance(known, dict) else {}
    keys[key.key_id] = key.public_b64
    return {
        PUBLIC_KEYS_KEY: json.dumps(keys, sort_keys=True),
        "keyId": key.key_id,
        "publicKey": key.public_b64,
    }


def publish_public_key() -> SigningKey:
    """Makes sure the operator's namespace has the public-key ConfigMap with the current
    key (and every key published before); returns the current key."""
    key = current_key()
    now = time.monotonic()
    refresh = settings().signing_key_refresh_seconds
    target = operator_namespace()
    with _lock:
        fresh = now - _published.get(target, -refresh) < refresh and key.key_id in _trusted
    if not fresh:
        published = custom.read_config_map_data(target, SIGNING_CONFIG_MAP)
        document = public_keys_document(key, published)
        apply.apply_owned(target, custom.config_map_manifest(SIGNING_CONFIG_MAP, document))
        with _lock:
            _trusted.clear()
            _trusted.update(json.loads(document[PUBLIC_KEYS_KEY]))
            _published[target] = now
    return key


def trusted_public_keys() -> dict[str, str]:
    """``{keyId: base64 public key}`` as published in the operator's namespace (publishing
    first when needed): what the operator hands to verifiers it runs in tenant
    namespaces."""
    publish_public_key()
    with _lock:
        return dict(_trusted)
