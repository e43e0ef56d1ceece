"""One pass over a collection's source objects: read (vectorised where it can be), clean,
and spill the accepted rows (:class:`edgeops.datasets.stream.Spill`), one object and one
batch at a time. Memory bound: see :mod:`edgeops.datasets.stream`."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edgeops.api import DatasetSchema, DatasetSpec

from .cleaning import Cleaner, CleanResult
from .readers import ReadLimits
from .sources import SourceBatch
from .stream import Shards, Spill

log = logging.getLogger(__name__)

#: Typed rows handed to the spill at a time on the row path.
ROW_BATCH = 8192
#: Objects smaller than this are read by rows: no faster to vectorise, and a collection of
#: small objects (an inbox) then never imports pyarrow (~1 s of a Job's start when busy).
FAST_MIN_BYTES = 256 * 1024


def spill_sources(
    batches: Iterable[SourceBatch], schema: DatasetSchema, spec: DatasetSpec, directory: Path
) -> tuple[CleanResult, Shards]:
    """Reads, cleans and spills every batch, then finishes the spill: the cleaning
    summary (``accepted`` empty, ``accepted_count`` and ``duplicates`` set) and the
    shards and profile. Raises what the readers and sources raise."""
    cleaner = Cleaner(schema, spec.validation)
    spill = Spill(schema, spec.split, directory)
    limits = ReadLimits.from_settings()
    fast_objects = 0
    try:
        for batch in batches:
            raw = batch.raw
            if raw is None:
                _spill_rows(spill, cleaner.feed(batch.name, batch.rows()))
                continue
            data = raw.fetch()
            if (
                raw.fmt in ("csv", "parquet")
                and len(data) >= FAST_MIN_BYTES
                and _fast(spill, cleaner, data, raw.fmt, raw.encoding, schema, spec, limits)
            ):
                fast_objects += 1
            else:
                _spill_rows(spill, cleaner.feed(batch.name, raw.read(data)))
            del data  # not held while the next object is fetched, nor while finishing
        _spill_rows(spill, iter(cleaner.filled()))
        shards = spill.finish(spec.validation.dedupe)
    finally:
        spill.close()
    result = cleaner.result
    result.accepted_count = shards.rows
    result.duplicates = shards.duplicates
    log.info("read %d objects vectorised, %d rows spilled", fast_objects, spill.count)
    return result, shards


def _fast(
    spill: Spill,
    cleaner: Cleaner,
    data: bytes,
    fmt: str,
    encoding: str | None,
    schema: DatasetSchema,
    spec: DatasetSpec,
    limits: ReadLimits,
) -> bool:
    """Spills the object through :mod:`edgeops.datasets.fastpath`; False (and nothing
    spilled, nothing counted) when it needs the row path."""
    from . import fastpath  # imports pyarrow: only for objects that take this path

    mark = spill.mark()
    coercions = cleaner.result.coercions.copy()
    held: list[Any] = []
    averaged = bool(cleaner.averaged)
    try:
        for batch in fastpath.batches(data, fmt, encoding, schema, spec.validation, limits):
            if batch.lines is not None:
                spill.add_lines(*batch.lines, batch.keys, batch.columns)
            else:
                spill.add(batch.rows, batch.columns)
            coercions.update(batch.coercions)
            if averaged:  # FillMean: kept until the object is known to go this way
                held.append(batch)
    except fastpath.NotFastError:
        spill.rollback(mark)
        return False
    cleaner.result.coercions = coercions
    for batch in held:  # FillMean: the object's rows count in the means, in order
        cleaner.add_to_means(batch.rows)
    return True


def _spill_rows(spill: Spill, rows: Iterable[dict[str, object]]) -> None:
    pending: list[dict[str, object]] = []
    for row in rows:
        pending.append(row)
        if len(pending) >= ROW_BATCH:
            spill.add_rows(pending)
            pending = []
    spill.add_rows(pending)
