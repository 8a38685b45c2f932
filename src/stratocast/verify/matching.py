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

d2m is not height-corrected (the dewpoint lapse rate, about 2 K/km, depends on moisture; the
6.5 K/km of temperature would be wrong for it). sp is moved from the model orography to the
station elevation hypsometrically, p_st = p_grid exp(−g Δz / (R_d T)), with T the forecast's
t2m at the stations when it has one, else 288.15 K. wd10 is the direction the interpolated
(u10, v10) blows from (degrees, 0/360 = north); its errors are wrapped to [−180, 180). Total
cloud ``tcc`` is a fraction 0..1. Precipitation ``tp<N>h`` over the N hours before the valid
time is taken from a forecast field of that name, else from the accumulation ``tp`` (since
initialisation) as tp(L) − tp(L − N); zero at L − N = 0; missing when lead L − N is not stored.

Observation → valid time: the nearest report of the station within the tolerance; reports at
exactly the same time are averaged first. A calm (ws10 = 0) has no direction: wd10 reported
with a zero speed at the same station and time is not scored.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from stratocast.errors import StratocastError
from stratocast.grid.interp import BilinearWeights, bilinear_weights
from stratocast.verify.config import PRECIP_HOURS, SUPPORTED_VARIABLES
from stratocast.verify.metrics_base import check_rows_finite

__all__ = ["BilinearWeights", "bilinear_weights"]  # re-exported: the stage's public API


class VerifyInputError(StratocastError, ValueError):
    """A forecast or observation input does not meet the verification stage's contract."""


#: Dimensions every forecast store has (an ensemble has ``member`` besides).
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


#: Hypsometric constants: gravity (m s-2), gas constant of dry air (J kg-1 K-1), and the
#: temperature used when the forecast has no t2m.
GRAVITY = 9.80665
R_DRY = 287.05
T_STANDARD = 288.15


def _recipe(var: str, available: Collection[str], lapse_rate: float) -> list[str]:
    """Forecast store fields that produce ``var`` at stations, given what the store has."""
    if var in ("ws10", "wd10"):
        return ["u10", "v10"]
    if var in PRECIP_HOURS:
        return [var] if var in available else ["tp"]
    need = [var]
    if (var == "t2m" and lapse_rate > 0) or var == "sp":
        need.append("orography")
    return need


def required_forecast_variables(
    variables: Sequence[str], lapse_rate: float, available: Collection[str] = ()
) -> list[str]:
    """Forecast store variables needed to produce ``variables`` at stations."""
    need: list[str] = []
    for var in variables:
        need += _recipe(var, available, lapse_rate)
    if "sp" in variables and "t2m" in available:
        need.append("t2m")  # the hypsometric temperature, when the forecast has it
    return list(dict.fromkeys(need))


def missing_forecast_variable(name: str, ds: xr.Dataset, var: str, lapse_rate: float) -> str | None:
    """Why forecast ``name`` cannot produce ``var`` at stations, or None when it can."""
    have = set(map(str, ds.variables))
    for raw in _recipe(var, have, lapse_rate):
        if raw in have:
            continue
        why = ""
        if raw != var:
            purpose = "t2m height correction" if var == "t2m" else var
            purpose = "sp height correction" if var == "sp" else purpose
            why = f" (needed for {purpose})"
        if var in PRECIP_HOURS:
            why = f" (nor {var!r}, needed for {var})"
        has = sorted(map(str, ds.data_vars))
        return f"forecast {name!r} lacks variable {raw!r}{why}; it has {has}"
    return None


def check_forecast(name: str, ds: xr.Dataset, variables: Sequence[str], lapse_rate: float) -> None:
    """Raise naming the forecast system and what is missing, before any work is done."""
    missing_dims = [d for d in FORECAST_DIMS if d not in ds.dims]
    if missing_dims:
        raise VerifyInputError(
            f"forecast {name!r} lacks dimension(s) {missing_dims}; dims are {list(ds.dims)}"
        )
    for var in variables:
        problem = missing_forecast_variable(name, ds, var, lapse_rate)
        if problem:
            raise VerifyInputError(problem)


def utc_index(values: np.ndarray | pd.Index) -> pd.DatetimeIndex:
    """Times as a tz-aware UTC index (forecast stores hold naive UTC datetime64)."""
    idx = pd.DatetimeIndex(values)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    return idx.as_unit("ns")


def _field(ds: xr.Dataset, var: str) -> np.ndarray:
    return np.asarray(ds[var].transpose("init_time", "lead_time", "lat", "lon").values)


