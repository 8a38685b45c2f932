"""Deterministic scores of continuous variables: RMSE, MAE, bias, accuracy within thresholds.

Error is forecast minus observation. For a direction (degrees) the error is wrapped to
[-180, 180] first, so 350° against 10° is a 20° error, not 340°. Skill against a reference is
``1 - score/score_ref`` for scores whose perfect value is 0; for RMSE the skill is computed
from MSE (``1 - MSE/MSE_ref``), the usual "MSE skill score", not from RMSE itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from stratocast.verify.metrics_base import (
    Axis,
    FloatArray,
    check_same,
    check_shape,
    kept_shape,
    masked_sum,
    paired,
    safe_ratio,
)

#: Accuracy thresholds |f − o| <= thr used for the WeatherReal-style "accuracy" rows:
#: temperature-like variables in K, wind speed in m/s.
ACCURACY_THRESHOLDS: Mapping[str, tuple[float, ...]] = {
    "t2m": (1.7, 5.6),
    "d2m": (1.7, 5.6),
    "ws10": (1.0, 3.0),
}
#: Variables whose error is an angle in degrees (wrapped to [-180, 180]).
CIRCULAR_VARIABLES = frozenset({"wd10"})


def wrap_degrees(diff: ArrayLike) -> FloatArray:
    """An angle difference in degrees wrapped to [-180, 180) (±180 both map to -180)."""
    d = np.asarray(diff, dtype=np.float64)
    return np.asarray(np.mod(d + 180.0, 360.0) - 180.0)


def errors(forecast: ArrayLike, obs: ArrayLike, *, circular: bool = False) -> FloatArray:
    """forecast − obs (NaN where either is NaN); wrapped to [-180, 180) when ``circular``."""
    f, o, _ = paired(forecast, obs)
    err = f - o
    return wrap_degrees(err) if circular else err


@dataclass
class ContinuousAccumulator:
    """n, Σe, Σ|e|, Σe² and threshold hit counts, kept over ``shape`` (e.g. ``(n_leads,)``)."""

    shape: tuple[int, ...] = ()
    thresholds: tuple[float, ...] = ()
    circular: bool = False
    n: NDArray[np.int64] = field(init=False)
    sum_err: FloatArray = field(init=False)
    sum_abs: FloatArray = field(init=False)
    sum_sq: FloatArray = field(init=False)
    within: NDArray[np.int64] = field(init=False)  # [threshold, *shape]

    def __post_init__(self) -> None:
        self.shape = tuple(self.shape)
        self.thresholds = tuple(float(t) for t in self.thresholds)
        self.n = np.zeros(self.shape, dtype=np.int64)
        self.sum_err = np.zeros(self.shape)
        self.sum_abs = np.zeros(self.shape)
        self.sum_sq = np.zeros(self.shape)
        self.within = np.zeros((len(self.thresholds), *self.shape), dtype=np.int64)

    def update(
        self,
        forecast: ArrayLike,
        obs: ArrayLike,
        *,
        axis: Axis = None,
        mask: ArrayLike | None = None,
    ) -> Self:
        """Add a chunk, summed over ``axis``; ``mask`` False drops a pair (NaN always does)."""
        f, o, valid = paired(forecast, obs, mask)
        check_shape(self.shape, f.shape, axis)
        err = f - o
        if self.circular:
            err = wrap_degrees(err)
        abs_err = np.abs(err)
        self.n += valid.sum(axis=axis)
        self.sum_err += masked_sum(err, valid, axis)
        self.sum_abs += masked_sum(abs_err, valid, axis)
        self.sum_sq += masked_sum(err * err, valid, axis)
        for i, thr in enumerate(self.thresholds):
            # NaN compares False, but the valid mask also drops pairs masked by the caller.
            self.within[i] += (valid & (abs_err <= thr)).sum(axis=axis)
        return self

    def merge(self, other: ContinuousAccumulator) -> Self:
        check_same("shape", self.shape, other.shape)
        check_same("thresholds", self.thresholds, other.thresholds)
        check_same("circular", self.circular, other.circular)
        self.n += other.n
        self.sum_err += other.sum_err
        self.sum_abs += other.sum_abs
        self.sum_sq += other.sum_sq
        self.within += other.within
        return self

    def result(self) -> dict[str, FloatArray]:
        """n, mse, rmse, mae, bias and ``accuracy_<thr>`` (fraction within the threshold)."""
        mse = safe_ratio(self.sum_sq, self.n)
        out = {
            "n": self.n.astype(np.float64),
            "mse": mse,
            "rmse": np.sqrt(mse),
            "mae": safe_ratio(self.sum_abs, self.n),
            "bias": safe_ratio(self.sum_err, self.n),
        }
        for i, thr in enumerate(self.thresholds):
            out[accuracy_key(thr)] = safe_ratio(self.within[i], self.n)
        return out


def accuracy_key(threshold: float) -> str:
    """Result key of the accuracy within ``threshold``: ``accuracy_1.7``, ``accuracy_3``."""
    return f"accuracy_{threshold:g}"


def _one_shot(
    forecast: ArrayLike,
    obs: ArrayLike,
    axis: Axis,
    mask: ArrayLike | None,
    circular: bool,
    thresholds: Sequence[float] = (),
) -> dict[str, FloatArray]:
    f, o, valid = paired(forecast, obs, mask)
    acc = ContinuousAccumulator(kept_shape(f.shape, axis), tuple(thresholds), circular)
    return acc.update(f, o, axis=axis, mask=valid).result()


def rmse(
    forecast: ArrayLike,
    obs: ArrayLike,
    *,
    axis: Axis = None,
    mask: ArrayLike | None = None,
    circular: bool = False,
) -> FloatArray:
    """Root-mean-square error over the valid pairs, reduced over ``axis``."""
    return _one_shot(forecast, obs, axis, mask, circular)["rmse"]


def mse(
    forecast: ArrayLike,
    obs: ArrayLike,
    *,
    axis: Axis = None,
    mask: ArrayLike | None = None,
    circular: bool = False,
) -> FloatArray:
    """Mean-square error over the valid pairs, reduced over ``axis``."""
    return _one_shot(forecast, obs, axis, mask, circular)["mse"]


def mae(
    forecast: ArrayLike,
    obs: ArrayLike,
    *,
    axis: Axis = None,
    mask: ArrayLike | None = None,
    circular: bool = False,
) -> FloatArray:
    """Mean absolute error over the valid pairs, reduced over ``axis``."""
    return _one_shot(forecast, obs, axis, mask, circular)["mae"]


def mean_error(
    forecast: ArrayLike,
    obs: ArrayLike,
    *,
    axis: Axis = None,
    mask: ArrayLike | None = None,
    circular: bool = False,
) -> FloatArray:
    """Bias (mean error), forecast minus observation: positive means the forecast is high."""
    return _one_shot(forecast, obs, axis, mask, circular)["bias"]


bias = mean_error


def accuracy_within(
    forecast: ArrayLike,
    obs: ArrayLike,
    threshold: float,
    *,
    axis: Axis = None,
    mask: ArrayLike | None = None,
    circular: bool = False,
) -> FloatArray:
    """Fraction (0..1) of valid pairs with |forecast − obs| <= ``threshold``."""
    res = _one_shot(forecast, obs, axis, mask, circular, (threshold,))
    return res[accuracy_key(threshold)]


def skill_score(score: ArrayLike, reference: ArrayLike, perfect: float = 0.0) -> FloatArray:
    """(score − ref)/(perfect − ref); = 1 − score/ref for a score whose perfect value is 0.

    1 is perfect, 0 is no better than the reference, negative is worse. NaN where the
    reference is already perfect. Pass MSEs (not RMSEs) for the MSE skill score.
    """
    s = np.asarray(score, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    return safe_ratio(s - r, perfect - r)


def mse_skill(mse: ArrayLike, mse_ref: ArrayLike) -> FloatArray:
    """MSE skill score 1 − MSE/MSE_ref (= 1 − RMSE²/RMSE_ref²); NaN where MSE_ref is 0."""
    return skill_score(mse, mse_ref)
