"""Calibration of drift thresholds on the reference data's own variation.

A fixed threshold ignores two things: the window size n (sampling noise of every binned
distance shrinks like 1/n or 1/sqrt(n)) and the data's own dependence (consecutive
readings of a sensor, days of a season and devices of a site are not independent draws,
so real windows vary far more than iid samples of the same size). EdgeOps handles the
first exactly and the second with a stored, measured correction:

* **Null distribution at any n, computed on the fly** (:func:`edgeops.drift.assess.assess`):
  parametric bootstrap of the two-sample null from the reference histogram, i.e. a
  reference of N and a live window of n drawn from the same multinomial (Efron & Tibshirani
  1993, ch. 16), and the statistic's upper quantile / p-value read off B resamples. This is
  cheap (B x bins numbers) and works for any n, so nothing per n needs storing.
* **Design effect, stored in the profile** (:func:`calibrate`): the reference rows, in
  the order they were collected, are cut into contiguous chunks of m rows for several m
  (NannyML's chunked reference period), and each chunk's Pearson chi-square against the
  whole reference is compared with its iid expectation ``(k - 1)(N - m)/(N - 1)`` (sampling
  without replacement). Their ratio ``deff(m) >= 1`` is the first-order Rao-Scott design
  effect (Rao & Scott 1981, JASA 76:221; 1984, Ann. Stat. 12:46): dependent data behave
  like iid data of ``n / deff(n)`` samples. The bootstrap above uses that effective size;
  ``deff`` is interpolated linearly in log n between the stored chunk sizes and held
  constant beyond them.

Why not store empirical quantiles of each statistic per chunk size instead? A reference
yields a few dozen chunks of a given size, far too few for the 1 - alpha/m quantiles that
false-alarm control over many features needs (0.999 for 50 features), and only at the
chunk sizes it has. The design effect is a mean, which a few dozen chunks estimate well.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Chunk sizes tried (rows); a size is used when the reference has MIN_CHUNKS chunks of it.
CHUNK_SIZES: tuple[int, ...] = (
    10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000,
)  # fmt: skip

#: Fewest chunks a design effect is estimated from.
MIN_CHUNKS = 5


@dataclass(frozen=True)
class Calibration:
    """Design effect per chunk size of one feature (see the module docstring).

    ``chunk_sizes``: increasing, rows; ``design_effects``: same length, each >= 1;
    ``chunks``: how many chunks each was estimated from.
    """

    chunk_sizes: tuple[int, ...] = ()
    design_effects: tuple[float, ...] = ()
    chunks: tuple[int, ...] = ()

    def design_effect(self, n: float) -> float:
        """``deff(n)``: linear in log n between stored sizes, constant beyond; 1 when
        nothing is stored (iid null)."""
        if not self.chunk_sizes or n <= 0:
            return 1.0
        value = float(
            np.interp(math.log(n), np.log(self.chunk_sizes), np.asarray(self.design_effects))
        )
        return max(1.0, value)

    @property
    def max_design_effect(self) -> float:
        return max(self.design_effects, default=1.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "chunked-reference-design-effect",
            "chunkSizes": list(self.chunk_sizes),
            "designEffects": list(self.design_effects),
            "chunks": list(self.chunks),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Calibration:
        """Reads :meth:`to_dict`'s form; ``None`` or an unreadable entry is no calibration."""
        if not isinstance(data, Mapping):
            return cls()
        try:
            sizes = tuple(int(s) for s in data.get("chunkSizes", ()))
            effects = tuple(float(d) for d in data.get("designEffects", ()))
            chunks = tuple(int(c) for c in data.get("chunks", ()))
        except (TypeError, ValueError):
            return cls()
        if len(sizes) != len(effects) or list(sizes) != sorted(set(sizes)):
            return cls()
        if not all(math.isfinite(d) and d >= 1 for d in effects):
            return cls()
        return cls(sizes, effects, chunks if len(chunks) == len(sizes) else ())


def calibrate(bin_index: ArrayLike, bins: int) -> Calibration:
    """Design effects of one feature from its reference rows in collection order.

    ``bin_index``: shape (N,), the bin (0 .. bins-1, missing values included as a bin of
    their own) of each reference row, in the order the rows were collected; shuffled rows
    give design effects near 1. Returns the design effect for each of ``CHUNK_SIZES`` with at
    least ``MIN_CHUNKS`` whole chunks (a trailing partial chunk is ignored). Raises
    ``ValueError`` for an index outside ``0 .. bins-1``.
    """
    index = np.asarray(bin_index, dtype=np.int64).ravel()
    if index.size and (index.min() < 0 or index.max() >= bins):
        raise ValueError(f"bin index outside 0..{bins - 1}")
    total = index.size
    counts = np.bincount(index, minlength=bins).astype(float)
    active = counts > 0
    dof = int(active.sum()) - 1
    sizes: list[int] = []
    effects: list[float] = []
    chunks_used: list[int] = []
    if dof < 1:
        return Calibration()
    shares = counts[active] / total
    for m in CHUNK_SIZES:
        chunks = total // m
        if chunks < MIN_CHUNKS:
            break
        # Counts per (chunk, bin): one bincount (np.add.at is ~10x slower at 1 M rows).
        rows = np.repeat(np.arange(chunks), m)
        flat = np.bincount(rows * bins + index[: chunks * m], minlength=chunks * bins)
        per_chunk = flat.reshape(chunks, bins).astype(float)
        expected = m * shares
        chi2 = (((per_chunk[:, active] - expected) ** 2) / expected).sum(axis=1)
        iid = dof * (total - m) / (total - 1)
        sizes.append(m)
        effects.append(max(1.0, float(chi2.mean() / iid)))
        chunks_used.append(chunks)
    return Calibration(tuple(sizes), tuple(effects), tuple(chunks_used))


def numeric_bin_index(values: Sequence[float | None], edges: Sequence[float]) -> list[int]:
    """Bin of each value over inner ``edges`` (left-closed, as
    :func:`edgeops.drift.histograms.bin_counts`); ``None`` and non-finite values get the
    missing bin ``len(edges) + 1``."""
    return [int(i) for i in numeric_bin_array(values, edges)]


def numeric_bin_array(
    values: Sequence[float | None] | NDArray[np.float64], edges: Sequence[float]
) -> NDArray[np.int64]:
    """:func:`numeric_bin_index` as an int64 array; a float ndarray (NaN for missing) is
    binned without a Python object per value."""
    if isinstance(values, np.ndarray):
        raw = np.asarray(values, dtype=float).ravel()
    else:
        raw = np.asarray([math.nan if v is None else float(v) for v in values], dtype=float)
    index = np.searchsorted(np.asarray(edges, dtype=float), raw, side="right")
    index[~np.isfinite(raw)] = len(edges) + 1
    result: NDArray[np.int64] = index.astype(np.int64)
    return result
