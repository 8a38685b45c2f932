"""A small synthetic truth with the exact contract of ``stratocast.world.truth``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr


def make_truth(
    n_lat: int = 32, n_lon: int = 64, n_time: int = 8, start: str = "2021-01-01"
) -> xr.Dataset:
    """Smooth fields: a zonal temperature gradient, a travelling pressure wave, westerlies."""
    lat = np.linspace(-87.1875, 87.1875, n_lat)
    lon = np.arange(n_lon) * (360.0 / n_lon)
    time = pd.date_range(start, periods=n_time, freq="6h").to_numpy(dtype="datetime64[ns]")
    la, lo = np.meshgrid(np.radians(lat), np.radians(lon), indexing="ij")
    phase = np.arange(n_time)[:, None, None] * 0.3
    orog = np.clip(2000.0 * np.sin(2 * lo) * np.cos(la) ** 2, 0.0, None)
    t2m = 300.0 - 40.0 * np.sin(la) ** 2 - 0.0065 * orog + 3.0 * np.sin(lo - phase)
    msl = 101325.0 + 1500.0 * np.cos(2 * la) * np.sin(3 * lo - phase)
    u10 = 8.0 * np.cos(la) * np.sin(2 * la) + 2.0 * np.cos(lo + phase)
    v10 = 4.0 * np.sin(lo - phase) * np.cos(la)
    dims = ("time", "lat", "lon")

    def f32(x: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
        return dims, np.broadcast_to(x, (n_time, n_lat, n_lon)).astype(np.float32)

    return xr.Dataset(
        {
            "t2m": f32(t2m),
            "u10": f32(u10),
            "v10": f32(v10),
            "msl": f32(msl),
            "z500": f32(55000.0 + 0.0 * t2m),
            "t850": f32(t2m - 15.0),
            "orography": (("lat", "lon"), orog.astype(np.float32)),
        },
        coords={"time": time, "lat": lat, "lon": lon},
    )


@pytest.fixture(scope="session")
def truth() -> xr.Dataset:
    return make_truth()
