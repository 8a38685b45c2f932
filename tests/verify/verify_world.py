"""A small synthetic world with known answers for the verification tests.

Truth fields are random but depend only on valid time, so a forecast that copies the truth is
perfect at every (init, lead). Observations are the truth interpolated to stations by scipy
(independently of the code under test) with a hand-written lapse correction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from scipy.interpolate import RegularGridInterpolator

LAPSE_K_PER_M = 0.0065
FIELDS = ("t2m", "u10", "v10", "msl")


def scipy_bilinear(lat: np.ndarray, lon: np.ndarray, field: np.ndarray, plat, plon) -> np.ndarray:
    """Reference periodic bilinear interpolation (grid extended by the 360° column)."""
    lon_ext = np.append(lon, lon[0] + 360.0)
    field_ext = np.concatenate([field, field[..., :1]], axis=-1)
    interp = RegularGridInterpolator((lat, lon_ext), field_ext, method="linear")
    return interp(np.column_stack([plat, np.mod(plon, 360.0)]))


@dataclass
class World:
    truth: xr.Dataset  # dims (time, lat, lon)
    forecast: xr.Dataset  # the truth re-cut as (init_time, lead_time, lat, lon)
    obs: pd.DataFrame
    clim_obs: pd.DataFrame
    stations: pd.DataFrame
    station_truth: dict[str, np.ndarray]  # var -> [time, station] at station elevation


def _fields(rng: np.random.Generator, times: pd.DatetimeIndex, lat, lon) -> xr.Dataset:
    shape = (times.size, lat.size, lon.size)
    base = {
        "t2m": 285.0 + 8.0 * rng.standard_normal(shape),
        "u10": 5.0 * rng.standard_normal(shape),
        "v10": 5.0 * rng.standard_normal(shape),
        "msl": 101325.0 + 900.0 * rng.standard_normal(shape),
    }
    ds = xr.Dataset(
        {k: (("time", "lat", "lon"), v.astype(np.float32)) for k, v in base.items()},
        coords={"time": times.tz_localize(None), "lat": lat, "lon": lon},
    )
    ds["orography"] = (("lat", "lon"), rng.uniform(0.0, 1500.0, (lat.size, lon.size)))
    return ds


def _recut(truth: xr.Dataset, inits: pd.DatetimeIndex, leads: np.ndarray) -> xr.Dataset:
    """Forecast[init, lead] = truth[init + lead]."""
    out = {}
    for var in FIELDS:
        cube = np.stack(
            [
                truth[var]
                .sel(time=(inits[i] + pd.Timedelta(hours=int(h))).tz_localize(None))
                .values
                for i in range(inits.size)
                for h in leads
            ]
        ).reshape(inits.size, leads.size, truth.lat.size, truth.lon.size)
        out[var] = (("init_time", "lead_time", "lat", "lon"), cube)
    ds = xr.Dataset(
        out,
        coords={
            "init_time": inits.tz_localize(None),
            "lead_time": leads.astype(np.int64),
            "lat": truth.lat.values,
            "lon": truth.lon.values,
        },
    )
    ds["orography"] = truth["orography"]
    return ds


def _station_truth(truth: xr.Dataset, stations: pd.DataFrame) -> dict[str, np.ndarray]:
    lat, lon = truth.lat.values, truth.lon.values
    plat, plon = stations["lat"].to_numpy(), stations["lon"].to_numpy()
    out = {}
    for var in FIELDS:
        out[var] = np.stack(
            [
                scipy_bilinear(lat, lon, truth[var].values[t], plat, plon)
                for t in range(truth.time.size)
            ]
        )
    orog = scipy_bilinear(lat, lon, truth["orography"].values, plat, plon)
    out["t2m"] = out["t2m"] - LAPSE_K_PER_M * (stations["elevation_m"].to_numpy() - orog)
    out["ws10"] = np.hypot(out["u10"], out["v10"])
    return out


def _long_rows(times, stations, values: dict[str, np.ndarray], offset_min: float) -> pd.DataFrame:
    frames = []
    for t_i, t in enumerate(times):
        for s_i, st in stations.reset_index(drop=True).iterrows():
            report = f"synthetic.txt:{t_i}:{st['station_id']}"
            for var, arr in values.items():
                frames.append(
                    {
                        "source": "synop",
                        "station_id": st["station_id"],
                        "lat": float(st["lat"]),
                        "lon": float(st["lon"]),
                        "elevation": np.float32(st["elevation_m"]),
                        "time": t + pd.Timedelta(minutes=offset_min),
                        "variable": var,
                        "value": float(arr[t_i, s_i]),
                        "report_id": report,
                    }
                )
    df = pd.DataFrame(frames)
    df["time"] = pd.to_datetime(df["time"], utc=True).dt.as_unit("us")
    return df


def make_world(seed: int = 0, n_stations: int = 10, n_days: int = 2) -> World:
    rng = np.random.default_rng(seed)
    lat = np.arange(-87.5, 88.0, 5.0)
    lon = np.arange(0.0, 360.0, 5.0)
    first = pd.Timestamp("2024-01-10T00:00", tz="UTC")
    leads = np.arange(0, 25, 6)
    inits = pd.date_range(first, periods=2 * n_days, freq="12h")
    times = pd.date_range(first, inits[-1] + pd.Timedelta(hours=int(leads.max())), freq="6h")
    truth = _fields(rng, times, lat, lon)
    stations = pd.DataFrame(
        {
            "station_id": [f"V{i:03d}" for i in range(n_stations)],
            "lat": rng.uniform(-80, 80, n_stations),
            # include stations across the 0/360 seam, one given as a negative longitude
            "lon": np.concatenate([[358.7, -2.0], rng.uniform(0, 360, n_stations - 2)]),
            "elevation_m": rng.uniform(0, 2000, n_stations),
            "role": "verify",
        }
    )
    st_truth = _station_truth(truth, stations)
    # Wind reported as components for the even stations, as a speed for the odd ones, so
    # both paths to ws10 are exercised.
    values = {v: st_truth[v] for v in ("t2m", "msl", "u10", "v10")}
    obs = _long_rows(times, stations, values, offset_min=10.0)
    odd = stations["station_id"].iloc[1::2].tolist()
    obs = obs[~(obs["station_id"].isin(odd) & obs["variable"].isin(["u10", "v10"]))]
    ws = _long_rows(times, stations, {"ws10": st_truth["ws10"]}, offset_min=10.0)
    obs = pd.concat([obs, ws[ws["station_id"].isin(odd)]], ignore_index=True)
    # Decoys outside the ±30 min tolerance (and farther than the real report): never matched.
    decoy = _long_rows(times, stations, {v: a + 50.0 for v, a in values.items()}, offset_min=45.0)
    obs = pd.concat([obs, decoy], ignore_index=True)
    clim_times = pd.date_range(
        first - pd.Timedelta(days=6), first - pd.Timedelta(hours=6), freq="6h"
    )
    clim_vals = {
        "t2m": 280.0 + rng.standard_normal((clim_times.size, n_stations)),
        "msl": 101000.0 + 100 * rng.standard_normal((clim_times.size, n_stations)),
        "ws10": np.abs(3.0 + rng.standard_normal((clim_times.size, n_stations))),
    }
    clim_obs = _long_rows(clim_times, stations, clim_vals, offset_min=-5.0)
    return World(truth, _recut(truth, inits, leads), obs, clim_obs, stations, st_truth)
