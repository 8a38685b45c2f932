"""Forecasts to stations, and observations to valid times.

Grid → station: bilinear interpolation on the regular lat/lon grid. Longitude is periodic on a
global grid (a station between the last column and 360° interpolates between the last and
first columns). A station poleward of the outermost latitude row of a global grid takes that
row's value, interpolated in longitude (constant extrapolation over the polar cap, which is
less than one grid spacing wide); on a regional grid a station outside the domain gets NaN and
so drops out of the scored mask.

t2m is moved from the interpolated model orography to the station elevation with a constant
lapse rate (default 6.5 K/km, the ICAO standard atmosphere): a station above the model surface
is colder. ws10 is the speed of the interpolated u10, v10 (interpolating components, not
speeds, as the model's wind is a vector field).

Observation → valid time: the nearest report of the station within the tolerance; reports at
exactly the same time are averaged first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from stratocast.grid.interp import BilinearWeights, bilinear_weights
from stratocast.verify.config import SUPPORTED_VARIABLES

__all__ = ["BilinearWeights", "bilinear_weights"]  # re-exported: the stage's public API


class VerifyInputError(ValueError):
    """A forecast or observation input does not meet the verification stage's contract."""


FORECAST_DIMS = ("init_time", "lead_time", "lat", "lon")
OBS_COLUMNS = ("station_id", "lat", "lon", "elevation", "time", "variable", "value")


# --------------------------------------------------------------------------- stations


@dataclass(frozen=True)
class Stations:
    """Held-out stations in a fixed order: every array in the stage is indexed by it."""

    ids: np.ndarray  # str
    lat: np.ndarray
    lon: np.ndarray
    elevation: np.ndarray  # m; NaN where unknown (t2m is then not scored there)

    def __len__(self) -> int:
        return int(self.ids.size)


def stations_from_obs(frames: Sequence[pd.DataFrame], station_ids: Iterable[str]) -> Stations:
    """Station coordinates as reported in the observations (median over reports).

    The median makes one mis-located report harmless. Requested stations without a single
    report are left out: they cannot contribute a sample.
    """
    wanted = {str(s) for s in station_ids}
    parts = [
        f.loc[f["station_id"].isin(wanted), ["station_id", "lat", "lon", "elevation"]]
        for f in frames
        if len(f)
    ]
    if not parts:
        raise VerifyInputError("no observations at any of the verification stations")
    meta = pd.concat(parts).groupby("station_id", sort=True).median()
    return Stations(
        ids=meta.index.to_numpy(dtype=str),
        lat=meta["lat"].to_numpy(dtype=np.float64),
        lon=np.mod(meta["lon"].to_numpy(dtype=np.float64), 360.0),
        elevation=meta["elevation"].to_numpy(dtype=np.float64),
    )


# --------------------------------------------------------------------------- forecasts


def required_forecast_variables(variables: Sequence[str], lapse_rate: float) -> list[str]:
    """Forecast store variables needed to produce ``variables`` at stations."""
    need: list[str] = []
    for var in variables:
        if var == "ws10":
            need += ["u10", "v10"]
        else:
            need.append(var)
        if var == "t2m" and lapse_rate > 0:
            need.append("orography")
    return list(dict.fromkeys(need))


def check_forecast(name: str, ds: xr.Dataset, variables: Sequence[str], lapse_rate: float) -> None:
    """Raise naming the forecast system and what is missing, before any work is done."""
    missing_dims = [d for d in FORECAST_DIMS if d not in ds.dims]
    if missing_dims:
        raise VerifyInputError(
            f"forecast {name!r} lacks dimension(s) {missing_dims}; dims are {list(ds.dims)}"
        )
    for var in required_forecast_variables(variables, lapse_rate):
        if var not in ds.variables:
            why = f" (needed for {'ws10' if var in ('u10', 'v10') else 't2m height correction'})"
            raise VerifyInputError(
                f"forecast {name!r} lacks variable {var!r}"
                f"{why if var not in variables else ''}; it has {sorted(map(str, ds.data_vars))}"
            )


def utc_index(values: np.ndarray | pd.Index) -> pd.DatetimeIndex:
    """Times as a tz-aware UTC index (forecast stores hold naive UTC datetime64)."""
    idx = pd.DatetimeIndex(values)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    return idx.as_unit("ns")


def _field(ds: xr.Dataset, var: str) -> np.ndarray:
    return np.asarray(ds[var].transpose("init_time", "lead_time", "lat", "lon").values)


