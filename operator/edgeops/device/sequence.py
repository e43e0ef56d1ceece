"""The per-device report ``sequence``: one counter across status, telemetry and samples.

The gateway refuses a report whose sequence is not above every one it saw (409
``StaleSequence``), so the counter must survive restarts: each number is written to
``<state_dir>/sequence.json`` *before* the report carrying it is sent. A crash after the
write wastes a number; it can never reuse one.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Final

from edgeops.device.files import atomic_write_json

SEQUENCE_FILE: Final = "sequence.json"


class Sequence:
    """A persistent, strictly increasing counter (thread-safe)."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / SEQUENCE_FILE
        self._lock = threading.Lock()
        self._last = -1
        if self._path.exists():
            self._last = int(json.loads(self._path.read_text())["last"])

    @property
    def last(self) -> int:
        """The last number handed out (-1 before the first)."""
        return self._last

    def next(self) -> int:
        """The next number, durable on disk before it is returned. Raises ``OSError``."""
        with self._lock:
            value = self._last + 1
            atomic_write_json(self._path, {"last": value})
            self._last = value
            return value
