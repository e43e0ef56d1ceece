"""A model version's reference profile as the gateway needs it: the bins devices count
feature values over (sent in :class:`~edgeops.api.wire.DesiredState`) and the bounded label
values telemetry is checked and folded against (:class:`~edgeops.metrics.fleet.ReferenceBins`).

The profile is the version's artifact of format ``reference-profile`` (``profile.json``
the trainer writes, see :func:`edgeops.datasets.profile.build_profile`), a
content-addressed blob: it never changes, so it is read from S3 once per replica and kept
in :meth:`~edgeops.gateway.context.Fleet.immutable`'s small LRU.
"""

from __future__ import annotations

import json
from typing import Any

from edgeops.api.wire import ProfileFeature
from edgeops.gateway.context import ApiError, Gateway
from edgeops.metrics.fleet import ReferenceBins
from edgeops.store import StoreError

PROFILE_FORMAT = "reference-profile"


def version_entry(model: dict[str, Any], number: int) -> dict[str, Any] | None:
    """The EdgeModel's ``status.versions[]`` entry of ``number``, or None."""
    for entry in (model.get("status") or {}).get("versions") or []:
        if isinstance(entry, dict) and entry.get("number") == number:
            return entry
    return None


def reference_bins(gw: Gateway, version: dict[str, Any]) -> ReferenceBins:
    """The bins of a ``status.versions[]`` entry's reference profile; empty bins (no
    features, no classes) for a version without one. 503 ``ProfileUnavailable`` when S3
    fails (the device retries), 500 ``InvalidReferenceProfile`` for a blob that is not a
    profile."""
    artifact = next(
        (a for a in version.get("artifacts") or [] if a.get("format") == PROFILE_FORMAT), None
    )
    if artifact is None:
        return ReferenceBins()
    sha256 = str(artifact.get("sha256", ""))

    def load() -> ReferenceBins:
        try:
            # get_blob checks the content hash, so a profile is trusted as exactly the one
            # the version registered.
            document = json.loads(gw.store().get_blob(sha256))
            return ReferenceBins.from_profile(document)
        except StoreError as exc:
            raise ApiError(
                503,
                "ProfileUnavailable",
                f"reference profile unreadable: {exc}",
                {"Retry-After": "30"},
            ) from None
        except (ValueError, TypeError, AttributeError) as exc:  # JSONDecodeError, not a profile
            raise ApiError(
                500, "InvalidReferenceProfile", f"reference profile {sha256}: {exc}"
            ) from None

    return gw.fleet.immutable((PROFILE_FORMAT, sha256), load)  # type: ignore[no-any-return]


def wire_profile(bins: ReferenceBins) -> dict[str, ProfileFeature] | None:
    """The bins as :attr:`DesiredState.profile`: numeric features with their inner edges,
    categorical ones with their categories; None when there are none."""
    features = {name: ProfileFeature(edges=list(edges)) for name, edges in bins.numeric.items()}
    features.update(
        {name: ProfileFeature(categories=list(c)) for name, c in bins.categorical.items()}
    )
    return dict(sorted(features.items())) or None