def forecast_at_stations(
    ds: xr.Dataset,
    weights: BilinearWeights,
    stations: Stations,
    variables: Sequence[str],
    lapse_rate_k_per_km: float,
) -> dict[str, np.ndarray]:
    """Each variable at each station: arrays ``[init, lead, station]``.

    ``ds`` is one chunk of initialisations; only that chunk is loaded.
    """
    out: dict[str, np.ndarray] = {}
    for var in variables:
        if var == "ws10":
            out[var] = np.hypot(weights.apply(_field(ds, "u10")), weights.apply(_field(ds, "v10")))
        elif var == "t2m" and lapse_rate_k_per_km > 0:
            orog = weights.apply(np.asarray(ds["orography"].transpose("lat", "lon").values))
            # Station above the model surface → colder: T_st = T_grid − Γ (z_st − z_grid).
            correction = -lapse_rate_k_per_km / 1000.0 * (stations.elevation - orog)
            out[var] = weights.apply(_field(ds, var)) + correction
        elif var in SUPPORTED_VARIABLES:
            out[var] = weights.apply(_field(ds, var))
        else:
            raise VerifyInputError(f"cannot produce {var!r} at stations")
    return out


# --------------------------------------------------------------------------- observations


def _check_obs(obs: pd.DataFrame, what: str) -> None:
    missing = [c for c in OBS_COLUMNS if c not in obs.columns]
    if missing:
        raise VerifyInputError(f"{what} lacks column(s) {missing}; has {list(obs.columns)}")
    if len(obs) and getattr(obs["time"].dtype, "tz", None) is None:
        raise VerifyInputError(f"{what}: column 'time' must be tz-aware UTC (observation store)")


def _derive_ws10(obs: pd.DataFrame) -> pd.DataFrame:
    """ws10 rows from u10/v10 pairs of the same report, for reports that lack ws10."""
    key = (
        ["report_id", "station_id", "time"]
        if "report_id" in obs.columns
        else ["station_id", "time"]
    )
    uv = obs[obs["variable"].isin(["u10", "v10"])]
    if uv.empty:
        return uv.assign(variable=pd.Series(dtype=str))
    wide = uv.pivot_table(index=key, columns="variable", values="value", aggfunc="mean")
    if not {"u10", "v10"} <= set(wide.columns):
        return uv.iloc[0:0]
    have = obs.loc[obs["variable"] == "ws10", key].drop_duplicates()
    wide = wide.reset_index()
    if len(have):
        flag = wide.merge(have.assign(_has=True), on=key, how="left")["_has"]
        wide = wide[flag.isna().to_numpy()]
    speed = np.hypot(wide["u10"].to_numpy(), wide["v10"].to_numpy())
    return wide[key].assign(variable="ws10", value=speed)


def prepare_obs(
    obs: pd.DataFrame, variables: Sequence[str], station_ids: Iterable[str], what: str
) -> dict[str, pd.DataFrame]:
    """Per variable: (station_id, time, value) sorted by time, duplicates averaged."""
    _check_obs(obs, what)
    obs = obs[obs["station_id"].isin({str(s) for s in station_ids})]
    if "ws10" in variables:
        obs = pd.concat([obs, _derive_ws10(obs)], ignore_index=True)
    out: dict[str, pd.DataFrame] = {}
    for var in variables:
        rows = obs.loc[obs["variable"] == var, ["station_id", "time", "value"]]
        rows = rows.assign(time=rows["time"].dt.tz_convert("UTC").dt.as_unit("ns"))
        rows = rows[np.isfinite(rows["value"].to_numpy(dtype=np.float64))]
        rows = rows.groupby(["station_id", "time"], as_index=False)["value"].mean()
        out[var] = rows.sort_values("time", kind="stable").reset_index(drop=True)
    return out


def time_window(rows: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Rows with start <= time <= end of a time-sorted frame (binary search, no scan)."""
    times = rows["time"]
    lo = int(times.searchsorted(start, side="left"))
    hi = int(times.searchsorted(end, side="right"))
    return rows.iloc[lo:hi]


def match_obs(
    rows: pd.DataFrame, stations: Stations, targets: pd.DatetimeIndex, tolerance: pd.Timedelta
) -> np.ndarray:
    """The observation nearest each target time at each station: ``[target, station]``.

    NaN where no report lies within ``tolerance``. ``rows`` is one variable from
    :func:`prepare_obs` (sorted by time).
    """
    n_t, n_s = targets.size, len(stations)
    out = np.full(n_t * n_s, np.nan)
    if rows.empty or n_t == 0:
        return out.reshape(n_t, n_s)
    left = pd.DataFrame(
        {
            "time": np.repeat(targets.as_unit("ns"), n_s),
            "station_id": np.tile(stations.ids, n_t),
            "pos": np.arange(n_t * n_s),
        }
    ).sort_values("time", kind="stable")
    right = rows.rename(columns={"value": "_obs"})
    matched = pd.merge_asof(
        left, right, on="time", by="station_id", tolerance=tolerance, direction="nearest"
    )
    out[matched["pos"].to_numpy()] = matched["_obs"].to_numpy(dtype=np.float64)
    return out.reshape(n_t, n_s)


def valid_times(inits: pd.DatetimeIndex, leads: np.ndarray) -> np.ndarray:
    """Valid times ``[init, lead]`` as datetime64[ns] (UTC)."""
    init64 = inits.tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[ns]")
    return init64[:, None] + np.asarray(leads, dtype="timedelta64[h]")[None, :].astype(
        "timedelta64[ns]"
    )
