"""Categorical scores of threshold events (precipitation) from a 2×2 contingency table.

An event is ``value >= threshold`` (so a 1 mm threshold counts exactly 1.0 mm as rain), the
same for forecast and observation. The table per threshold holds hits H (both events), false
alarms F (forecast only), misses M (observed only) and correct negatives C; N = H+F+M+C.

- POD  = H / (H + M)                       probability of detection (hit rate)
- FAR  = F / (H + F)                       false alarm *ratio* (not the false alarm rate)
- POFD = F / (F + C)                       probability of false detection (false alarm rate)
- frequency bias = (H + F) / (H + M)
- CSI  = H / (H + F + M)
- ETS  = (H − H_r) / (H + F + M − H_r),  H_r = (H + M)(H + F) / N   (Gilbert skill score)

Undefined ratios (0/0, e.g. POD with no observed event) are NaN.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from stratocast.verify.metrics_base import (
    Axis,
    FloatArray,
    MetricInputError,
    check_same,
    check_shape,
    kept_shape,
    paired,
    safe_ratio,
)

#: Precipitation thresholds (mm per accumulation window) scored by default.
PRECIP_THRESHOLDS_MM: tuple[float, ...] = (0.1, 1.0, 5.0, 10.0)
#: Scores :meth:`ContingencyAccumulator.result` returns besides the counts.
CATEGORICAL_SCORES = ("pod", "far", "pofd", "frequency_bias", "csi", "ets")


@dataclass
class ContingencyAccumulator:
    """Contingency counts per threshold, kept over ``shape``: arrays ``[threshold, *shape]``."""

    shape: tuple[int, ...] = ()
    thresholds: tuple[float, ...] = PRECIP_THRESHOLDS_MM
    hits: NDArray[np.int64] = field(init=False)
    false_alarms: NDArray[np.int64] = field(init=False)
    misses: NDArray[np.int64] = field(init=False)
    correct_negatives: NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        self.shape = tuple(self.shape)
        self.thresholds = tuple(float(t) for t in self.thresholds)
        if not self.thresholds:
            raise MetricInputError("ContingencyAccumulator needs at least one threshold")
        full = (len(self.thresholds), *self.shape)
        self.hits = np.zeros(full, dtype=np.int64)
        self.false_alarms = np.zeros(full, dtype=np.int64)
        self.misses = np.zeros(full, dtype=np.int64)
        self.correct_negatives = np.zeros(full, dtype=np.int64)

    def update(
        self,
        forecast: ArrayLike,
        obs: ArrayLike,
        *,
        axis: Axis = None,
        mask: ArrayLike | None = None,
    ) -> Self:
        """Count a chunk's pairs into the table, summed over ``axis``."""
        f, o, valid = paired(forecast, obs, mask)
        check_shape(self.shape, f.shape, axis)
        for i, thr in enumerate(self.thresholds):
            fe = valid & (f >= thr)
            oe = valid & (o >= thr)
            self.hits[i] += (fe & oe).sum(axis=axis)
            self.false_alarms[i] += (fe & ~oe).sum(axis=axis)
            self.misses[i] += (~fe & oe).sum(axis=axis)
            self.correct_negatives[i] += (valid & ~fe & ~oe).sum(axis=axis)
        return self

    def merge(self, other: ContingencyAccumulator) -> Self:
        check_same("shape", self.shape, other.shape)
        check_same("thresholds", self.thresholds, other.thresholds)
        self.hits += other.hits
        self.false_alarms += other.false_alarms
        self.misses += other.misses
        self.correct_negatives += other.correct_negatives
        return self

    def result(self) -> dict[str, FloatArray]:
        """Counts and scores, each ``[threshold, *shape]``."""
        return categorical_scores(self.hits, self.false_alarms, self.misses, self.correct_negatives)


def categorical_scores(
    hits: ArrayLike, false_alarms: ArrayLike, misses: ArrayLike, correct_negatives: ArrayLike
) -> dict[str, FloatArray]:
    """Every score of :data:`CATEGORICAL_SCORES` from the four counts (any shape)."""
    h = np.asarray(hits, dtype=np.float64)
    f = np.asarray(false_alarms, dtype=np.float64)
    m = np.asarray(misses, dtype=np.float64)
    c = np.asarray(correct_negatives, dtype=np.float64)
    n = h + f + m + c
    hits_random = safe_ratio((h + m) * (h + f), n)
    return {
        "hits": h,
        "false_alarms": f,
        "misses": m,
        "correct_negatives": c,
        "n": n,
        "pod": safe_ratio(h, h + m),
        "far": safe_ratio(f, h + f),
        "pofd": safe_ratio(f, f + c),
        "frequency_bias": safe_ratio(h + f, h + m),
        "csi": safe_ratio(h, h + f + m),
        "ets": safe_ratio(h - hits_random, h + f + m - hits_random),
    }


def contingency_scores(
    forecast: ArrayLike,
    obs: ArrayLike,
    thresholds: tuple[float, ...] = PRECIP_THRESHOLDS_MM,
    *,
    axis: Axis = None,
    mask: ArrayLike | None = None,
) -> Mapping[str, FloatArray]:
    """One-shot table and scores, ``[threshold, *kept]``, for arrays in memory."""
    f, o, valid = paired(forecast, obs, mask)
    acc = ContingencyAccumulator(kept_shape(f.shape, axis), thresholds)
    return acc.update(f, o, axis=axis, mask=valid).result()


def _single(
    name: str,
    forecast: ArrayLike,
    obs: ArrayLike,
    threshold: float,
    axis: Axis,
    mask: ArrayLike | None,
) -> FloatArray:
    return np.asarray(
        contingency_scores(forecast, obs, (threshold,), axis=axis, mask=mask)[name][0]
    )


def ets(
    forecast: ArrayLike,
    obs: ArrayLike,
    threshold: float,
    *,
    axis: Axis = None,
    mask: ArrayLike | None = None,
) -> FloatArray:
    """Equitable threat score of the event ``value >= threshold``."""
    return _single("ets", forecast, obs, threshold, axis, mask)


def pod(
    forecast: ArrayLike,
    obs: ArrayLike,
    threshold: float,
    *,
    axis: Axis = None,
    mask: ArrayLike | None = None,
) -> FloatArray:
    """Probability of detection of the event ``value >= threshold``."""
    return _single("pod", forecast, obs, threshold, axis, mask)


def far(
    forecast: ArrayLike,
    obs: ArrayLike,
    threshold: float,
    *,
    axis: Axis = None,
    mask: ArrayLike | None = None,
) -> FloatArray:
    """False alarm ratio F/(H+F) of the event ``value >= threshold``."""
    return _single("far", forecast, obs, threshold, axis, mask)


def frequency_bias(
    forecast: ArrayLike,
    obs: ArrayLike,
    threshold: float,
    *,
    axis: Axis = None,
    mask: ArrayLike | None = None,
) -> FloatArray:
    """Frequency bias (H+F)/(H+M) of the event ``value >= threshold``."""
    return _single("frequency_bias", forecast, obs, threshold, axis, mask)
