"""Regrid canonical fields (``lat`` ascending, ``lon`` in [0, 360)) onto the training grid.

Two methods, both for regular lat/lon source and target grids:

* ``bilinear``: :meth:`xarray.Dataset.interp` (linear in lat and lon). A global source is
  padded with one wrapped column on each side first, so targets between the last meridian
  (e.g. 359°) and 360° interpolate across the seam instead of becoming NaN. Targets outside
  the source latitude range, or outside a regional source, are NaN (no extrapolation).
* ``conservative``: first-order area-weighted remapping with exact cell overlaps. On a sphere
  a lat/lon cell's area is ``R² Δλ Δ(sin φ)``, so the overlap of a target and a source cell is
  the product of their longitude overlap (degrees, with periodic wrap) and their ``sin φ``
  overlap: the weight matrix is separable, ``out = W_lat · x · W_lonᵀ / (covered area)``.
  Cell edges are midpoints between centres, the outermost lat edges clamped to ±90°. Each
  target value is the mean of the source over the part of the target cell that has valid
  (non-NaN) source data, which preserves the area-weighted global mean exactly when both
  grids are global. NaN where no valid source overlaps.

Why not a library: ``xarray-regrid`` (the maintained xarray-native option) would add flox and
numpy-groupies for what is ~40 lines of numpy here, and the separable overlap weights are exact
for regular grids, which is the only kind :func:`stratocast.gridded.open_gridded` produces.
Conservative remapping loads each variable into memory (fine for one time slab at a time).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
import xarray as xr

FloatArray = npt.NDArray[np.float64]
Method = Literal["bilinear", "conservative"]

_SEAM_TOL = 1e-6  # degrees


def regrid(
    ds: xr.Dataset,
    target_lat: npt.ArrayLike,
    target_lon: npt.ArrayLike,
    method: Method = "bilinear",
) -> xr.Dataset:
    """Regrid every variable of ``ds`` with dims ``(..., lat, lon)`` onto the target centres."""
    tlat = _check_axis(np.asarray(target_lat, dtype=np.float64), "target_lat", -90.0, 90.0)
    tlon = _check_axis(np.asarray(target_lon, dtype=np.float64), "target_lon", 0.0, 360.0)
    slat = _check_axis(np.asarray(ds["lat"].values, dtype=np.float64), "ds.lat", -90.0, 90.0)
    _check_axis(np.asarray(ds["lon"].values, dtype=np.float64), "ds.lon", 0.0, 360.0)
    ds = _contiguous(ds)
    slon = np.asarray(ds["lon"].values, dtype=np.float64)
    if method == "bilinear":
        return _bilinear(ds, slon, tlat, tlon)
    if method == "conservative":
        return _conservative(ds, slat, slon, tlat, tlon)
    raise ValueError(f"unknown regrid method {method!r}; use 'bilinear' or 'conservative'")


def _check_axis(values: FloatArray, what: str, lo: float, hi: float) -> FloatArray:
    if values.ndim != 1 or values.size < 2:
        raise ValueError(f"{what} must be a 1-D axis with at least 2 points")
    if np.any(np.diff(values) <= 0):
        raise ValueError(f"{what} must be strictly ascending")
    upper_ok = values[-1] < hi if hi == 360.0 else values[-1] <= hi
    if values[0] < lo or not upper_ok:
        bound = "[0, 360)" if hi == 360.0 else f"[{lo}, {hi}]"
        raise ValueError(f"{what} must lie in {bound}, got {values[0]}..{values[-1]}")
    return values


def _contiguous(ds: xr.Dataset) -> xr.Dataset:
    """Roll a regional source that crosses 0° (canonical lon 0..25, 335..359.75) so its lon
    axis is one contiguous run (335..385): otherwise interpolation and cell edges would bridge
    the gap between 25° and 335° where there is no data."""
    lon = np.asarray(ds["lon"].values, dtype=np.float64)
    gaps = np.diff(np.append(lon, lon[0] + 360.0))
    k = int(np.argmax(gaps))
    if k == lon.size - 1 or gaps[k] <= 1.5 * float(np.median(gaps)):
        return ds
    order = np.concatenate([np.arange(k + 1, lon.size), np.arange(k + 1)])
    unrolled = np.concatenate([lon[k + 1 :], lon[: k + 1] + 360.0])
    return ds.isel(lon=order).assign_coords(lon=unrolled)


def _is_global(lon: FloatArray) -> bool:
    """True when the cells tile the full circle (last spacing + span == 360)."""
    step = lon[-1] - lon[-2]
    return abs((lon[-1] - lon[0]) + step - 360.0) < max(_SEAM_TOL, 1e-3 * step)


# ---------------------------------------------------------------------------- bilinear


def _bilinear(ds: xr.Dataset, slon: FloatArray, tlat: FloatArray, tlon: FloatArray) -> xr.Dataset:
    src = ds
    if _is_global(slon):
        left = ds.isel(lon=[-1]).assign_coords(lon=[slon[-1] - 360.0])
        right = ds.isel(lon=[0]).assign_coords(lon=[slon[0] + 360.0])
        src = xr.concat([left, ds, right], dim="lon", data_vars="minimal", coords="minimal")
    # Evaluate each target at its copy inside the source's 360° window [lon0, lon0 + 360).
    wrapped = slon[0] + np.mod(tlon - slon[0], 360.0)
    out = src.interp(lat=tlat, lon=wrapped, method="linear").assign_coords(lon=tlon)
    return _restore_attrs(out, ds)


# ---------------------------------------------------------------------------- conservative


def _lat_edges(lat: FloatArray) -> FloatArray:
    mid = 0.5 * (lat[1:] + lat[:-1])
    first = lat[0] - (mid[0] - lat[0])
    last = lat[-1] + (lat[-1] - mid[-1])
    return np.clip(np.concatenate([[first], mid, [last]]), -90.0, 90.0)


def _lon_edges(lon: FloatArray) -> FloatArray:
    mid = 0.5 * (lon[1:] + lon[:-1])
    if _is_global(lon):
        # the seam edge sits halfway between the last centre and the first one + 360
        seam = 0.5 * (lon[-1] + lon[0] + 360.0)
        return np.concatenate([[seam - 360.0], mid, [seam]])
    first = lon[0] - (mid[0] - lon[0])
    last = lon[-1] + (lon[-1] - mid[-1])
    return np.concatenate([[first], mid, [last]])


def _overlap(t_edges: FloatArray, s_edges: FloatArray, shifts: tuple[float, ...]) -> FloatArray:
    """(n_target, n_source) length of overlap of each interval pair, source shifted by k."""
    ta, tb = t_edges[:-1, None], t_edges[1:, None]
    total = np.zeros((t_edges.size - 1, s_edges.size - 1))
    for k in shifts:
        sa, sb = s_edges[None, :-1] + k, s_edges[None, 1:] + k
        total += np.clip(np.minimum(tb, sb) - np.maximum(ta, sa), 0.0, None)
    return total


def _weights(
    slat: FloatArray, slon: FloatArray, tlat: FloatArray, tlon: FloatArray
) -> tuple[FloatArray, FloatArray]:
    sin_s = np.sin(np.deg2rad(_lat_edges(slat)))
    sin_t = np.sin(np.deg2rad(_lat_edges(tlat)))
    w_lat = _overlap(sin_t, sin_s, (0.0,))
    w_lon = _overlap(_lon_edges(tlon), _lon_edges(slon), (-360.0, 0.0, 360.0))
    return w_lat, w_lon


def _conservative(
    ds: xr.Dataset, slat: FloatArray, slon: FloatArray, tlat: FloatArray, tlon: FloatArray
) -> xr.Dataset:
    w_lat, w_lon = _weights(slat, slon, tlat, tlon)
    out = {}
    for name, da in ds.data_vars.items():
        if "lat" not in da.dims or "lon" not in da.dims:
            out[name] = da
            continue
        moved = da.transpose(..., "lat", "lon")
        x = np.asarray(moved.values, dtype=np.float64)
        valid = ~np.isnan(x)
        num = w_lat @ np.where(valid, x, 0.0) @ w_lon.T
        den = w_lat @ valid.astype(np.float64) @ w_lon.T
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(den > 0.0, num / np.where(den > 0.0, den, 1.0), np.nan)
        coords = {
            k: v for k, v in moved.coords.items() if "lat" not in v.dims and "lon" not in v.dims
        }
        out[name] = xr.DataArray(
            values, dims=moved.dims, coords={**coords, "lat": tlat, "lon": tlon}, attrs=da.attrs
        )
    return _restore_attrs(xr.Dataset(out, attrs=ds.attrs), ds)


def _restore_attrs(out: xr.Dataset, src: xr.Dataset) -> xr.Dataset:
    for name in out.data_vars:
        out[name].attrs = dict(src[name].attrs)
    out["lat"].attrs = dict(src["lat"].attrs)
    out["lon"].attrs = dict(src["lon"].attrs)
    return out
