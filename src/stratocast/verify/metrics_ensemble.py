"""Ensemble scores: CRPS (standard and fair estimators) and the spread–skill ratio.

With M members x_1..x_M and observation y, both CRPS estimators share the accuracy term
``A = mean_i |x_i − y|`` and differ in the spread term ``S = Σ_i Σ_j |x_i − x_j|``:

- standard ("ecdf", the CRPS of the empirical CDF; properscoring / xskillscore):
  ``A − S / (2 M²)``
- fair (Ferro 2014; WeatherBench2's CRPS, an unbiased estimate of the CRPS of the ensemble's
  underlying distribution): ``A − S / (2 M (M − 1))``

Both match ``scores.probability.crps_for_ensemble(method="ecdf" | "fair")``. S is computed from
the sorted members as ``2 Σ_k (2k − M − 1) x_(k)`` (O(M log M), not O(M²)).

Spread–skill: spread = sqrt(mean over pairs of the member variance with ddof=1), skill = RMSE
of the ensemble mean; ratio = spread / skill (≈ 1 for a reliable ensemble; WeatherBench2's
definition). ``spread_skill_corrected`` multiplies by sqrt((M + 1)/M), the finite-ensemble
factor of Fortin et al. (2014) under which a reliable M-member ensemble has ratio 1 exactly in
expectation.

A missing (NaN) member, by ``missing_members``:

- "drop_pair" (default): a pair counts only when the observation and *every* member are
  finite, so every scored pair has the full M members (the ensemble is what was issued).
- "finite": the ``scores`` convention: a pair is scored on its M′ finite members (M′ in
  place of M in every formula above; ``scores.probability.crps_for_ensemble`` sorts NaN
  members last and uses the count of finite ones). A pair needs M′ ≥ 2 (the fair CRPS and
  the member variance divide by M′ − 1; ``scores`` gives NaN for the fair CRPS there), so a
  pair with fewer finite members is not scored. The corrected spread–skill factor becomes
  sqrt(1 + mean over pairs of 1/M′), which is sqrt((M + 1)/M) when no member is missing.
  ``members_missing`` counts the NaN members inside scored pairs.

``pairs_dropped_members`` counts the pairs with a finite observation (and not masked out) left
out for their members: any NaN member ("drop_pair"), fewer than 2 finite ones ("finite").

Either way the results count what was left out; an infinite member or observation is an
error (:class:`~stratocast.verify.metrics_base.NonFiniteError`), not a missing member.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from stratocast.verify.metrics_base import (
    Axis,
    FloatArray,
    MetricInputError,
    as_float,
    check_no_inf,
    check_same,
    check_shape,
    kept_shape,
    masked_sum,
    safe_ratio,
)

CrpsMethod = Literal["ecdf", "fair"]
MissingMembers = Literal["drop_pair", "finite"]
MISSING_MEMBER_POLICIES: tuple[MissingMembers, ...] = ("drop_pair", "finite")


def _members_last(ensemble: ArrayLike, member_axis: int) -> FloatArray:
    ens = as_float(ensemble, "ensemble")
    if ens.ndim == 0:
        raise MetricInputError("ensemble needs a member axis")
    return np.moveaxis(ens, member_axis, -1)


def _pair_terms(
    ens: FloatArray, obs: FloatArray, mask: ArrayLike | None, missing_members: MissingMembers
) -> tuple[dict[str, FloatArray], NDArray[np.bool_]]:
    """Per-pair CRPS (both estimators), member variance, ensemble-mean error and the
    member counts; the mask of pairs that count."""
    m = ens.shape[-1]
    if m < 2:
        raise MetricInputError(f"an ensemble needs at least 2 members, got {m}")
    if missing_members not in MISSING_MEMBER_POLICIES:
        raise MetricInputError(
            f"missing_members must be one of {list(MISSING_MEMBER_POLICIES)}, "
            f"got {missing_members!r}"
        )
    try:
        shape = np.broadcast_shapes(ens.shape[:-1], obs.shape)
    except ValueError as exc:
        raise MetricInputError(
            f"ensemble {ens.shape} (members last) and obs {obs.shape}: {exc}"
        ) from exc
    finite = np.isfinite(ens)
    if not finite.all():  # only then can an inf hide among the NaNs: skip the pass otherwise
        check_no_inf(ens, "ensemble")
    check_no_inf(obs, "obs")
    ens = np.broadcast_to(ens, (*shape, m))
    obs = np.broadcast_to(obs, shape)
    finite = np.broadcast_to(finite, (*shape, m))
    wanted = np.isfinite(obs)
    if mask is not None:
        wanted = wanted & np.broadcast_to(np.asarray(mask, dtype=bool), shape)
    if missing_members == "drop_pair":
        valid = wanted & finite.all(axis=-1)
    else:
        count = finite.sum(axis=-1)
        valid = wanted & (count >= 2)
    y = np.where(valid, obs, 0.0)
    if missing_members == "drop_pair":
        # Every scored pair has all M members: the plain formulas (zero-filled elsewhere).
        x = np.where(valid[..., None], ens, 0.0)
        mf: FloatArray | float = float(m)
        accuracy = np.abs(x - y[..., None]).mean(axis=-1)
        ranks = 2.0 * np.arange(1, m + 1) - m - 1.0
        spread_sum = 2.0 * (np.sort(x, axis=-1) * ranks).sum(axis=-1)
        mean = x.mean(axis=-1)
        variance = x.var(axis=-1, ddof=1)
    else:
        member = finite & valid[..., None]
        counts = np.where(valid, count, m).astype(np.float64)  # M′ (M where not scored)
        mf = counts
        # Zero-fill what does not count so no NaN reaches the arithmetic; a missing member
        # of a valid pair sorts last with rank weight 0 (the weights 2k − M′ − 1 run over
        # its M′ finite members only).
        x = np.where(member, ens, 0.0)
        accuracy = np.where(member, np.abs(x - y[..., None]), 0.0).sum(axis=-1) / mf
        order = np.sort(np.where(member, x, np.inf), axis=-1)  # missing members last
        order = np.where(np.isfinite(order), order, 0.0)
        k = np.arange(1, m + 1)
        ranks = np.where(k <= counts[..., None], 2.0 * k - counts[..., None] - 1.0, 0.0)
        spread_sum = 2.0 * (order * ranks).sum(axis=-1)
        mean = x.sum(axis=-1) / mf
        dev = np.where(member, x - mean[..., None], 0.0)
        variance = (dev * dev).sum(axis=-1) / (mf - 1.0)
    terms = {
        "crps_ecdf": accuracy - spread_sum / (2.0 * mf * mf),
        "crps_fair": accuracy - spread_sum / (2.0 * mf * (mf - 1.0)),
        "variance": variance,
        "mean_sq_err": (mean - y) ** 2,
        "mean_err": mean - y,
        "inv_members": np.broadcast_to(1.0 / mf, shape),
        "members_missing": np.broadcast_to(m - mf, shape),
        "pairs_dropped_members": (wanted & ~valid).astype(np.float64),
    }
    return terms, valid


_SUMS = (
    "crps_ecdf",
    "crps_fair",
    "variance",
    "mean_sq_err",
    "mean_err",
    "inv_members",
    "members_missing",
)


@dataclass
class EnsembleAccumulator:
    """Σ CRPS (both estimators), Σ variance, Σ ensemble-mean error², n, kept over ``shape``;
    ``missing_members`` says how a NaN member is treated (module docstring)."""

    members: int
    shape: tuple[int, ...] = ()
    missing_members: MissingMembers = "drop_pair"
    n: NDArray[np.int64] = field(init=False)
    n_dropped: NDArray[np.int64] = field(init=False)
    sums: dict[str, FloatArray] = field(init=False)

    def __post_init__(self) -> None:
        self.shape = tuple(self.shape)
        if self.members < 2:
            raise MetricInputError(f"an ensemble needs at least 2 members, got {self.members}")
        if self.missing_members not in MISSING_MEMBER_POLICIES:
            raise MetricInputError(
                f"missing_members must be one of {list(MISSING_MEMBER_POLICIES)}, "
                f"got {self.missing_members!r}"
            )
        self.n = np.zeros(self.shape, dtype=np.int64)
        self.n_dropped = np.zeros(self.shape, dtype=np.int64)
        self.sums = {k: np.zeros(self.shape) for k in _SUMS}

    def update(
        self,
        ensemble: ArrayLike,
        obs: ArrayLike,
        *,
        member_axis: int = -1,
        axis: Axis = None,
        mask: ArrayLike | None = None,
    ) -> Self:
        """Add a chunk; ``axis`` refers to the axes of ``obs`` (the member axis removed)."""
        ens = _members_last(ensemble, member_axis)
        check_same("member count", self.members, ens.shape[-1])
        terms, valid = _pair_terms(ens, as_float(obs, "obs"), mask, self.missing_members)
        check_shape(self.shape, valid.shape, axis)
        self.n += valid.sum(axis=axis)
        # Dropped pairs are by definition outside ``valid``: summed unmasked.
        self.n_dropped += terms.pop("pairs_dropped_members").sum(axis=axis).astype(np.int64)
        for key, values in terms.items():
            self.sums[key] += masked_sum(values, valid, axis)
        return self

    def merge(self, other: EnsembleAccumulator) -> Self:
        check_same("shape", self.shape, other.shape)
        check_same("member count", self.members, other.members)
        check_same("missing-member policy", self.missing_members, other.missing_members)
        self.n += other.n
        self.n_dropped += other.n_dropped
        for key in self.sums:
            self.sums[key] += other.sums[key]
        return self

    def result(self) -> dict[str, FloatArray]:
        """n, crps_fair, crps_ecdf, spread, ensemble_mean_rmse, ensemble_mean_bias, ratios,
        and the counts members_missing, pairs_dropped_members."""
        spread = np.sqrt(safe_ratio(self.sums["variance"], self.n))
        skill = np.sqrt(safe_ratio(self.sums["mean_sq_err"], self.n))
        ratio = safe_ratio(spread, skill)
        # E[mean_sq_err] = σ² (1 + 1/M′) for a reliable ensemble: the factor averages 1/M′.
        factor = np.sqrt(1.0 + safe_ratio(self.sums["inv_members"], self.n))
        return {
            "n": self.n.astype(np.float64),
            "crps_fair": safe_ratio(self.sums["crps_fair"], self.n),
            "crps_ecdf": safe_ratio(self.sums["crps_ecdf"], self.n),
            "spread": spread,
            "ensemble_mean_rmse": skill,
            "ensemble_mean_bias": safe_ratio(self.sums["mean_err"], self.n),
            "spread_skill": ratio,
            "spread_skill_corrected": ratio * factor,
            "members_missing": np.round(self.sums["members_missing"]),
            "pairs_dropped_members": self.n_dropped.astype(np.float64),
        }


def _one_shot(
    ensemble: ArrayLike,
    obs: ArrayLike,
    member_axis: int,
    axis: Axis,
    mask: ArrayLike | None,
    missing_members: MissingMembers,
) -> dict[str, FloatArray]:
    ens = _members_last(ensemble, member_axis)
    o = as_float(obs, "obs")
    shape = np.broadcast_shapes(ens.shape[:-1], o.shape)
    acc = EnsembleAccumulator(ens.shape[-1], kept_shape(shape, axis), missing_members)
    return acc.update(ens, o, axis=axis, mask=mask).result()


def crps_ensemble(
    ensemble: ArrayLike,
    obs: ArrayLike,
    *,
    method: CrpsMethod = "fair",
    member_axis: int = -1,
    axis: Axis = None,
    mask: ArrayLike | None = None,
    missing_members: MissingMembers = "drop_pair",
) -> FloatArray:
    """Mean CRPS over valid pairs; ``method`` "fair" (default, WeatherBench2) or "ecdf";
    ``missing_members`` "finite" scores each pair on its finite members (``scores``)."""
    if method not in ("fair", "ecdf"):
        raise MetricInputError(f"CRPS method must be 'fair' or 'ecdf', got {method!r}")
    return _one_shot(ensemble, obs, member_axis, axis, mask, missing_members)[f"crps_{method}"]


def spread_skill_ratio(
    ensemble: ArrayLike,
    obs: ArrayLike,
    *,
    member_axis: int = -1,
    axis: Axis = None,
    mask: ArrayLike | None = None,
    corrected: bool = False,
    missing_members: MissingMembers = "drop_pair",
) -> FloatArray:
    """sqrt(mean member variance) / RMSE(ensemble mean); × sqrt(1 + mean 1/M′) (= sqrt((M+1)/M)
    with every member present) when ``corrected``."""
    res = _one_shot(ensemble, obs, member_axis, axis, mask, missing_members)
    return res["spread_skill_corrected" if corrected else "spread_skill"]
