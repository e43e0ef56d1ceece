"""What deleting a Dataset does to its data: pure decisions over object keys.

A Dataset's objects are its folder ``datasets/<ns>/<name>/`` (index, versions with their
manifests, profiles and rejected rows, staging markers, rejects of failed collections)
and its inbox prefixes (device uploads). ``spec.governance.deletionPolicy`` says what
happens to them when the Dataset is deleted:

- ``Delete``: everything goes, except the folders of versions still in use (an EdgeModel's
  current, candidate or approved version, a pinned version, an unfinished TrainingRun):
  deleting those would break a rollback or a running training. They are kept and recorded,
  and deleted once nothing uses them.
- ``Retain``: nothing goes now; everything is recorded, and retention keeps deleting what
  is older than ``retentionDays`` and unused, as it did while the Dataset existed.

Content blobs (``blobs/sha256/``) are shared by every dataset, run and model, so they are
never deleted here: once no manifest references them, garbage collection removes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

DeletionPolicy = Literal["Retain", "Delete"]

INDEX: Final = "index.json"
MANIFEST: Final = "manifest.json"
VERSIONS: Final = "versions/"


@dataclass(frozen=True)
class DeletionPlan:
    """What to do with a deleted Dataset's objects now."""

    #: Keys to delete, in order: the index first (a version it lists must not vanish
    #: under a reader), then manifests (a version without one is never read), then the rest.
    delete: list[str] = field(default_factory=list)
    #: Versions kept although the policy is Delete, with who uses them.
    kept: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Versions whose folders remain (kept, or every version under Retain): the record's.
    retained: list[str] = field(default_factory=list)
    #: Whether the index must be rewritten to list only the retained versions.
    rewrite_index: bool = False
    #: Versions whose folders are deleted, and how many of ``delete`` are inbox objects.
    deleted_versions: list[str] = field(default_factory=list)
    deleted_raw: int = 0


def version_of(dataset_prefix: str, key: str) -> str | None:
    """The version id of a key in a version's folder, or None for any other key."""
    rest = key.removeprefix(dataset_prefix)
    if rest == key or not rest.startswith(VERSIONS):
        return None
    version = rest.removeprefix(VERSIONS).split("/", 1)[0]
    return version or None


def own_inboxes(mine: Iterable[str], others: Iterable[str]) -> tuple[list[str], list[str]]:
    """Splits this Dataset's inbox prefixes into those it may delete under and those it
    shares with another Dataset of the namespace (either prefix containing the other):
    deleting those would take that Dataset's samples. Returns (own, shared)."""
    other = list(others)
    own: list[str] = []
    shared: list[str] = []
    for prefix in dict.fromkeys(mine):  # unique, in order
        overlaps = any(prefix.startswith(o) or o.startswith(prefix) for o in other)
        (shared if overlaps else own).append(prefix)
    return own, shared


def plan_deletion(
    policy: DeletionPolicy,
    dataset_prefix: str,
    dataset_keys: Iterable[str],
    inbox_keys: Iterable[str],
    uses: Mapping[str, Sequence[str]],
) -> DeletionPlan:
    """Decides which of a deleted Dataset's objects go now.

    ``dataset_keys`` are the keys under ``dataset_prefix``; ``inbox_keys`` those under its
    own (unshared) inbox prefixes; ``uses`` maps a dataset version id to who uses it."""
    keys = sorted(set(dataset_keys))
    versions = sorted({v for k in keys if (v := version_of(dataset_prefix, k)) is not None})
    if policy == "Retain":
        kept = {v: tuple(uses[v]) for v in versions if v in uses}
        return DeletionPlan(kept=kept, retained=versions)
    kept = {v: tuple(uses[v]) for v in versions if v in uses}
    index = dataset_prefix + INDEX
    doomed = [k for k in keys if version_of(dataset_prefix, k) not in kept and k != index]
    manifests = [k for k in doomed if k.endswith("/" + MANIFEST)]
    rest = [k for k in doomed if not k.endswith("/" + MANIFEST)]
    first = [index] if index in keys and not kept else []
    raw = sorted(set(inbox_keys))
    return DeletionPlan(
        delete=first + manifests + rest + raw,
        kept=kept,
        retained=sorted(kept),
        rewrite_index=bool(kept) and index in keys,
        deleted_versions=[v for v in versions if v not in kept],
        deleted_raw=len(raw),
    )


def due_for_deletion(
    record: Mapping[str, Any],
    now: datetime,
    uses: Mapping[str, Sequence[str]],
    serving: str | None = None,
) -> list[str]:
    """The retained versions of a deleted Dataset's record to delete now.

    Never one still in use, nor ``serving``: the latest version of a Dataset of the same
    name created again (it shares the folder and may have republished the same content).
    Delete policy: every other version (they were kept only for their users). Retain:
    those created more than ``retentionDays`` ago; none without ``retentionDays``."""
    policy = record.get("deletionPolicy")
    days = record.get("retentionDays")
    due: list[str] = []
    for version in record.get("versions") or []:
        vid = str(version["id"])
        if vid in uses or vid == serving:
            continue
        if policy == "Delete":
            due.append(vid)
        elif days is not None and version.get("created"):
            created = datetime.fromisoformat(str(version["created"]))
            if created < now - timedelta(days=int(days)):
                due.append(vid)
    return due


def describe_kept(kept: Mapping[str, Sequence[str]], limit: int = 5) -> str:
    """'version abc123def456 kept: used by EdgeModel m v3 (Approved); ...' (at most
    ``limit`` versions named, then a count), for Events."""
    parts = [
        f"version {v[:12]} kept: used by {', '.join(users)}"
        for v, users in list(kept.items())[:limit]
    ]
    if len(kept) > limit:
        parts.append(f"and {len(kept) - limit} more versions kept for their users")
    return "; ".join(parts)
