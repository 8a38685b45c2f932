"""Grid → point interpolation shared by every stage (observation operator, verification).

Bilinear on a regular lat/lon grid. Longitude is periodic on a global grid (a point between
the last column and 360° interpolates between the last and first columns). A point poleward of
the outermost latitude row of a global grid takes that row's value, interpolated in longitude
(constant extrapolation over a polar cap less than one grid spacing wide); on a regional grid
a point outside the domain gets NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stratocast.errors import StratocastError


class GridError(StratocastError, ValueError):
    """A grid does not meet the lat/lon contract (regular, strictly ascending)."""


@dataclass(frozen=True)
class BilinearWeights:
    """Corner indices and weights of each point in a regular lat/lon grid."""

    lat_lo: np.ndarray
    lat_hi: np.ndarray
    lon_lo: np.ndarray
    lon_hi: np.ndarray
    w_lat: np.ndarray  # weight of the lat_hi row
    w_lon: np.ndarray  # weight of the lon_hi column
    inside: np.ndarray  # False where the point lies outside a regional grid

    def apply(self, field: np.ndarray) -> np.ndarray:
        """Interpolate ``field[..., lat, lon]`` to the points: result ``[..., point]``."""
        f = np.asarray(field, dtype=np.float64)
        south = (1.0 - self.w_lon) * f[..., self.lat_lo, self.lon_lo] + self.w_lon * f[
            ..., self.lat_lo, self.lon_hi
        ]
        north = (1.0 - self.w_lon) * f[..., self.lat_hi, self.lon_lo] + self.w_lon * f[
            ..., self.lat_hi, self.lon_hi
        ]
        out = (1.0 - self.w_lat) * south + self.w_lat * north
        return np.where(self.inside, out, np.nan)


def _spacing(coord: np.ndarray, name: str) -> float:
    if coord.size < 2:
        raise GridError(f"grid needs at least 2 {name} points, has {coord.size}")
    steps = np.diff(coord)
    if not np.all(steps > 0):
        raise GridError(f"grid {name} must be strictly ascending, as the data contract says")
    return float(steps.max())


def _lat_axis(grid_lat: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, ...]:
    step = _spacing(grid_lat, "lat")
    # The outer rows of a global grid sit within one spacing of the poles; only then is
    # clamping a station beyond them an interpolation rather than an extrapolation.
    reaches_south = grid_lat[0] - 1.5 * step <= -90.0
    reaches_north = grid_lat[-1] + 1.5 * step >= 90.0
    inside = ((lat >= grid_lat[0]) | reaches_south) & ((lat <= grid_lat[-1]) | reaches_north)
    clamped = np.clip(lat, grid_lat[0], grid_lat[-1])
    lo = np.clip(np.searchsorted(grid_lat, clamped, side="right") - 1, 0, grid_lat.size - 2)
    w = (clamped - grid_lat[lo]) / (grid_lat[lo + 1] - grid_lat[lo])
    return lo, lo + 1, np.clip(w, 0.0, 1.0), inside


def _lon_axis(grid_lon: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, ...]:
    step = _spacing(grid_lon, "lon")
    n = grid_lon.size
    is_global = grid_lon[0] + 360.0 - grid_lon[-1] <= 1.5 * step
    # Into the grid's own range ([lon0, lon0 + 360)): a box written in -180..180 (ERA5's
    # -125..-66) would otherwise see every point as outside it.
    lon = grid_lon[0] + np.mod(lon - grid_lon[0], 360.0)
    if not is_global:
        inside = (lon >= grid_lon[0]) & (lon <= grid_lon[-1])
        lo = np.clip(np.searchsorted(grid_lon, lon, side="right") - 1, 0, n - 2)
        w = (lon - grid_lon[lo]) / (grid_lon[lo + 1] - grid_lon[lo])
        return lo, lo + 1, np.clip(w, 0.0, 1.0), inside
    # Periodic: append the first column at +360 so every longitude has a bracketing pair.
    extended = np.append(grid_lon, grid_lon[0] + 360.0)
    lon = np.where(lon < grid_lon[0], lon + 360.0, lon)
    lo = np.clip(np.searchsorted(extended, lon, side="right") - 1, 0, n - 1)
    w = (lon - extended[lo]) / (extended[lo + 1] - extended[lo])
    return lo, (lo + 1) % n, np.clip(w, 0.0, 1.0), np.ones(lon.shape, dtype=bool)


def bilinear_weights(
    grid_lat: np.ndarray, grid_lon: np.ndarray, lat: np.ndarray, lon: np.ndarray
) -> BilinearWeights:
    """Weights that interpolate a field on (``grid_lat``, ``grid_lon``) to points (lat, lon)."""
    glat = np.asarray(grid_lat, dtype=np.float64)
    glon = np.asarray(grid_lon, dtype=np.float64)
    plat = np.asarray(lat, dtype=np.float64)
    plon = np.asarray(lon, dtype=np.float64)
    lat_lo, lat_hi, w_lat, in_lat = _lat_axis(glat, plat)
    lon_lo, lon_hi, w_lon, in_lon = _lon_axis(glon, plon)
    return BilinearWeights(lat_lo, lat_hi, lon_lo, lon_hi, w_lat, w_lon, in_lat & in_lon)
