"""The per-device report ``sequence``: one counter across status, telemetry and samples.

The gateway refuses a report whose sequence is not above every one it saw (409
``StaleSequence``), so the counter must survive restarts: each number is covered by what
``<state_dir>/sequence.json`` holds *before* the report carrying it is sent. The file holds
the highest number reserved: with ``block`` 1 every number is written (and fsync-ed) before
use; with a larger block one write reserves the next ``block`` numbers, and a restart goes
on after the reservation. A crash wastes numbers (at most ``block``); it never reuses one.
The fleet simulator reserves in blocks: hundreds of devices sharing one disk and one event
loop spent most of a cycle in fsync (a real device may too: fewer writes wear flash less).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Final

from edgeops.device.files import atomic_write_json

SEQUENCE_FILE: Final = "sequence.json"


class Sequence:
    """A persistent, strictly increasing counter (thread-safe) reserving ``block`` (≥ 1)
    numbers per write."""

    def __init__(self, state_dir: Path, block: int = 1) -> None:
        if block < 1:
            raise ValueError(f"block must be at least 1, not {block}")
        self._path = state_dir / SEQUENCE_FILE
        self._lock = threading.Lock()
        self._block = block
        self._last = -1
        if self._path.exists():
            # Numbers up to the reservation may have been sent before a crash: go on after.
            self._last = int(json.loads(self._path.read_text())["last"])
        self._reserved = self._last

    @property
    def last(self) -> int:
        """The last number handed out (-1 before the first)."""
        return self._last

    def next(self) -> int:
        """The next number, durable on disk before it is returned. Raises ``OSError``."""
        with self._lock:
            value = self._last + 1
            if value > self._reserved:
                reserved = value + self._block - 1
                atomic_write_json(self._path, {"last": reserved})
                self._reserved = reserved
            self._last = value
            return value