def wind_direction(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Direction the wind blows from, degrees in [0, 360) (0 = north); NaN for calm."""
    with np.errstate(invalid="ignore"):
        direction = np.mod(270.0 - np.degrees(np.arctan2(v, u)), 360.0)
    return np.where(np.hypot(u, v) > 0.0, direction, np.nan)


def wrap_degrees(diff: np.ndarray) -> np.ndarray:
    """An angle difference wrapped to [−180, 180): 350° vs 10° is −20°, not 340°."""
    return np.mod(np.asarray(diff) + 180.0, 360.0) - 180.0


def derive_at_stations(
    raw: Mapping[str, np.ndarray],
    var: str,
    stations: Stations,
    lapse_rate_k_per_km: float,
) -> np.ndarray:
    """``var`` at stations from interpolated store fields ``raw`` (``[..., station]``).

    Components are interpolated before speed and direction are taken (the model's wind is a
    vector field); height corrections use the interpolated orography ``raw['orography']``.
    Precipitation is not handled here (it needs two leads: see :func:`precip_from_accumulation`).
    """
    if var == "ws10":
        return np.hypot(raw["u10"], raw["v10"])
    if var == "wd10":
        return wind_direction(raw["u10"], raw["v10"])
    if var == "t2m" and lapse_rate_k_per_km > 0:
        # Station above the model surface → colder: T_st = T_grid − Γ (z_st − z_grid).
        dz = stations.elevation - raw["orography"]
        return raw["t2m"] - lapse_rate_k_per_km / 1000.0 * dz
    if var == "sp":
        dz = stations.elevation - raw["orography"]
        temp = raw.get("t2m", T_STANDARD)
        return raw["sp"] * np.exp(-GRAVITY * dz / (R_DRY * temp))
    if var in SUPPORTED_VARIABLES and var in raw:
        return np.asarray(raw[var], dtype=np.float64)
    raise VerifyInputError(f"cannot produce {var!r} at stations from {sorted(raw)}")


def precip_from_accumulation(
    tp: np.ndarray, leads_in: np.ndarray, leads_out: np.ndarray, hours: int
) -> np.ndarray:
    """``tp(L) − tp(L − hours)`` for each L in ``leads_out``: ``[init, lead_out, ...]``.

    ``tp`` is accumulated since initialisation at ``leads_in`` (``[init, lead_in, station]``);
    at lead 0 it is zero whether stored or not; a missing L − hours gives NaN.
    """
    pos = {int(h): i for i, h in enumerate(leads_in)}
    out = np.full((tp.shape[0], len(leads_out), *tp.shape[2:]), np.nan)
    for j, lead in enumerate(leads_out):
        start, end = int(lead) - hours, int(lead)
        if start < 0 or end not in pos:
            continue
        if start in pos:
            out[:, j] = tp[:, pos[end]] - tp[:, pos[start]]
        elif start == 0:
            out[:, j] = tp[:, pos[end]]
    return out


def forecast_at_stations(
    ds: xr.Dataset,
    weights: BilinearWeights,
    stations: Stations,
    variables: Sequence[str],
    lapse_rate_k_per_km: float,
) -> dict[str, np.ndarray]:
    """Each variable at each station: arrays ``[init, lead, station]``.

    ``ds`` is one chunk of initialisations; only that chunk is loaded. Precipitation from an
    accumulation needs :func:`precip_from_accumulation` over the store's leads instead.
    """
    have = set(map(str, ds.variables))
    need = required_forecast_variables(variables, lapse_rate_k_per_km, have)
    raw: dict[str, np.ndarray] = {}
    for name in need:
        if name == "orography":
            raw[name] = weights.apply(np.asarray(ds[name].transpose("lat", "lon").values))
        elif name in have:
            raw[name] = weights.apply(_field(ds, name))
    out: dict[str, np.ndarray] = {}
    for var in variables:
        if var not in SUPPORTED_VARIABLES:
            raise VerifyInputError(f"cannot produce {var!r} at stations")
        out[var] = derive_at_stations(raw, var, stations, lapse_rate_k_per_km)
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
        if var == "wd10":
            rows = _drop_calm(rows, obs)
        rows = rows.assign(time=rows["time"].dt.tz_convert("UTC").dt.as_unit("ns"))
        # ±inf is a decoding or unit error upstream, not a missing value: refuse it by name
        check_rows_finite(rows, var, what)
        rows = rows[np.isfinite(rows["value"].to_numpy(dtype=np.float64))]
        rows = rows.groupby(["station_id", "time"], as_index=False)["value"].mean()
        out[var] = rows.sort_values("time", kind="stable").reset_index(drop=True)
    return out


def _drop_calm(direction: pd.DataFrame, obs: pd.DataFrame) -> pd.DataFrame:
    """wd10 rows without a zero ws10 at the same station and time (calm has no direction)."""
    calm = obs.loc[(obs["variable"] == "ws10") & (obs["value"] == 0.0), ["station_id", "time"]]
    if calm.empty:
        return direction
    flag = direction.merge(calm.drop_duplicates().assign(_calm=True), how="left")["_calm"]
    return direction[flag.isna().to_numpy()]


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
