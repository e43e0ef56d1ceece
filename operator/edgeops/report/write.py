"""Writes a report directory: ``index.html`` and its PNGs, each file written to a temporary
name and renamed into place, so a reader (or a crash) never sees half a file."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from edgeops.report import charts, page
from edgeops.report.data import ReportData

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _write(path: Path, content: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        # mkstemp creates 0600; a report is for sharing, like any file the user writes.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(handle, 0o666 & ~umask)
        with os.fdopen(handle, "wb") as file:
            file.write(content)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_report(data: ReportData, directory: Path) -> Path:
    """Draws the plots of ``data``, writes them and the page into ``directory`` (created
    if needed) and returns the page's path. Raises OSError when the directory cannot be
    written."""
    directory.mkdir(parents=True, exist_ok=True)
    images: dict[str, Any] = {"rollouts": {}}

    def save(name: str, png: bytes | None) -> str | None:
        if png is None:
            return None
        _write(directory / name, png)
        return name

    images["drift_over_time"] = save(
        "drift-over-time.png", charts.drift_over_time(data.drift_history)
    )
    drift = data.status.get("drift") or {}
    images["drift_last"] = save("drift-last.png", charts.drift_last(drift.get("features") or []))
    images["traffic"] = save("traffic.png", charts.traffic(data.traffic))
    for rollout in data.rollouts:
        name = str((rollout.get("metadata") or {}).get("name"))
        images["rollouts"][name] = save(
            f"rollout-{_UNSAFE.sub('_', name)}.png",
            charts.rollout_progress(rollout, data.generated_at),
        )
    index = directory / "index.html"
    _write(index, page.render(data, images).encode())
    return index
