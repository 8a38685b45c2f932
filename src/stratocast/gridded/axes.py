"""Find the latitude, longitude, time, level and lead axes of an array store.

By name first (the spellings of ERA5 CDS, ARCO-ERA5, WeatherBench2, cfgrib and CMIP), then by
CF attributes, because archives rename axes freely: ERA-Interim conversions call time ``t``
or ``initial_time0_hours``, WRF-derived files ``Time``. CF attributes that identify an axis:

* time: a coordinate xarray decoded from ``units = "<unit> since <date>"`` (so its dtype is
  datetime64), or ``standard_name = "time"``, or ``axis = "T"``;
* latitude / longitude: ``standard_name`` ``latitude``/``longitude``, or ``units``
  ``degrees_north``/``degrees_east`` (and the other CF spellings), or ``axis`` Y/X;
* pressure level: ``standard_name = "air_pressure"``, or ``axis = "Z"`` with pressure units.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import xarray as xr

from stratocast.gridded.errors import GriddedFileError
from stratocast.vocab.units import UnitConversionError, converter

LAT_NAMES = ("lat", "latitude")
LON_NAMES = ("lon", "longitude")
TIME_NAMES = ("valid_time", "time")
LEVEL_NAMES = ("level", "pressure_level", "isobaricInhPa", "plev")
MEMBER_NAMES = ("member", "number", "realization", "ensemble")
LEAD_NAMES = ("prediction_timedelta", "step", "lead_time")

_NORTH = {"degrees_north", "degree_north", "degree_N", "degrees_N", "degreeN", "degreesN"}
_EAST = {"degrees_east", "degree_east", "degree_E", "degrees_E", "degreeE", "degreesE"}


@dataclass(frozen=True)
class Axes:
    lat: str
    lon: str
    time: str
    levels: tuple[str, ...]  # every pressure-level axis (a file may carry two)
    lead: str | None


def find(ds: xr.Dataset, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in ds.coords or n in ds.dims), None)


def _candidates(ds: xr.Dataset, test: Callable[[xr.DataArray], bool]) -> list[str]:
    """Coordinates of at most one dimension that pass ``test``, dimension coordinates first."""
    names = [str(n) for n in ds.coords if ds[n].ndim <= 1 and test(ds[n])]
    return sorted(names, key=lambda n: n not in ds.dims)


def _attr(da: xr.DataArray, key: str) -> str:
    return str(da.attrs.get(key, da.encoding.get(key, ""))).strip()


def _is_time(da: xr.DataArray) -> bool:
    return (
        np.issubdtype(da.dtype, np.datetime64)
        or _attr(da, "standard_name") == "time"
        or _attr(da, "axis").upper() == "T"
    )


def _is_pressure(da: xr.DataArray) -> bool:
    if _attr(da, "standard_name") == "air_pressure":
        return True
    if _attr(da, "axis").upper() != "Z" and _attr(da, "positive") != "down":
        return False
    try:
        converter(_attr(da, "units") or "-", "hPa")
    except UnitConversionError:
        return False
    return True


def find_axes(path: Path, ds: xr.Dataset) -> Axes:
    lat = find(ds, LAT_NAMES) or next(
        iter(
            _candidates(
                ds,
                lambda da: (
                    _attr(da, "standard_name") == "latitude"
                    or _attr(da, "units") in _NORTH
                    or _attr(da, "axis").upper() == "Y"
                ),
            )
        ),
        None,
    )
    lon = find(ds, LON_NAMES) or next(
        iter(
            _candidates(
                ds,
                lambda da: (
                    _attr(da, "standard_name") == "longitude"
                    or _attr(da, "units") in _EAST
                    or _attr(da, "axis").upper() == "X"
                ),
            )
        ),
        None,
    )
    if lat is None or lon is None:
        raise GriddedFileError(
            path,
            f"no latitude/longitude coordinates (by name or CF standard_name/units/axis) in "
            f"{sorted(map(str, ds.coords))}",
        )
    time = find(ds, TIME_NAMES) or _time_by_attrs(path, ds)
    levels = tuple(n for n in LEVEL_NAMES if n in ds.coords or n in ds.dims) or tuple(
        n for n in _candidates(ds, _is_pressure) if n in ds.dims
    )
    lead = find(ds, LEAD_NAMES) or next(
        iter(_candidates(ds, lambda da: _attr(da, "standard_name") == "forecast_period")), None
    )
    return Axes(lat, lon, time, levels, lead)


def _time_by_attrs(path: Path, ds: xr.Dataset) -> str:
    found = _candidates(ds, _is_time)
    if not found:
        raise GriddedFileError(
            path,
            "no time coordinate: none named time/valid_time, and none with CF units "
            "'<unit> since <date>', standard_name 'time' or axis 'T' among "
            f"{sorted(map(str, ds.coords))}",
        )
    dims = [n for n in found if n in ds.dims]
    if len(dims) > 1:
        raise GriddedFileError(path, f"several time axes {dims}: select one before opening")
    name = found[0]
    if not np.issubdtype(ds[name].dtype, np.datetime64):
        raise GriddedFileError(
            path,
            f"time coordinate {name!r} (units {_attr(ds[name], 'units')!r}) did not decode "
            "to dates: CF time units are '<unit> since <date>'",
        )
    return name


def levels_hpa(path: Path, coord: xr.DataArray) -> npt.NDArray[np.float64]:
    """The pressure levels of ``coord`` in hPa, read in the coordinate's own units.

    Without a units attribute: CF/CMIP ``plev`` is in Pa; otherwise values above 1100 can
    only be Pa (no standard level exceeds 1000 hPa) and the rest are taken as hPa.
    """
    values = np.asarray(coord.values, dtype=np.float64)
    units = _attr(coord, "units")
    if not units:
        pa = coord.name == "plev" or (values.size > 0 and float(np.nanmax(values)) > 1100.0)
        return values / 100.0 if pa else values
    try:
        conv = converter({"mb": "millibar"}.get(units, units), "hPa")
    except UnitConversionError as err:
        raise GriddedFileError(path, f"pressure-level axis {coord.name!r}: {err}") from None
    return np.asarray(conv(values), dtype=np.float64)
