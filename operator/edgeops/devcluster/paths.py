"""Where the devcluster keeps binaries, Go caches and per-cluster state."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The user cache directory for EdgeOps (binaries and Go caches survive across runs)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgeops"


def state_root() -> Path:
    """Per-cluster state (certificates, etcd data, logs) lives under here by default."""
    override = os.environ.get("EDGEOPS_DEV_HOME")
    if override:
        return Path(override)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edgeops" / "devcluster"
