"""Gridded scores against an analysis, WeatherBench2 conventions (Rasp et al. 2024, §4).

Fields are ``[..., lat, lon]`` (latitude and longitude the last two axes); the leading axes
are times (initialisations) and anything kept (e.g. lead). Latitude weights are the cells'
areas, ``L_i ∝ sin φ_i⁺ − sin φ_i⁻`` normalised to mean 1 over the grid's latitudes
(WeatherBench2's ``get_lat_weights``, the area form of its eq. 4), with the cell edges φ⁺, φ⁻
half-way between rows (see :func:`latitude_edges`). On an evenly spaced grid without pole rows
this is exactly ``cos φ / mean cos φ``; on a grid with rows at ±90° (WeatherBench2's 1.5°
121×240 and 0.25° 721×1440) each pole row gets its polar cap's area (weight 0.0052 at 1.5°,
0.00086 at 0.25°) instead of cos 90° = 0, and every other weight moves by a factor 1 − 8.6e-5
(1 − 2.4e-6): on ERA5 t500 at 3° (61 rows) the 24 h persistence RMSE moves by 1.4e-4 relative.

A NaN in the forecast, the analysis or the climatology gives that grid point weight 0 for that
field. An infinite value is an error
(:class:`~stratocast.verify.metrics_base.NonFiniteError`): it is no missing-value marker but an
overflow or a corrupt value, and scoring around it would hide a broken field behind a smaller
sample.

Per field t (one time), with w the weights on the valid points:

- ``MSE_t = Σ w e² / Σ w`` — on a complete grid Σw = N_lat·N_lon, so this is WB2's
  ``mean_ij L(i) e_ij²``;
- ``ACC_t = Σ w f′o′ / sqrt(Σ w f′² · Σ w o′²)``, f′ = forecast − climatology,
  o′ = analysis − climatology (anomalies about climatology, not re-centred: WB2 eq. 7).

Over times: ``rmse = sqrt(mean_t MSE_t)`` (the square root taken *after* the time mean, as the
WeatherBench2 code and the paper's revised version do), ``rmse_time_mean = mean_t sqrt(MSE_t)``
(the paper's first version) and ``acc = mean_t ACC_t``. All are sums over fields, so the
accumulator streams and merges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Self

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
    safe_ratio,
)


def latitude_edges(lat: ArrayLike) -> FloatArray:
    """Cell edges (degrees, ``size + 1``, ascending) of latitude rows given in any order.

    Interior edges lie half-way between neighbouring rows. An end row's outer edge is the pole
    when no further row would fit between it and the pole (the row lies within one spacing of
    it, as on every global grid: with pole rows, without them, Gaussian): the polar cap then
    belongs to that row, as in WeatherBench2, whose edges are always ±90°. Otherwise (a
    regional grid) it lies half a spacing beyond the row, so the end rows are not given the
    area up to the pole. A single row has edges ±90° (its weight is 1 either way).
    """
    phi = as_float(lat, "lat")
    if phi.ndim != 1 or phi.size == 0:
        raise MetricInputError(f"lat must be a non-empty 1-D array, got shape {phi.shape}")
    if not np.all(np.isfinite(phi)) or np.any(np.abs(phi) > 90.0):
        raise MetricInputError("lat must be finite degrees within [-90, 90]")
    x = np.sort(phi)
    if np.any(np.diff(x) <= 0.0):
        raise MetricInputError(f"lat has repeated rows: {x[:-1][np.diff(x) <= 0.0].tolist()}")
    if x.size == 1:
        return np.array([-90.0, 90.0])
    first, last = x[1] - x[0], x[-1] - x[-2]
    lower = -90.0 if x[0] + 90.0 < first else x[0] - first / 2.0
    upper = 90.0 if 90.0 - x[-1] < last else x[-1] + last / 2.0
    return np.concatenate([[lower], (x[:-1] + x[1:]) / 2.0, [upper]])


def latitude_weights(lat: ArrayLike) -> FloatArray:
    """Cell-area weights of latitude rows (degrees, any order), normalised to mean 1.

    ``L_i ∝ sin φ_i⁺ − sin φ_i⁻`` (the area of the band between the cell edges of
    :func:`latitude_edges`): WeatherBench2's ``get_lat_weights`` on its global grids. Weights
    are returned in the order of ``lat``.
    """
    phi = as_float(lat, "lat")
    edges = np.deg2rad(latitude_edges(phi))
    area = np.sin(edges[1:]) - np.sin(edges[:-1])
    w = np.empty_like(area)
    w[np.argsort(phi, kind="stable")] = area
    return np.asarray(w / w.mean())


def _field_terms(
    forecast: FloatArray,
    analysis: FloatArray,
    climatology: FloatArray | None,
    weights: FloatArray,
) -> dict[str, FloatArray]:
    """Per-field MSE, ACC and a has-data flag: spatial reduction over the last two axes."""
    valid = np.isfinite(forecast) & np.isfinite(analysis)
    if climatology is not None:
        valid &= np.isfinite(climatology)
    w = np.where(valid, weights[:, None], 0.0)
    err = np.where(valid, forecast - analysis, 0.0)
    sum_w = w.sum(axis=(-2, -1))
    out = {"mse": safe_ratio((w * err * err).sum(axis=(-2, -1)), sum_w), "ok": sum_w > 0}
    if climatology is not None:
        fa = np.where(valid, forecast - climatology, 0.0)
        oa = np.where(valid, analysis - climatology, 0.0)
        num = (w * fa * oa).sum(axis=(-2, -1))
        den = np.sqrt((w * fa * fa).sum(axis=(-2, -1)) * (w * oa * oa).sum(axis=(-2, -1)))
        out["acc"] = safe_ratio(num, den)
    return out


@dataclass
class GriddedAccumulator:
    """Σ_t MSE_t, Σ_t sqrt(MSE_t), Σ_t ACC_t and field counts, kept over ``shape``."""

    lat: FloatArray
    shape: tuple[int, ...] = ()
    weights: FloatArray = field(init=False)
    n_fields: NDArray[np.int64] = field(init=False)
    n_acc: NDArray[np.int64] = field(init=False)
    sum_mse: FloatArray = field(init=False)
    sum_rmse: FloatArray = field(init=False)
    sum_acc: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        self.lat = as_float(self.lat, "lat")
        self.shape = tuple(self.shape)
        self.weights = latitude_weights(self.lat)
        self.n_fields = np.zeros(self.shape, dtype=np.int64)
        self.n_acc = np.zeros(self.shape, dtype=np.int64)
        self.sum_mse = np.zeros(self.shape)
        self.sum_rmse = np.zeros(self.shape)
        self.sum_acc = np.zeros(self.shape)

    def update(
        self,
        forecast: ArrayLike,
        analysis: ArrayLike,
        climatology: ArrayLike | None = None,
        *,
        axis: Axis = None,
    ) -> Self:
        """Add fields ``[..., lat, lon]``; ``axis`` (over the leading axes) is the time axis.

        Without ``climatology`` no ACC is accumulated for this chunk.
        """
        f = as_float(forecast, "forecast")
        a = as_float(analysis, "analysis")
        c = None if climatology is None else as_float(climatology, "climatology")
        arrays = [f, a] if c is None else [f, a, c]
        shape = np.broadcast_shapes(*(x.shape for x in arrays))
        if len(shape) < 2 or shape[-2] != self.lat.size:
            raise MetricInputError(f"fields {shape} must end in (lat={self.lat.size}, lon)")
        for values, name in ((f, "forecast"), (a, "analysis"), (c, "climatology")):
            if values is not None:
                check_no_inf(values, name)
        f, a = np.broadcast_to(f, shape), np.broadcast_to(a, shape)
        c = None if c is None else np.broadcast_to(c, shape)
        lead_shape = shape[:-2]
        check_shape(self.shape, lead_shape, axis)
        terms = _field_terms(f, a, c, self.weights)
        ok = terms["ok"]
        self.n_fields += ok.sum(axis=axis)
        self.sum_mse += np.where(ok, terms["mse"], 0.0).sum(axis=axis)
        self.sum_rmse += np.where(ok, np.sqrt(terms["mse"]), 0.0).sum(axis=axis)
        if "acc" in terms:
            # A field whose anomalies are all zero has no ACC; it is left out, not counted as 0.
            has_acc = ok & np.isfinite(terms["acc"])
            self.n_acc += has_acc.sum(axis=axis)
            self.sum_acc += np.where(has_acc, terms["acc"], 0.0).sum(axis=axis)
        return self

    def merge(self, other: GriddedAccumulator) -> Self:
        check_same("shape", self.shape, other.shape)
        check_same("latitudes", self.lat.tolist(), other.lat.tolist())
        self.n_fields += other.n_fields
        self.n_acc += other.n_acc
        self.sum_mse += other.sum_mse
        self.sum_rmse += other.sum_rmse
        self.sum_acc += other.sum_acc
        return self

    def result(self) -> dict[str, FloatArray]:
        """n_fields, mse, rmse (sqrt of time-mean MSE), rmse_time_mean, acc."""
        mse = safe_ratio(self.sum_mse, self.n_fields)
        return {
            "n_fields": self.n_fields.astype(np.float64),
            "mse": mse,
            "rmse": np.sqrt(mse),
            "rmse_time_mean": safe_ratio(self.sum_rmse, self.n_fields),
            "acc": safe_ratio(self.sum_acc, self.n_acc),
        }


def _one_shot(
    forecast: ArrayLike,
    analysis: ArrayLike,
    lat: ArrayLike,
    climatology: ArrayLike | None,
    axis: Axis,
) -> dict[str, FloatArray]:
    f = as_float(forecast, "forecast")
    if f.ndim < 2:
        raise MetricInputError(f"fields must be [..., lat, lon], got shape {f.shape}")
    acc = GriddedAccumulator(as_float(lat, "lat"), kept_shape(f.shape[:-2], axis))
    return acc.update(f, analysis, climatology, axis=axis).result()


def weighted_rmse(
    forecast: ArrayLike, analysis: ArrayLike, lat: ArrayLike, *, axis: Axis = None
) -> FloatArray:
    """Latitude-weighted RMSE, sqrt of the time mean (over ``axis``) of the field MSEs."""
    return _one_shot(forecast, analysis, lat, None, axis)["rmse"]


def weighted_acc(
    forecast: ArrayLike,
    analysis: ArrayLike,
    climatology: ArrayLike,
    lat: ArrayLike,
    *,
    axis: Axis = None,
) -> FloatArray:
    """Latitude-weighted anomaly correlation, the time mean (over ``axis``) of field ACCs."""
    return _one_shot(forecast, analysis, lat, climatology, axis)["acc"]
