"""Version manifests: sorted (key, size, sha256) entries; the version id is their SHA-256.

The manifest holds nothing else (no timestamps, no counts), so the same content always
yields the same version id, and any changed byte in any entry yields a different one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edgeops.canonical_json import sorted_json


@dataclass(frozen=True, order=True)
class ManifestEntry:
    key: str
    size: int
    sha256: str

    @classmethod
    def of(cls, key: str, data: bytes) -> ManifestEntry:
        return cls(key, len(data), hashlib.sha256(data).hexdigest())

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "size": self.size, "sha256": self.sha256}


def manifest_bytes(entries: Iterable[ManifestEntry]) -> bytes:
    ordered = sorted(entries)
    keys = [e.key for e in ordered]
    if len(set(keys)) != len(keys):
        raise ValueError("manifest keys must be unique")
    return sorted_json({"entries": [e.to_dict() for e in ordered]})


def version_id(entries: Iterable[ManifestEntry]) -> str:
    return hashlib.sha256(manifest_bytes(entries)).hexdigest()


def parse_manifest(data: bytes) -> list[ManifestEntry]:
    import json

    document = json.loads(data)
    return [
        ManifestEntry(str(e["key"]), int(e["size"]), str(e["sha256"])) for e in document["entries"]
    ]
