"""Crash-safe writes of the agent's state files.

Every file the agent changes (journal, sequence counter, key, slot contents) is written to a
temporary file in the same directory, flushed with ``fsync``, moved over the old one with
``os.replace`` (atomic on POSIX) and the directory is ``fsync``-ed, so a power loss at any
instant leaves either the old or the new file, never a torn one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def fsync_dir(directory: Path) -> None:
    """Makes a rename or a new file in ``directory`` durable (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replaces ``path`` with ``data`` atomically, with permissions ``mode``. Raises
    ``OSError``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, document: Any, mode: int = 0o600) -> None:
    """``document`` as indented JSON, written with :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, json.dumps(document, indent=2, sort_keys=True).encode(), mode)
