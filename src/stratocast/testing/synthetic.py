"""Tiny synthetic inputs that follow the stage contracts, for fast unit tests.

Not a world model (that is ``stratocast.world``): travelling waves on a small grid and
stations sampling them, so a test of the shards, loader or trainer runs in seconds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

CHANNELS = ("t2m", "u10", "v10", "msl", "z500", "t850")
_BASE = {"t2m": 285.0, "u10": 0.0, "v10": 0.0, "msl": 101300.0, "z500": 55000.0, "t850": 275.0}
_AMP = {"t2m": 8.0, "u10": 6.0, "v10": 5.0, "msl": 1500.0, "z500": 2000.0, "t850": 6.0}


def synthetic_truth(
    n_time: int = 48, n_lat: int = 16, n_lon: int = 32, seed: int = 0
) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    lat = np.linspace(-90 + 90 / n_lat, 90 - 90 / n_lat, n_lat)
    lon = np.arange(n_lon) * 360.0 / n_lon
    time = np.datetime64("2000-01-01T00", "ns") + np.arange(n_time) * np.timedelta64(6, "h")
    la, lo = np.meshgrid(np.radians(lat), np.radians(lon), indexing="ij")
    data = {}
    for k, name in enumerate(CHANNELS):
        phase = rng.uniform(0, 2 * np.pi)
        speed = 0.15 + 0.05 * k  # radians of longitude per step: the waves travel east
        fields = [
            _BASE[name]
            + _AMP[name] * np.cos(la) * np.sin(3 * lo - speed * t + phase)
            + 0.3 * _AMP[name] * np.sin(2 * la)
            for t in range(n_time)
        ]
        data[name] = (("time", "lat", "lon"), np.asarray(fields, dtype=np.float32))
    ds = xr.Dataset(data, coords={"time": time, "lat": lat, "lon": lon})
    ds["orography"] = (("lat", "lon"), (500.0 * np.clip(np.cos(la) * np.cos(lo), 0, None)))
    return ds


def synthetic_obs(truth: xr.Dataset, n_stations: int = 40, seed: int = 0) -> pd.DataFrame:
    """Long-format observations (the store's schema) of t2m, u10, v10, msl at stations."""
    rng = np.random.default_rng(seed)
    lat = rng.uniform(-70, 70, n_stations)
    lon = rng.uniform(0, 360, n_stations)
    rows = []
    for name in ("t2m", "u10", "v10", "msl"):
        vals = (
            truth[name]
            .interp(lat=xr.DataArray(lat, dims="s"), lon=xr.DataArray(lon, dims="s"))
            .values
        )
        for ti, t in enumerate(truth["time"].values):
            keep = rng.random(n_stations) > 0.1  # some reports missing
            for s in np.flatnonzero(keep & np.isfinite(vals[ti])):
                rows.append((f"S{s:03d}", lat[s], lon[s], 100.0, t, name, float(vals[ti, s])))
    df = pd.DataFrame(
        rows, columns=["station_id", "lat", "lon", "elevation", "time", "variable", "value"]
    )
    df["time"] = pd.to_datetime(df["time"]).dt.tz_localize("UTC")
    df["source"] = "synthetic"
    df["report_id"] = "synthetic"
    return df
