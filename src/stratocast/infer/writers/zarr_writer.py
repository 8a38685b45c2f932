"""Forecast export to Zarr v3 (the format the rest of stratocast and xarray users read)."""

from __future__ import annotations

import shutil
from pathlib import Path

import xarray as xr


def write_zarr(ds: xr.Dataset, path: Path) -> Path:
    """Write atomically: a reader never opens a half-written product."""
    tmp = path.with_name(path.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    ds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=False)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path
