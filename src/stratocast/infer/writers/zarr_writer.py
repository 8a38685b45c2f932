"""Forecast export to Zarr v3 (the format the rest of stratocast and xarray users read).

Chunked for the common read — one lead of one variable (of one member) — so that read costs
one chunk: each forecast variable is chunked (1 init, [1 member,] 1 lead, lat, lon); the
static orography is one chunk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import xarray as xr

from stratocast.infer.writers.base import WriterError, atomic_target, forecast_fields


class ZarrWriter:
    name = "zarr"
    suffix = ".zarr"
    packing_bits: int | None = None  # float32 stored as is

    def write(self, ds: xr.Dataset, path: Path) -> Path:
        path = Path(path)
        fields = forecast_fields(ds, path)
        out = ds.copy()
        encoding: dict[str, dict[str, Any]] = {}
        for name in map(str, out.variables):
            out[name].encoding = {}  # a store opened elsewhere brings its own chunking
        for name in fields:
            chunks = tuple(1 if d not in ("lat", "lon") else out.sizes[d] for d in out[name].dims)
            encoding[name] = {"chunks": chunks}
        with atomic_target(path) as tmp:
            try:
                out.to_zarr(tmp, mode="w", zarr_format=3, consolidated=False, encoding=encoding)
            except (ValueError, TypeError) as err:
                raise WriterError(path, f"cannot write Zarr: {err}") from err
        return path

    def read(self, path: Path) -> xr.Dataset:
        # lead_time carries units "hours": keep it integer hours, as written
        return xr.open_zarr(path, consolidated=False, decode_timedelta=False).load()


def write_zarr(ds: xr.Dataset, path: Path) -> Path:
    """Write atomically: a reader never opens a half-written product."""
    return ZarrWriter().write(ds, path)
