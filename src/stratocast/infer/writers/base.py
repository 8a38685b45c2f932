"""The ``ForecastWriter`` plug point: one writer per product format (Zarr, CF-NetCDF4, GRIB2,
point series), each registered by name (:mod:`stratocast.infer.writers.registry`) and held to
one conformance suite (:mod:`stratocast.testing.writers`).

Every writer reads the forecast dataset contract that :func:`stratocast.infer.forecast.
forecast_dataset` builds: one float32 variable per canonical channel over
``(init_time, lead_time, lat, lon)`` — ``(init_time, member, lead_time, lat, lon)`` for an
ensemble — with ``units``/``standard_name``; ``lead_time`` in whole hours; 1-D ``lat``
(either order) and ``lon``; a static 2-D ``orography``.

Writes are atomic: the product is written under a temporary name beside the target and renamed
into place, so a reader never sees a half-written product and a failure mid-write leaves the
previous product as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import xarray as xr

from stratocast.errors import StratocastError

#: dims of every forecast field, in this order; an ensemble inserts ``member`` after init_time
FIELD_DIMS = ("init_time", "lead_time", "lat", "lon")
ENSEMBLE_DIMS = ("init_time", "member", "lead_time", "lat", "lon")
#: static fields: not a forecast channel (no init/lead axis)
STATIC = ("orography",)


class WriterError(StratocastError, ValueError):
    """A forecast dataset a writer cannot write; the message names the file and the variable."""

    def __init__(self, path: Path | str, problem: str, variable: str | None = None) -> None:
        where = f"{path}" if variable is None else f"{path} (variable {variable!r})"
        super().__init__(f"{where}: {problem}")
        self.path = Path(path)
        self.variable = variable


@runtime_checkable
class ForecastWriter(Protocol):
    """One product format. ``write`` is atomic and returns the path written; ``read`` gives the
    product back in the dataset contract (fields and coordinates; what the format stores)."""

    #: registry name (``zarr``, ``netcdf``, ``grib2``, ``points_csv`` ...)
    name: str
    #: file-name suffix of the product, with its dot (``.zarr``, ``.nc``, ``.grib2``)
    suffix: str
    #: bits a value is packed to, or None where float32 values are stored exactly
    packing_bits: int | None

    def write(self, ds: xr.Dataset, path: Path) -> Path: ...

    def read(self, path: Path) -> xr.Dataset: ...


def forecast_fields(ds: xr.Dataset, path: Path) -> list[str]:
    """The forecast channels of ``ds`` (static fields left out), after checking the contract;
    a dataset that breaks it is refused naming ``path`` and the variable."""
    for coord in ("init_time", "lead_time", "lat", "lon"):
        if coord not in ds.coords:
            raise WriterError(path, f"the forecast dataset has no {coord!r} coordinate")
    if not np.issubdtype(ds["init_time"].dtype, np.datetime64):
        raise WriterError(path, f"init_time must be datetime64, is {ds['init_time'].dtype}")
    lead = np.asarray(ds["lead_time"].values)
    if lead.dtype.kind not in "iu":
        raise WriterError(path, f"lead_time must be whole hours (integers), is {lead.dtype}")
    fields = [str(v) for v in ds.data_vars if str(v) not in STATIC]
    if not fields:
        raise WriterError(path, "the forecast dataset has no forecast variable")
    want = ENSEMBLE_DIMS if "member" in ds.dims else FIELD_DIMS
    for name in fields:
        if set(ds[name].dims) != set(want):
            raise WriterError(path, f"dims {ds[name].dims}, expected {want}", name)
    return fields


def field_array(ds: xr.Dataset, name: str) -> xr.DataArray:
    """``ds[name]`` in canonical dim order, with a length-1 member axis for a deterministic
    forecast so every writer loops over one shape."""
    da = ds[name]
    if "member" not in da.dims:
        da = da.expand_dims("member", axis=1)
    return da.transpose(*ENSEMBLE_DIMS)


def members(ds: xr.Dataset) -> np.ndarray | None:
    """Ensemble member numbers (the ``member`` coordinate, else 0..M-1), None if deterministic."""
    if "member" not in ds.dims:
        return None
    if "member" in ds.coords:
        return np.asarray(ds["member"].values).astype(np.int64)
    return np.arange(ds.sizes["member"], dtype=np.int64)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on any error
    it is removed and ``path`` is left as it was.

    A file is replaced with one ``os.replace`` (atomic on POSIX). A directory (Zarr) cannot be
    replaced in one step: the old one is renamed aside, the new one renamed in, then the old
    one removed, so the gap between the two renames is the only moment with no product.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if tmp.is_dir():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        _remove(old)
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        _remove(old)
    else:
        os.replace(tmp, path)
