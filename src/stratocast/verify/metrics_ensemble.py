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

A pair counts only when the observation and *every* member are finite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from stratocast.verify.metrics_base import (
    Axis,
    FloatArray,
    as_float,
    check_same,
    check_shape,
    kept_shape,
    masked_sum,
    safe_ratio,
)

CrpsMethod = Literal["ecdf", "fair"]


def _members_last(ensemble: ArrayLike, member_axis: int) -> FloatArray:
    ens = as_float(ensemble, "ensemble")
    if ens.ndim == 0:
        raise ValueError("ensemble needs a member axis")
    return np.moveaxis(ens, member_axis, -1)


def _pair_terms(
    ens: FloatArray, obs: FloatArray, mask: ArrayLike | None
) -> tuple[dict[str, FloatArray], NDArray[np.bool_]]:
    """Per-pair CRPS (both estimators), member variance and ensemble-mean error."""
    m = ens.shape[-1]
    if m < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {m}")
    try:
        shape = np.broadcast_shapes(ens.shape[:-1], obs.shape)
    except ValueError as exc:
        raise ValueError(f"ensemble {ens.shape} (members last) and obs {obs.shape}: {exc}") from exc
    ens = np.broadcast_to(ens, (*shape, m))
    obs = np.broadcast_to(obs, shape)
    valid = np.isfinite(obs) & np.all(np.isfinite(ens), axis=-1)
    if mask is not None:
        valid = valid & np.broadcast_to(np.asarray(mask, dtype=bool), shape)
    # Zero-fill invalid pairs so no NaN reaches the arithmetic; they are masked out of sums.
    ens = np.where(valid[..., None], ens, 0.0)
    y = np.where(valid, obs, 0.0)
    accuracy = np.abs(ens - y[..., None]).mean(axis=-1)
    ranks = 2.0 * np.arange(1, m + 1) - m - 1.0
    spread_sum = 2.0 * (np.sort(ens, axis=-1) * ranks).sum(axis=-1)
    mean = ens.mean(axis=-1)
    terms = {
        "crps_ecdf": accuracy - spread_sum / (2.0 * m * m),
        "crps_fair": accuracy - spread_sum / (2.0 * m * (m - 1)),
        "variance": ens.var(axis=-1, ddof=1),
        "mean_sq_err": (mean - y) ** 2,
        "mean_err": mean - y,
    }
    return terms, valid


@dataclass
class EnsembleAccumulator:
    """Σ CRPS (both estimators), Σ variance, Σ ensemble-mean error², n, kept over ``shape``."""

    members: int
    shape: tuple[int, ...] = ()
    n: NDArray[np.int64] = field(init=False)
    sums: dict[str, FloatArray] = field(init=False)

    def __post_init__(self) -> None:
        self.shape = tuple(self.shape)
        if self.members < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {self.members}")
        self.n = np.zeros(self.shape, dtype=np.int64)
        names = ("crps_ecdf", "crps_fair", "variance", "mean_sq_err", "mean_err")
        self.sums = {k: np.zeros(self.shape) for k in names}

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
        terms, valid = _pair_terms(ens, as_float(obs, "obs"), mask)
        check_shape(self.shape, valid.shape, axis)
        self.n += valid.sum(axis=axis)
        for key, values in terms.items():
            self.sums[key] += masked_sum(values, valid, axis)
        return self

    def merge(self, other: EnsembleAccumulator) -> Self:
        check_same("shape", self.shape, other.shape)
        check_same("member count", self.members, other.members)
        self.n += other.n
        for key in self.sums:
            self.sums[key] += other.sums[key]
        return self

    def result(self) -> dict[str, FloatArray]:
        """n, crps_fair, crps_ecdf, spread, ensemble_mean_rmse, ensemble_mean_bias, ratios."""
        spread = np.sqrt(safe_ratio(self.sums["variance"], self.n))
        skill = np.sqrt(safe_ratio(self.sums["mean_sq_err"], self.n))
        ratio = safe_ratio(spread, skill)
        return {
            "n": self.n.astype(np.float64),
            "crps_fair": safe_ratio(self.sums["crps_fair"], self.n),
            "crps_ecdf": safe_ratio(self.sums["crps_ecdf"], self.n),
            "spread": spread,
            "ensemble_mean_rmse": skill,
            "ensemble_mean_bias": safe_ratio(self.sums["mean_err"], self.n),
            "spread_skill": ratio,
            "spread_skill_corrected": ratio * np.sqrt((self.members + 1) / self.members),
        }


def _one_shot(
    ensemble: ArrayLike, obs: ArrayLike, member_axis: int, axis: Axis, mask: ArrayLike | None
) -> dict[str, FloatArray]:
    ens = _members_last(ensemble, member_axis)
    o = as_float(obs, "obs")
    shape = np.broadcast_shapes(ens.shape[:-1], o.shape)
    acc = EnsembleAccumulator(ens.shape[-1], kept_shape(shape, axis))
    return acc.update(ens, o, axis=axis, mask=mask).result()


def crps_ensemble(
    ensemble: ArrayLike,
    obs: ArrayLike,
    *,
    method: CrpsMethod = "fair",
    member_axis: int = -1,
    axis: Axis = None,
    mask: ArrayLike | None = None,
) -> FloatArray:
    """Mean CRPS over valid pairs; ``method`` "fair" (default, WeatherBench2) or "ecdf"."""
    if method not in ("fair", "ecdf"):
        raise ValueError(f"CRPS method must be 'fair' or 'ecdf', got {method!r}")
    return _one_shot(ensemble, obs, member_axis, axis, mask)[f"crps_{method}"]


def spread_skill_ratio(
    ensemble: ArrayLike,
    obs: ArrayLike,
    *,
    member_axis: int = -1,
    axis: Axis = None,
    mask: ArrayLike | None = None,
    corrected: bool = False,
) -> FloatArray:
    """sqrt(mean member variance) / RMSE(ensemble mean); × sqrt((M+1)/M) when ``corrected``."""
    res = _one_shot(ensemble, obs, member_axis, axis, mask)
    return res["spread_skill_corrected" if corrected else "spread_skill"]
