"""Forecast export to CF-NetCDF4 (CF-1.8), the layout CF readers and checkers expect of a
forecast: [``realization`` ×] ``forecast_period`` × ``forecast_reference_time`` × lat × lon
(CF's recommended order: other dimensions left of T, Y, X), with the valid ``time`` as a 2-D
auxiliary coordinate.

Channels keep their canonical names and carry CF ``standard_name``/``units``; missing values
are the netCDF default fill value. Each variable is chunked one (reference time, realization,
period) field per chunk — the slice a map or a point series needs — and deflated (level 1 with
shuffle: most of the size gain at a fraction of the time of higher levels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from stratocast.infer.writers.base import WriterError, atomic_target, forecast_fields, members

#: netCDF's default fill value for float32 (NC_FILL_FLOAT)
FILL = np.float32(9.9692099683868690e36)
_EPOCH = "hours since 1970-01-01 00:00:00"
_RENAME = {"init_time": "forecast_reference_time", "lead_time": "forecast_period"}


def to_cf(ds: xr.Dataset, path: Path) -> xr.Dataset:
    """The contract dataset in CF forecast layout (what :class:`NetcdfWriter` stores)."""
    fields = forecast_fields(ds, path)
    out = ds.rename(_RENAME)
    if "member" in out.dims:
        out = out.rename({"member": "realization"}).assign_coords(
            realization=(
                "realization",
                np.asarray(members(ds), dtype=np.int32),  # CF data types: no 64-bit integers
                {"standard_name": "realization", "units": "1"},
            )
        )
    ref = out["forecast_reference_time"].values.astype("datetime64[ns]")
    period = np.asarray(out["forecast_period"].values, dtype=np.int32)
    valid = period[:, None].astype("timedelta64[h]") + ref[None, :]
    out = out.assign_coords(
        forecast_period=("forecast_period", period),
        time=(("forecast_period", "forecast_reference_time"), valid),
    )
    out["forecast_reference_time"].attrs = {"standard_name": "forecast_reference_time"}
    out["forecast_period"].attrs = {
        "standard_name": "forecast_period",
        "units": "hours",
        "long_name": "time since forecast_reference_time",
    }
    out["time"].attrs = {"standard_name": "time", "axis": "T"}
    out["lat"].attrs = {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}
    out["lon"].attrs = {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}
    for name in fields:
        out[name].attrs = {
            **{k: v for k, v in ds[name].attrs.items() if k in ("units", "standard_name")},
            "long_name": name,
        }
    if "orography" in out:
        out["orography"].attrs = {"standard_name": "surface_altitude", "units": "m"}
    out.attrs = {
        "Conventions": "CF-1.8",
        **{k: str(v) for k, v in ds.attrs.items()},
        "source": str(ds.attrs.get("model", "stratocast")),
        "history": f"written by stratocast {ds.attrs.get('stratocast_version', '')}".strip(),
    }
    # CF's recommended order: the time axis (the reference time, as CF checkers guess it) next
    # to Y, X, and any other dimension (realization, period) to its left
    order = ["realization", "forecast_period", "forecast_reference_time", "lat", "lon"]
    dims = [d for d in order if d in out.dims]
    return out.transpose(*dims)


class NetcdfWriter:
    name = "netcdf"
    suffix = ".nc"
    packing_bits: int | None = None  # float32 stored as is (deflate is lossless)

    def __init__(self, complevel: int = 1) -> None:
        self.complevel = complevel

    def write(self, ds: xr.Dataset, path: Path) -> Path:
        path = Path(path)
        cf = to_cf(ds, path)
        encoding: dict[str, dict[str, Any]] = {}
        for name in map(str, cf.variables):
            cf[name].encoding = {}
        for name in map(str, cf.data_vars):
            var = cf[name]
            spatial = name == "orography"
            chunks = tuple(cf.sizes[d] if d in ("lat", "lon") or spatial else 1 for d in var.dims)
            encoding[name] = {
                "dtype": "float32",
                "_FillValue": FILL,
                "zlib": True,
                "complevel": self.complevel,
                "shuffle": True,
                "chunksizes": chunks,
            }
        for name in map(str, cf.coords):
            encoding[name] = {"_FillValue": None}  # CF: coordinates have no missing values
        for name in ("forecast_reference_time", "time"):
            encoding[name].update(units=_EPOCH, calendar="proleptic_gregorian", dtype="f8")
        with atomic_target(path) as tmp:
            try:
                cf.to_netcdf(tmp, format="NETCDF4", engine="netcdf4", encoding=encoding)
            except (ValueError, TypeError, RuntimeError) as err:
                raise WriterError(path, f"cannot write NetCDF: {err}") from err
        return path

    def read(self, path: Path) -> xr.Dataset:
        """Back to the contract: init_time, [member,] lead_time (int hours), lat, lon."""
        with xr.open_dataset(path, engine="netcdf4", decode_timedelta=False) as f:
            ds = f.load()
        ds = ds.drop_vars("time").rename({v: k for k, v in _RENAME.items()})
        if "realization" in ds.dims:
            ds = ds.rename({"realization": "member"})
        ds = ds.assign_coords(lead_time=ds["lead_time"].values.astype(np.int64))
        fields = [str(v) for v in ds.data_vars if v != "orography"]
        dims = [d for d in ("init_time", "member", "lead_time", "lat", "lon") if d in ds.dims]
        return ds.transpose(*dims) if fields else ds
