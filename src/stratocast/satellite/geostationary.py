"""NWC-SAF GEO Convective Rainfall Rate (CRR) NetCDF -> located, timed rain rates.

The product grid is the satellite's geostationary view, with x/y the scan angles times the
satellite height (metres, pixel centres, in the ``nx``/``ny`` variables). The NWC/GEO v2016
files name no CF ``grid_mapping`` variable and carry no lat/lon despite ``coordinates``
saying so; the projection is in the global ``gdal_projection`` attribute (a PROJ string with
a, b, lon_0, h). A CF ``grid_mapping`` is used first when a file has one.

``crr_intensity`` is packed uint16 (scale 0.1, offset 0, fill 65535, mm/h); it is decoded by
hand (not netCDF4's auto-scaling) so the fill and valid-range handling is explicit, and
converted to kg m-2 s-1 (1 mm of water over 1 m2 is 1 kg). ``crr`` in the file is a rate
class, not a rate, and is not read. Pixels that do not see the Earth have NaN lat/lon and
NaN rate.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import netCDF4
import numpy as np
import numpy.typing as npt
import pyproj
import xarray as xr

from stratocast.obs.base import SourceFileError

RATE_VAR = "crr_intensity"
# mm/h (= kg m-2 h-1 of liquid water) -> kg m-2 s-1
_RATE_UNITS = {"mm/h": 1.0 / 3600.0, "mm h-1": 1.0 / 3600.0, "kg m-2 h-1": 1.0 / 3600.0}
_NAME_TIME = re.compile(r"_(\d{8}T\d{6})Z\.nc$")

FloatArray = npt.NDArray[np.float64]


def geos_crs(nc: netCDF4.Dataset) -> pyproj.CRS:
    """The file's projection: a CF grid_mapping if present, else ``gdal_projection``."""
    for var in nc.variables.values():
        mapping = getattr(var, "grid_mapping", None)
        if mapping and mapping in nc.variables:
            gm = nc.variables[mapping]
            return pyproj.CRS.from_cf({a: gm.getncattr(a) for a in gm.ncattrs()})
    proj = getattr(nc, "gdal_projection", None)
    if not proj:
        raise SourceFileError(f"{nc.filepath()}: no grid_mapping variable nor gdal_projection")
    if "+proj=geos" not in str(proj):
        raise SourceFileError(f"{nc.filepath()}: projection {proj!r} is not geostationary")
    return pyproj.CRS.from_proj4(str(proj))


def pixel_lonlat(crs: pyproj.CRS, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """2-D (lat, lon) in degrees of projection coordinates x (columns), y (rows); NaN off disk."""
    xx, yy = np.meshgrid(np.asarray(x, np.float64), np.asarray(y, np.float64))
    to_geo = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    lon, lat = to_geo.transform(xx, yy)
    lon, lat = np.asarray(lon, np.float64), np.asarray(lat, np.float64)
    off = ~(np.isfinite(lon) & np.isfinite(lat))  # PROJ returns inf past the limb
    lon[off] = np.nan
    lat[off] = np.nan
    return lat, lon


def _product_time(nc: netCDF4.Dataset, path: Path) -> datetime:
    """Nominal product time from the attributes, cross-checked against the file name."""
    from_attr = getattr(nc, "nominal_product_time", None)
    m = _NAME_TIME.search(path.name)
    from_name = datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC) if m else None
    if from_attr is None:
        if from_name is None:
            raise SourceFileError(f"{path}: no nominal_product_time and no time in the file name")
        return from_name
    t = datetime.strptime(str(from_attr), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    if from_name is not None and from_name != t:
        raise SourceFileError(
            f"{path}: nominal_product_time {from_attr} disagrees with the file name"
        )
    return t


def _decode_rate(nc: netCDF4.Dataset, path: Path) -> FloatArray:
    if RATE_VAR not in nc.variables:
        raise SourceFileError(f"{path}: no {RATE_VAR} variable (not an NWC-SAF CRR file?)")
    var = nc.variables[RATE_VAR]
    units = str(getattr(var, "units", ""))
    if units not in _RATE_UNITS:
        raise SourceFileError(f"{path}: {RATE_VAR} has units {units!r}, expected mm/h")
    var.set_auto_maskandscale(False)
    raw = np.asarray(var[:])
    rate = raw * float(getattr(var, "scale_factor", 1.0)) + float(getattr(var, "add_offset", 0.0))
    bad = np.zeros(raw.shape, bool)
    if hasattr(var, "_FillValue"):
        bad |= raw == var._FillValue
    if hasattr(var, "valid_range"):
        lo, hi = var.valid_range
        bad |= (raw < lo) | (raw > hi)
    rate[bad] = np.nan
    return np.asarray(rate * _RATE_UNITS[units], np.float64)


def read_crr(path: Path | str) -> xr.Dataset:
    """One CRR file as a Dataset: ``crr(time, y, x)`` in kg m-2 s-1 with 2-D ``lat``/``lon``."""
    path = Path(path)
    try:
        nc = netCDF4.Dataset(path)
    except OSError as err:
        raise SourceFileError(f"cannot open {path} as NetCDF: {err}") from None
    with nc:
        t = _product_time(nc, path)
        crs = geos_crs(nc)
        x = np.asarray(nc.variables["nx"][:], np.float64)
        y = np.asarray(nc.variables["ny"][:], np.float64)
        rate = _decode_rate(nc, path)
    lat, lon = pixel_lonlat(crs, x, y)
    rate[np.isnan(lat)] = np.nan
    ds = xr.Dataset(
        {
            "crr": (
                ("time", "y", "x"),
                rate[np.newaxis].astype(np.float32),
                {
                    "standard_name": "convective_precipitation_flux",
                    "units": "kg m-2 s-1",
                    "long_name": "NWC-SAF convective rainfall rate",
                },
            )
        },
        coords={
            "time": ("time", np.array([t.replace(tzinfo=None)], "datetime64[ns]")),
            "y": ("y", y, {"standard_name": "projection_y_coordinate", "units": "m"}),
            "x": ("x", x, {"standard_name": "projection_x_coordinate", "units": "m"}),
            "lat": (("y", "x"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": (("y", "x"), lon, {"standard_name": "longitude", "units": "degrees_east"}),
        },
        attrs={"source_file": path.name, "crs": crs.to_wkt()},
    )
    return ds


def read_crr_files(paths: Sequence[Path | str]) -> xr.Dataset:
    """Several CRR files on the same grid, stacked along time in time order."""
    if not paths:
        raise ValueError("read_crr_files: no files given")
    parts = [read_crr(p) for p in paths]
    first = parts[0]
    for p, ds in zip(paths[1:], parts[1:], strict=True):
        if not (np.array_equal(ds.x, first.x) and np.array_equal(ds.y, first.y)):
            raise SourceFileError(f"{p}: grid differs from {paths[0]}")
    out = xr.concat(
        [ds.drop_vars(["lat", "lon"]) for ds in parts], dim="time", combine_attrs="override"
    )
    out = out.assign_coords(lat=first.lat, lon=first.lon).sortby("time")
    out.attrs = {
        "source_files": " ".join(str(ds.attrs["source_file"]) for ds in parts),
        "crs": first.attrs["crs"],
    }
    return out
