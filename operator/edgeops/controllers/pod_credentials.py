"""Scoped, short-lived S3 credentials in an owned Secret: the one flow a training run's
pod, a Dataset's collection Job and a model's KServe predictor get their S3 access by.

Check that the Secret's name (and any other child the pod needs) is free or already this
owner's, *then* ask STS (``AssumeRole`` with the session policy of
:mod:`edgeops.policy.credentials`), then server-side apply the Secret with the issued
keys. The operator's own keys never leave its namespace; a user's object of the wanted name
is never overwritten (``NameTakenError``) and costs no credentials.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from edgeops.api import format_time
from edgeops.k8s import apply, custom
from edgeops.policy import training
from edgeops.settings import settings
from edgeops.store import ArtifactStore, ScopedCredentials, assume_role

#: The Secret's keys for access key, secret key and session token that EdgeOps's own pods
#: (trainer, collector) read.
POD_KEYS: Final = (training.ACCESS_KEY, training.SECRET_KEY, training.SESSION_TOKEN)
#: Builds the Secret from its data (key -> plain value) and the expiry (RFC 3339).
SecretBuilder = Callable[[dict[str, str], str], dict[str, Any]]


def issue(
    namespace: str,
    store: ArtifactStore,
    *,
    secret_name: str,
    owner: Mapping[str, Any],
    session_policy: Callable[[], Mapping[str, Any]],
    seconds: int,
    session_name: str,
    secret: SecretBuilder,
    keys: tuple[str, str, str] = POD_KEYS,
    also_owned: Sequence[dict[str, Any]] = (),
) -> ScopedCredentials:
    """Issues credentials limited by ``session_policy()`` for ``seconds`` and applies them
    as ``secret(data, expires)`` in ``namespace``, ``data`` holding access key, secret key
    and session token under ``keys`` (in that order; :data:`POD_KEYS` unless the pod reads
    others, as KServe's storage initializer does). ``owner`` is the controller
    reference the Secret (and each of ``also_owned``) must carry if it exists already.
    Returns what STS issued.

    Raises NameTakenError (a Secret or other child of that name the owner does not
    control: left alone), StaleOwnerError (a deleted namesake's child awaits garbage
    collection), ValueError (a session policy that cannot be built), StoreError (STS
    refused or down), ApiException."""
    stub = {"kind": "Secret", "metadata": {"name": secret_name, "ownerReferences": [owner]}}
    # Checked before asking STS: a taken name costs no credentials.
    for wanted in (stub, *also_owned):
        custom.check_owned(apply.read(namespace, wanted), wanted)
    conf = settings()
    issued = assume_role(
        store.config,
        session_policy(),
        seconds,
        sts_endpoint=conf.s3_sts_endpoint,
        role_arn=conf.s3_role_arn,
        session_name=session_name,
    )
    values = (issued.access_key, issued.secret_key, issued.session_token)
    data = dict(zip(keys, values, strict=True))
    apply.server_side_apply(namespace, secret(data, format_time(issued.expires)))
    return issued
