"""Regrid canonical fields (``lat`` ascending, ``lon`` in [0, 360)) onto the training grid.

Both methods come from ``xarray-regrid`` (:class:`xarray_regrid.Regridder`), a maintained,
xarray-native regridder for rectilinear grids: no weight files, no ESMF build, works on
numpy or dask arrays, and its separable per-axis weights are the right model for the regular
lat/lon grids :func:`stratocast.gridded.open_gridded` produces.

* ``bilinear``: ``Regridder.linear`` (``xarray.Dataset.interp`` after the library's grid
  formatting). NaN wherever a neighbour is NaN; no extrapolation beyond the source.
* ``conservative``: ``Regridder.conservative`` — first-order area-weighted means. Per axis the
  weight of a source cell in a target cell is their overlap (cell edges at midpoints between
  centres, outer edges extrapolated by half a spacing); along latitude each source row is
  further weighted by its band area ``sin(φ + Δφ/2) - sin(φ - Δφ/2)`` with one (median) Δφ.
  That is exact for rows wholly inside a target cell; a row split between two target cells
  is weighted by its whole-row mean cos φ instead of the mean over the overlapped part, a
  second-order difference that only matters next to the poles (the tests bound it against
  an exact sin-band overlap reference). A row centred on a pole gets zero weight.
  NaN handling: ``skipna=True, nan_threshold=1.0`` — each target value is the mean over the
  valid (non-NaN) part of its overlap; NaN only where no valid source overlaps it, and where
  the target centre lies outside the source's centre range.

Seam and poles. For a global source (cells tile 360°) the library shifts the source longitudes
into the target's window and pads wrapped columns on both sides, so targets between the last
meridian (e.g. 359°) and 360° interpolate across the seam, and conservative cells straddling
0° see both sides. Where a global source stops short of a pole (e.g. 89.5°) it adds a pole
row holding the zonal mean of the nearest row (ESMF's ``Pole="all"``), so bilinear targets
beyond the last row get a value instead of NaN. A regional source is NaN outside its extent;
one that crosses 0° is first unrolled to a contiguous lon run (335..385) and regridded on a
renamed longitude axis, because the library's wrap logic is meant for global grids and
would otherwise fold the regional run back over the 25°..335° gap.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
import xarray as xr
from xarray_regrid import Regridder

from stratocast.errors import StratocastError

FloatArray = npt.NDArray[np.float64]
Method = Literal["bilinear", "conservative"]

_SEAM_TOL = 1e-6  # degrees
_PLAIN_LON = "x_lon"  # a name the library does not recognise as longitude: no wrapping


class RegridError(StratocastError, ValueError):
    """A regrid request the grids cannot serve: an axis that is not ascending, out of range."""


def regrid(
    ds: xr.Dataset,
    target_lat: npt.ArrayLike,
    target_lon: npt.ArrayLike,
    method: Method = "bilinear",
) -> xr.Dataset:
    """Regrid every variable of ``ds`` with dims ``(..., lat, lon)`` onto the target centres.

    Variables without both ``lat`` and ``lon`` are passed through unchanged.
    """
    if method not in ("bilinear", "conservative"):
        raise RegridError(f"unknown regrid method {method!r}; use 'bilinear' or 'conservative'")
    tlat = _check_axis(np.asarray(target_lat, dtype=np.float64), "target_lat", -90.0, 90.0)
    tlon = _check_axis(np.asarray(target_lon, dtype=np.float64), "target_lon", 0.0, 360.0)
    _check_axis(np.asarray(ds["lat"].values, dtype=np.float64), "ds.lat", -90.0, 90.0)
    _check_axis(np.asarray(ds["lon"].values, dtype=np.float64), "ds.lon", 0.0, 360.0)
    gridded = [n for n, da in ds.data_vars.items() if "lat" in da.dims and "lon" in da.dims]
    src = _contiguous(ds[gridded])
    slon = np.asarray(src["lon"].values, dtype=np.float64)
    if _is_global(slon):
        out = _apply(src, xr.Dataset(coords={"lat": tlat, "lon": tlon}), method)
    else:
        out = _regional(src, slon, tlat, tlon, method)
    for name, da in ds.data_vars.items():
        if name not in out.data_vars:
            out[name] = da
    out.attrs = dict(ds.attrs)
    return _restore_attrs(out, ds)


def _check_axis(values: FloatArray, what: str, lo: float, hi: float) -> FloatArray:
    if values.ndim != 1 or values.size < 2:
        raise RegridError(f"{what} must be a 1-D axis with at least 2 points")
    if np.any(np.diff(values) <= 0):
        raise RegridError(f"{what} must be strictly ascending")
    upper_ok = values[-1] < hi if hi == 360.0 else values[-1] <= hi
    if values[0] < lo or not upper_ok:
        bound = "[0, 360)" if hi == 360.0 else f"[{lo}, {hi}]"
        raise RegridError(f"{what} must lie in {bound}, got {values[0]}..{values[-1]}")
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


def _regional(
    src: xr.Dataset, slon: FloatArray, tlat: FloatArray, tlon: FloatArray, method: Method
) -> xr.Dataset:
    """Regrid on a plain (non-periodic) lon axis, each target at its copy in the source's
    360° window [lon0, lon0 + 360), then relabel with the caller's target longitudes."""
    wrapped = slon[0] + np.mod(tlon - slon[0], 360.0)
    plain = src.rename({"lon": _PLAIN_LON})
    out = _apply(plain, xr.Dataset(coords={"lat": tlat, _PLAIN_LON: wrapped}), method)
    return out.rename({_PLAIN_LON: "lon"}).assign_coords(lon=tlon)


def _apply(src: xr.Dataset, target: xr.Dataset, method: Method) -> xr.Dataset:
    regridder = Regridder(src)
    if method == "bilinear":
        out = regridder.linear(target)
    else:
        # nan_threshold=1.0: keep any target cell with some valid source (mean over valid part)
        out = regridder.conservative(target, latitude_coord="lat", skipna=True, nan_threshold=1.0)
    # Internal invariant (a library change, not the user's input): stays a TypeError.
    if not isinstance(out, xr.Dataset):  # the library returns what it is given
        raise TypeError(f"xarray-regrid returned {type(out).__name__} for a Dataset")
    return out


def _restore_attrs(out: xr.Dataset, src: xr.Dataset) -> xr.Dataset:
    for name in out.data_vars:
        out[name].attrs = dict(src[name].attrs)
    out["lat"].attrs = dict(src["lat"].attrs)
    out["lon"].attrs = dict(src["lon"].attrs)
    return out
