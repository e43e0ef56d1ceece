"""Per-feature and fleet drift verdicts from live bin counts and a reference profile.

The rule (issue 13, "statistics that hold up"), for one feature with n live samples:

1. **Inconclusive** when the counts cannot be judged: a NaN, infinite or negative count, a
   bin the profile does not have, an empty histogram, or fewer than ``min_samples``
   samples. Never "no drift".
2. **Calibrated threshold.** The statistic's null distribution at this n is bootstrapped
   from the reference histogram (a reference of N and a window of ``n / deff(n)`` drawn
   from the same multinomial, ``deff`` the design effect measured on the reference's own
   chunks; :mod:`edgeops.drift.calibration`). ``p_value = (1 + #{null >= observed}) /
   (B + 1)`` (Davison & Hinkley 1997, eq. 4.11); ``threshold`` is the smallest statistic
   whose p-value would be at most the level.
3. **Minimum effect.** Drift needs ``statistic > threshold`` *and* ``statistic >=
   min_effect``, so that huge fleets do not alarm on shifts too small to matter. Defaults
   (``MIN_EFFECT``): PSI 0.1 (Yurdakul 2018: "slight change" starts at 0.1), JS 0.1 and
   normed Wasserstein 0.1 (Evidently's documented defaults), KS 0.1.
4. **Many features** (:func:`combine`): Bonferroni over the m features of the model: a
   feature drifts when its p-value is at most ``alpha / m`` (and its effect is large
   enough), which bounds the probability of any false alarm per measurement by ``alpha``
   whatever the dependence between features. :func:`assess_features` calls :func:`assess`
   at ``alpha / m`` so each feature's ``threshold`` is the one its statistic was compared
   with. The fleet drifts if any feature does; it is NoDrift only when every feature was
   conclusive.
5. **Fixed thresholds** stay available (``threshold=``): then Drift is ``statistic >
   threshold``, as a user asked, with the p-value still reported; no correction applies.

Statistics: PSI and JS on all bins including "missing" (a sensor that stops reporting
drifts); KS and Wasserstein on the ordered numeric bins only, Wasserstein in units of the
reference standard deviation (Evidently's "normed" Wasserstein), with a format-2 profile's
bin centers as positions. Categorical features have no order: ``ks`` and ``wasserstein``
fall back to ``js`` there (the verdict's ``method`` says so).

Live counts come exactly as the gateway exports them
(``edgeops_device_feature_observations_total{feature, bin}``): a mapping from the ``bin``
label to a count, numeric bins ``"0"`` .. ``str(len(edges))``, categories (others folded
into ``"other"``) and ``"missing"``; bins without a series count 0. :func:`live_from_wire`
turns a :class:`~edgeops.api.wire.FeatureCounts`' fields into that form.

**Where the no-drift distributions come from.** Simulating one (step 2) costs tens of
milliseconds per feature, far more than the statistics. By default :func:`assess` simulates
it in the caller and keeps it in a process-wide LRU cache. A caller that must not block
(the operator's reconcile) passes ``nulls=``: a lookup that answers from its own cache or
returns ``None`` after scheduling the simulation elsewhere; the feature is then
``Inconclusive`` with reason ``Calibrating`` (statistic and samples filled in) and its
``null_key`` names what is being simulated. :func:`grid_neighbours` gives the keys of
nearby window sizes, for pre-warming.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray

from .calibration import Calibration
from .distances import Method, bin_positions, statistic

Verdict = Literal["Drift", "NoDrift", "Inconclusive"]

MISSING = "missing"
OTHER = "other"
#: Categories kept per feature, as the gateway's label bound (``MAX_CLASSES - 1``).
MAX_CATEGORIES = 63

MIN_EFFECT: Mapping[str, float] = {"psi": 0.1, "js": 0.1, "ks": 0.1, "wasserstein": 0.1}
DEFAULT_RESAMPLES = 10_000
MAX_RESAMPLES = 200_000


@dataclass(frozen=True)
class NullKey:
    """What determines one simulated no-drift distribution (see :func:`simulate_null`):
    the statistic, the reference counts (numeric bins, plus missing for PSI/JS), bin
    positions (Wasserstein only), the live window's effective size on the grid
    (:func:`_on_grid`), the reference's effective size, the number of resamples and the
    seed. Hashable, so caches key on it."""

    method: Method
    ref_counts: tuple[float, ...]
    positions: tuple[float, ...] | None
    n_live: int
    n_reference: int
    resamples: int
    seed: int

    def with_live(self, n_live: int) -> NullKey:
        """The same distribution for a window of ``n_live`` effective samples."""
        return replace(self, n_live=n_live)


#: A caller's source of no-drift distributions: the array for a key, or None when it is not
#: ready (the caller has scheduled its simulation); see the module docstring.
NullSource = Callable[[NullKey], "NDArray[np.float64] | None"]


@dataclass(frozen=True)
class ReferenceFeature:
    """One feature of a reference profile, as the drift statistics need it.

    ``labels``: the ``bin`` label of each bin, in order (numeric: ``"0"`` .. ``str(k-1)``;
    categorical: the kept categories then ``"other"``); ``counts``: reference counts per
    label (same length); ``missing``: reference missing count; ``positions``: the point of
    each numeric bin (feature units) or ``None`` for categorical; ``scale``: reference
    standard deviation (Wasserstein units); ``calibration``: stored design effects (empty for
    format-1 profiles, which therefore get the iid null).
    """

    kind: Literal["numeric", "categorical"]
    labels: tuple[str, ...]
    counts: tuple[float, ...]
    missing: float
    positions: tuple[float, ...] | None
    scale: float
    calibration: Calibration

    @classmethod
    def from_profile(cls, entry: Mapping[str, Any]) -> ReferenceFeature:
        """From a profile's ``features[name]`` entry (format 1 or 2). ``ValueError`` if it is
        neither a numeric nor a categorical histogram."""
        calibration = Calibration.from_dict(entry.get("calibration"))
        missing = float(entry.get("missing", 0) or 0)
        if entry.get("kind") == "numeric":
            edges = [float(e) for e in entry["edges"]]
            counts = tuple(float(c) for c in entry["counts"])
            if len(counts) != len(edges) + 1:
                raise ValueError("numeric profile entry: len(counts) != len(edges) + 1")
            centers = entry.get("centers")
            points = bin_positions(
                len(counts), edges, centers if isinstance(centers, list) else None
            )
            binning = entry.get("binning") if isinstance(entry.get("binning"), Mapping) else {}
            scale = _positive((binning or {}).get("scale")) or _positive(entry.get("std"))
            if scale is None:
                scale = 1e-3 * max(1.0, float(np.abs(points).max()))
            return cls(
                "numeric",
                tuple(str(i) for i in range(len(counts))),
                counts,
                missing,
                tuple(float(x) for x in points),
                scale,
                calibration,
            )
        if entry.get("kind") == "categorical":
            raw = {str(k): float(v) for k, v in entry["counts"].items()}
            ranked = sorted(raw.items(), key=lambda kv: (-kv[1], kv[0]))
            kept = [k for k, _ in ranked[:MAX_CATEGORIES]]
            other = sum(v for k, v in ranked[MAX_CATEGORIES:])
            return cls(
                "categorical",
                (*kept, OTHER),
                (*(raw[k] for k in kept), other),
                missing,
                None,
                1.0,
                calibration,
            )
        raise ValueError(f"profile entry of unknown kind {entry.get('kind')!r}")


@dataclass(frozen=True)
class FeatureVerdict:
    """One feature's drift measurement: the numbers behind the verdict.

    ``statistic``: the distance (PSI, JS distance in [0, 1], binned KS, or Wasserstein in
    reference standard deviations); ``threshold``: what it was compared with (calibrated
    quantile, or the user's fixed threshold); ``p_value``: bootstrap p-value under the
    calibrated null; ``samples``: live count including missing; ``effective_samples``:
    ``n / design_effect``; ``reason``: why, in words with the numbers; ``null_key``: the
    no-drift distribution the verdict used (or awaits); ``pending``: it was not available
    from the caller's ``nulls`` lookup, so the verdict is Inconclusive (``Calibrating``).
    """

    feature: str
    method: Method
    verdict: Verdict
    reason: str
    statistic: float | None = None
    threshold: float | None = None
    p_value: float | None = None
    min_effect: float = 0.0
    level: float | None = None
    samples: int = 0
    effective_samples: float | None = None
    design_effect: float | None = None
    calibrated: bool = True
    null_key: NullKey | None = None
    pending: bool = False


@dataclass(frozen=True)
class FleetVerdict:
    """All features of one model: ``verdict`` Drift if any feature drifts (after the
    multiple-testing correction), NoDrift if all were conclusive and none drifts, else
    Inconclusive. ``worst``: the drifting feature with the smallest p-value (else the
    conclusive feature with the smallest p-value); ``features`` carry the final per-feature
    verdicts."""

    verdict: Verdict
    reason: str
    features: tuple[FeatureVerdict, ...]
    worst: str | None
    alpha: float
    correction: str = "bonferroni"


def live_from_wire(
    counts: Sequence[float] | None,
    categories: Mapping[str, float] | None,
    missing: float,
) -> dict[str, float]:
    """A device report's or summed reports' ``FeatureCounts`` fields in the Prometheus
    ``bin`` label form :func:`assess` takes."""
    live: dict[str, float] = {MISSING: float(missing)}
    for i, c in enumerate(counts or ()):
        live[str(i)] = float(c)
    for k, c in (categories or {}).items():
        live[k] = live.get(k, 0.0) + float(c)
    return live


def assess(
    reference: ReferenceFeature | Mapping[str, Any],
    live: Mapping[str, float],
    *,
    feature: str = "",
    method: Method = "psi",
    alpha: float = 0.05,
    min_samples: int = 100,
    min_effect: float | None = None,
    threshold: float | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    nulls: NullSource | None = None,
) -> FeatureVerdict:
    """Verdict for one feature (rule in the module docstring).

    ``reference``: a profile's feature entry or a :class:`ReferenceFeature`; ``live``:
    ``bin`` label -> count over the window (Prometheus ``increase`` values may be
    fractional); ``alpha``: the level this feature is tested at (:func:`assess_features`
    passes ``alpha / m``); ``min_effect``: default ``MIN_EFFECT[method]``; ``threshold``:
    a fixed user threshold instead of the calibrated one; ``resamples``: bootstrap size B
    (p-values resolve down to ``1 / (B + 1)``); ``seed``: the bootstrap is deterministic
    for a given seed, n and reference; ``nulls``: where the no-drift distribution comes
    from (default: simulated here, cached in this process); when it returns None the
    verdict is Inconclusive ``Calibrating`` with ``pending`` set. Raises ``ValueError`` only
    for bad arguments
    (``alpha`` outside (0, 1), ``resamples < 1``, an unreadable profile entry); bad live
    data is ``Inconclusive``.
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    ref = (
        reference
        if isinstance(reference, ReferenceFeature)
        else ReferenceFeature.from_profile(reference)
    )
    if ref.kind == "categorical" and method in ("ks", "wasserstein"):
        method = "js"
    effect = MIN_EFFECT[method] if min_effect is None else float(min_effect)
    base = FeatureVerdict(
        feature, method, "Inconclusive", "", min_effect=effect, level=alpha,
        calibrated=threshold is None,
    )  # fmt: skip

    problem = _check_live(ref, live)
    if problem:
        return replace(base, reason=problem)
    counts = np.array([float(live.get(label, 0.0)) for label in ref.labels])
    missing = float(live.get(MISSING, 0.0))
    samples = round(counts.sum() + missing)
    base = replace(base, samples=samples)
    if samples == 0:
        return replace(base, reason="NoSamples: the live histogram is empty")
    if samples < min_samples:
        return replace(base, reason=f"TooFewSamples: {samples} < minSamples {min_samples}")

    ordered = method in ("ks", "wasserstein")
    ref_counts = np.asarray(ref.counts, dtype=float)
    if not ordered:
        ref_counts = np.append(ref_counts, ref.missing)
        counts = np.append(counts, missing)
    n = float(counts.sum())
    if n <= 0:
        return replace(base, reason="NoSamples: every live value is missing")
    if ref_counts.sum() <= 0:
        return replace(base, reason="EmptyReference: the reference histogram is empty")
    positions = np.asarray(ref.positions) if method == "wasserstein" and ref.positions else None
    scale = ref.scale if method == "wasserstein" else 1.0
    ref_shares = ref_counts / ref_counts.sum()
    observed = float(statistic(method, ref_shares, (counts / n)[None, :], positions=positions)[0])
    observed /= scale

    deff = ref.calibration.design_effect(n)
    n_eff = _on_grid(max(1, round(n / deff)))
    ref_eff = max(1, round(ref_counts.sum() / ref.calibration.max_design_effect))
    key = NullKey(
        method, tuple(float(c) for c in ref_counts),
        ref.positions if method == "wasserstein" else None, n_eff, ref_eff, resamples, seed,
    )  # fmt: skip
    base = replace(
        base, statistic=observed, effective_samples=n / deff, design_effect=deff, null_key=key
    )
    simulated = _null(*_fields(key)) if nulls is None else nulls(key)
    if simulated is None:
        return replace(
            base,
            pending=True,
            reason=f"Calibrating: {method} {observed:.4g}, n {samples}, deff {deff:.2f}; its "
            f"no-drift distribution at effective n {n_eff} ({resamples} resamples) is being "
            "simulated",
        )
    null = simulated / scale
    exceed = int(np.count_nonzero(null >= observed * (1 - 1e-12)))
    p_value = (1 + exceed) / (resamples + 1)
    calibrated_threshold = _threshold(null, alpha)
    base = replace(base, p_value=p_value)
    numbers = f"{method} {observed:.4g}, n {samples}, deff {deff:.2f}"
    if threshold is not None:
        verdict: Verdict = "Drift" if observed > threshold else "NoDrift"
        sign = ">" if verdict == "Drift" else "<="
        return replace(
            base,
            verdict=verdict,
            threshold=float(threshold),
            reason=f"{numbers} {sign} fixed threshold {threshold:g} (p {p_value:.2g})",
        )
    if math.isinf(calibrated_threshold):
        return replace(
            base,
            threshold=None,
            reason=f"TooFewResamples: level {alpha:.2g} needs more than {resamples} resamples",
        )
    drift = observed > calibrated_threshold and observed >= effect
    why = (
        f"{numbers} > calibrated {calibrated_threshold:.4g} (p {p_value:.2g} <= {alpha:.2g}) "
        f"and >= min effect {effect:g}"
        if drift
        else f"{numbers}: p {p_value:.2g} vs level {alpha:.2g}, calibrated threshold "
        f"{calibrated_threshold:.4g}, min effect {effect:g}"
    )
    return replace(
        base,
        verdict="Drift" if drift else "NoDrift",
        threshold=max(calibrated_threshold, effect),
        reason=why,
    )


def assess_features(
    reference: Mapping[str, ReferenceFeature | Mapping[str, Any]],
    live: Mapping[str, Mapping[str, float]],
    *,
    method: Method = "psi",
    alpha: float = 0.05,
    min_samples: int = 100,
    min_effect: float | None = None,
    thresholds: Mapping[str, float] | None = None,
    resamples: int | None = None,
    seed: int = 0,
    nulls: NullSource | None = None,
) -> FleetVerdict:
    """Every feature of a profile (``reference``: name -> entry, e.g. ``profile["features"]``)
    against its live counts (a feature with no live counts is Inconclusive), each at level
    ``alpha / m``, then :func:`combine`. ``thresholds``: fixed user thresholds by feature.
    ``resamples`` defaults to enough for the level: ``max(10000, 20 m / alpha)``, at most
    ``MAX_RESAMPLES``; ``nulls``: as for :func:`assess`."""
    m = max(1, len(reference))
    level = alpha / m
    b = resamples or min(MAX_RESAMPLES, max(DEFAULT_RESAMPLES, math.ceil(20 * m / alpha)))
    verdicts = [
        assess(
            entry,
            live.get(name, {}),
            feature=name,
            method=method,
            alpha=level,
            min_samples=min_samples,
            min_effect=min_effect,
            threshold=(thresholds or {}).get(name),
            resamples=b,
            seed=seed,
            nulls=nulls,
        )
        for name, entry in reference.items()
    ]
    return combine(verdicts, alpha)


def combine(verdicts: Sequence[FeatureVerdict], alpha: float = 0.05) -> FleetVerdict:
    """Fleet verdict from per-feature verdicts with Bonferroni control of false alarms.

    Calibrated features drift when ``p_value <= alpha / m`` (m = ``len(verdicts)``,
    Inconclusive ones included, so the bound holds for the whole model) and their
    statistic is at least their min effect; fixed-threshold features keep their verdict.
    Returns Drift if any feature drifts, NoDrift if all are conclusive, else Inconclusive.
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    m = max(1, len(verdicts))
    level = alpha / m
    final: list[FeatureVerdict] = []
    for v in verdicts:
        if v.verdict != "Inconclusive" and v.calibrated and v.p_value is not None:
            assert v.statistic is not None
            drift = v.p_value <= level and v.statistic >= v.min_effect
            v = replace(v, verdict="Drift" if drift else "NoDrift")
        final.append(v)
    drifted = [v for v in final if v.verdict == "Drift"]
    unclear = [v for v in final if v.verdict == "Inconclusive"]
    conclusive = [v for v in final if v.verdict != "Inconclusive" and v.p_value is not None]
    pool = drifted or conclusive
    worst = min(pool, key=lambda v: (v.p_value or 1.0, -(v.statistic or 0.0))) if pool else None
    if drifted:
        assert worst is not None
        verdict: Verdict = "Drift"
        reason = (
            f"{len(drifted)} of {m} features drifted (Bonferroni level {level:.2g}); "
            f"worst {worst.feature}: {worst.reason}"
        )
    elif unclear and all(v.pending for v in unclear):
        verdict = "Inconclusive"
        top = max(unclear, key=lambda v: v.statistic or 0.0)
        reason = (
            f"Calibrating: the no-drift distributions of {len(unclear)} of {m} features are "
            f"being simulated; largest statistic so far {top.feature} {top.method} "
            f"{top.statistic or 0.0:.4g} (n {top.samples})"
        )
    elif unclear or not final:
        verdict = "Inconclusive"
        names = ", ".join(v.feature for v in unclear[:5]) or "no features"
        reason = f"{len(unclear)} of {m} features inconclusive ({names}); none drifted"
    else:
        verdict = "NoDrift"
        reason = f"none of {m} features drifted (Bonferroni level {level:.2g})"
    return FleetVerdict(verdict, reason, tuple(final), worst.feature if worst else None, alpha)


def _check_live(ref: ReferenceFeature, live: Mapping[str, float]) -> str:
    known = {*ref.labels, MISSING}
    for label, value in live.items():
        if label not in known:
            return f"UnknownBin: bin {label!r} is not in the reference profile"
        try:
            number = float(value)
        except (TypeError, ValueError):
            return f"InvalidCount: bin {label!r} count {value!r}"
        if math.isnan(number) or math.isinf(number):
            return f"NaNCount: bin {label!r} count is {number}"
        if number < 0:
            return f"NegativeCount: bin {label!r} count is {number}"
    return ""


def _threshold(null: NDArray[np.float64], level: float) -> float:
    """Smallest statistic whose bootstrap p-value is <= level: ``s > z_(B - r)`` with
    ``r = floor(level (B + 1)) - 1`` exceedances allowed; ``inf`` when B is too small."""
    allowed = math.floor(level * (null.size + 1) + 1e-9) - 1
    if allowed < 0:
        return math.inf
    ordered = np.sort(null)
    return float(ordered[max(0, null.size - 1 - allowed)])


#: Steps per doubling of the live sample count at which the no-drift distribution is
#: simulated (see :func:`_on_grid`).
GRID_STEPS_PER_OCTAVE: Final = 32


def _on_grid(n: int) -> int:
    """``n`` rounded to a geometric grid of :data:`GRID_STEPS_PER_OCTAVE` steps per
    doubling (2.2 % apart) above 256, exact below. A window's sample count differs at every
    measurement, so without the grid every measurement simulates its null distributions
    afresh (about 0.2 s per feature at 10,000 resamples, 50x the statistics themselves,
    ``benchmarks/drift_cost.py``); on the grid a fleet whose traffic varies by a few
    percent reuses them. The statistic's null scales about as 1/n, so the threshold moves
    by at most ~1.1 %, far inside the reference's own chunk-to-chunk variation."""
    if n <= 256:
        return n
    return round(2 ** (round(math.log2(n) * GRID_STEPS_PER_OCTAVE) / GRID_STEPS_PER_OCTAVE))


def grid_neighbours(n: int, steps: int) -> list[int]:
    """The grid points (:func:`_on_grid`) within ``steps`` of ``n``'s, nearest first
    (``n``'s own first): the effective window sizes a fleet whose traffic drifts by a few
    percent measures next, so pre-warming them keeps steady-state measurements off the
    simulation. Below 256 the grid is the integers."""
    if steps < 0:
        raise ValueError("steps must be >= 0")
    center = _on_grid(n)
    if center <= 256:
        points = [center + d for k in range(steps + 1) for d in ((k, -k) if k else (0,))]
    else:
        index = round(math.log2(center) * GRID_STEPS_PER_OCTAVE)
        points = [
            _on_grid(round(2 ** ((index + d) / GRID_STEPS_PER_OCTAVE)))
            for k in range(steps + 1)
            for d in ((k, -k) if k else (0,))
        ]
    return list(dict.fromkeys(p for p in points if p >= 1))


def simulate_null(key: NullKey) -> NDArray[np.float64]:
    """Bootstrap null of ``key.method`` (shape (resamples,), read-only): reference and live
    histograms of ``n_reference`` and ``n_live`` drawn from the reference shares smoothed
    by the Krichevsky-Trofimov add-1/2 rule, so that bins the reference left empty (beyond
    its range) keep the small chance a new sample has of landing there. Deterministic for a
    key; costs about ``resamples x bins`` multinomial draws (tens of ms at 10,000)."""
    counts = np.asarray(key.ref_counts, dtype=float)
    shares = (counts + 0.5) / (counts.sum() + 0.5 * counts.size)
    rng = np.random.default_rng([key.seed, key.n_live, key.n_reference, counts.size])
    ref = rng.multinomial(key.n_reference, shares, size=key.resamples) / key.n_reference
    cur = rng.multinomial(key.n_live, shares, size=key.resamples) / key.n_live
    positions = None if key.positions is None else np.asarray(key.positions)
    out: NDArray[np.float64] = statistic(key.method, ref, cur, positions=positions)
    out.setflags(write=False)
    return out


def _fields(key: NullKey) -> tuple[Any, ...]:
    return (
        key.method, key.ref_counts, key.positions, key.n_live, key.n_reference,
        key.resamples, key.seed,
    )  # fmt: skip


@lru_cache(maxsize=512)
def _null(
    method: Method,
    ref_counts: tuple[float, ...],
    positions: tuple[float, ...] | None,
    n_live: int,
    n_reference: int,
    resamples: int,
    seed: int,
) -> NDArray[np.float64]:
    """:func:`simulate_null`, cached in this process (the default source of
    :func:`assess`)."""
    key = NullKey(method, ref_counts, positions, n_live, n_reference, resamples, seed)
    return simulate_null(key)


def _positive(value: object) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return float(value)
    return None
