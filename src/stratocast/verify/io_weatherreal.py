"""WeatherReal-style station observations in NetCDF, read into the observation store's form.

Conventions of the WeatherReal benchmark (Jin et al. 2024; microsoft/WeatherReal-Benchmark,
``quality_control/raw_ISD_to_hourly.py`` and ``station_merging.py``): dimensions
``station × time`` (the evaluation code calls time ``valid_time``; both are accepted), one
hourly value per station and hour; station coordinates ``lat``, ``lon``, ``elev`` (the long
names ``latitude``, ``longitude``, ``elevation`` are accepted too); variables and native units

    t, td   2 m temperature and dewpoint   °C         → t2m, d2m (K)
    sp, msl surface and MSL pressure       hPa        → sp, msl (Pa)
    ws, wd  10 m wind speed and direction  m/s, °     → ws10, wd10
    c       total cloud cover              okta 0..8  → tcc (fraction 0..1)
    raN     precipitation over N = 1, 3, 6, 12, 24 h before the time, mm → tpNh (kg m-2)

A variable with a ``units`` attribute in another known unit (K, Pa, fraction, percent) is
converted from that; an unknown unit is an error naming the file and variable. The reader gives
the same long table as :func:`stratocast.obs.store.read_observations` (source ``weatherreal``,
report id ``file:station:time``); :class:`WeatherRealObs` serves the stream one time window at
a time without loading the whole file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from stratocast.verify.matching import Stations, VerifyInputError
from stratocast.verify.metrics_base import NonFiniteError
from stratocast.verify.stream import ObsInputs

SOURCE = "weatherreal"


@dataclass(frozen=True)
class _Var:
    canonical: str
    units: str  # WeatherReal's native unit
    to_si: Callable[[np.ndarray], np.ndarray]
    from_si: Callable[[np.ndarray], np.ndarray]


def _same(x: np.ndarray) -> np.ndarray:
    return x


def _c_to_k(x: np.ndarray) -> np.ndarray:
    return x + 273.15


def _k_to_c(x: np.ndarray) -> np.ndarray:
    return x - 273.15


def _hpa_to_pa(x: np.ndarray) -> np.ndarray:
    return x * 100.0


def _pa_to_hpa(x: np.ndarray) -> np.ndarray:
    return x / 100.0


def _okta_to_fraction(x: np.ndarray) -> np.ndarray:
    return x / 8.0


def _fraction_to_okta(x: np.ndarray) -> np.ndarray:
    return x * 8.0


#: WeatherReal name → canonical name, native unit and conversions.
VARIABLES: dict[str, _Var] = {
    "t": _Var("t2m", "degC", _c_to_k, _k_to_c),
    "td": _Var("d2m", "degC", _c_to_k, _k_to_c),
    "sp": _Var("sp", "hPa", _hpa_to_pa, _pa_to_hpa),
    "msl": _Var("msl", "hPa", _hpa_to_pa, _pa_to_hpa),
    "ws": _Var("ws10", "m s-1", _same, _same),
    "wd": _Var("wd10", "degree", _same, _same),
    "c": _Var("tcc", "okta", _okta_to_fraction, _fraction_to_okta),
    **{f"ra{h}": _Var(f"tp{h}h", "mm", _same, _same) for h in (1, 3, 6, 12, 24)},
}
CANONICAL = {v.canonical: k for k, v in VARIABLES.items()}

#: Other spellings of a unit, and units other than the native one a file may declare.
_ALIASES = {
    "degC": {"degC", "°C", "C", "celsius", "deg_C", "degrees_Celsius"},
    "hPa": {"hPa", "mb", "mbar", "millibar"},
    "m s-1": {"m s-1", "m/s", "m s**-1", "meter second-1"},
    "degree": {"degree", "degrees", "deg", "°", "degrees_north", "degree_true"},
    "okta": {"okta", "oktas", "octa", "octas", "0-8"},
    "mm": {"mm", "kg m-2", "millimeter", "millimetre"},
}
_OTHER_UNITS: dict[str, dict[str, Callable[[np.ndarray], np.ndarray]]] = {
    "degC": {"K": _same, "kelvin": _same},
    "hPa": {"Pa": _same},
    "okta": {
        "1": _same,
        "fraction": _same,
        "%": lambda x: x / 100.0,
        "percent": lambda x: x / 100.0,
    },
}

_TIME_NAMES = ("time", "valid_time")
_COORDS = {"lat": ("lat", "latitude"), "lon": ("lon", "longitude"), "elev": ("elev", "elevation")}


def _converter(path: Path, name: str, da: xr.DataArray) -> Callable[[np.ndarray], np.ndarray]:
    """SI conversion of variable ``name`` given its declared units (WeatherReal's if none)."""
    spec = VARIABLES[name]
    declared = str(da.attrs.get("units", spec.units)).strip()
    if declared in _ALIASES.get(spec.units, {spec.units}):
        return spec.to_si
    other = _OTHER_UNITS.get(spec.units, {})
    if declared in other:
        return other[declared]
    raise VerifyInputError(
        f"{path}: variable {name!r} has units {declared!r}; WeatherReal's is {spec.units!r}"
        f" (also understood: {sorted(other) or 'none'})"
    )


def _coord(path: Path, ds: xr.Dataset, key: str) -> np.ndarray:
    for name in _COORDS[key]:
        if name in ds.variables:
            return np.asarray(ds[name].values, dtype=np.float64)
    raise VerifyInputError(f"{path}: no station coordinate {' or '.join(_COORDS[key])!r}")


def open_weatherreal(path: Path) -> xr.Dataset:
    """The file opened lazily, with its time dimension named ``time`` (checked, not loaded)."""
    path = Path(path)
    if not path.is_file():
        raise VerifyInputError(f"WeatherReal observation file not found: {path}")
    try:
        ds = xr.open_dataset(path)
    except (OSError, ValueError) as err:
        raise VerifyInputError(f"{path}: cannot open as NetCDF: {err}") from None
    time = next((t for t in _TIME_NAMES if t in ds.dims), None)
    if "station" not in ds.dims or time is None:
        raise VerifyInputError(
            f"{path}: a WeatherReal file has dimensions station × time (or valid_time); "
            f"this one has {dict(ds.sizes)}"
        )
    if time != "time":
        ds = ds.rename({time: "time"})
    if not any(v in ds.data_vars for v in VARIABLES):
        raise VerifyInputError(
            f"{path}: none of the WeatherReal variables {list(VARIABLES)}; has {list(ds.data_vars)}"
        )
    return ds


def stations_of(path: Path, ds: xr.Dataset, ids: Sequence[str] | None = None) -> Stations:
    """The file's stations (or those of ``ids`` it has), longitudes in [0, 360)."""
    all_ids = np.asarray(ds["station"].values).astype(str)
    keep = np.ones(all_ids.size, dtype=bool) if ids is None else np.isin(all_ids, list(ids))
    return Stations(
        ids=all_ids[keep],
        lat=_coord(path, ds, "lat")[keep],
        lon=np.mod(_coord(path, ds, "lon")[keep], 360.0),
        elevation=_coord(path, ds, "elev")[keep],
    )


class WeatherRealObs:
    """Observation provider over one WeatherReal file; reads one time window per request."""

    def __init__(self, path: Path, stations: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self.ds = open_weatherreal(self.path)
        self.stations = stations_of(self.path, self.ds, stations)
        self._station_pos = pd.Index(self.ds["station"].values.astype(str)).get_indexer(
            self.stations.ids
        )
        self._convert = {
            name: _converter(self.path, name, self.ds[name])
            for name in VARIABLES
            if name in self.ds.data_vars
        }

    def variables(self) -> set[str]:
        return {VARIABLES[n].canonical for n in self._convert if self.ds[n].notnull().any()}

    def _block(
        self, name: str, start: pd.Timestamp | None, end: pd.Timestamp | None
    ) -> xr.DataArray:
        sel = slice(_naive(start), _naive(end))
        return self.ds[name].isel(station=self._station_pos).sel(time=sel)

    def window(
        self, variable: str, start: pd.Timestamp | None, end: pd.Timestamp | None
    ) -> pd.DataFrame:
        name = CANONICAL.get(variable)
        if name is None or name not in self._convert:
            return pd.DataFrame(
                {"station_id": [], "time": pd.DatetimeIndex([], tz="UTC"), "value": []}
            )
        block = self._block(name, start, end).transpose("time", "station")
        values = self._convert[name](np.asarray(block.values, dtype=np.float64))
        if name == "wd" and "ws" in self._convert:
            # A calm has no direction (WeatherReal codes calm as wd = 0 with ws = 0).
            speed = self._block("ws", start, end).transpose("time", "station").values
            values = np.where(speed == 0.0, np.nan, values)
        times = pd.DatetimeIndex(block["time"].values).tz_localize("UTC").as_unit("ns")
        if np.isinf(values).any():
            # an infinite observation is a unit or writing error in the file, not a missing one
            ti, si = (int(i[0]) for i in np.nonzero(np.isinf(values)))
            raise NonFiniteError(
                f"{self.path}: {name} holds {int(np.isinf(values).sum())} infinite value(s), "
                f"the first at station {self.stations.ids[si]!r}, time {times[ti]}; NaN marks "
                "a missing observation"
            )
        t_idx, s_idx = np.nonzero(np.isfinite(values))
        return pd.DataFrame(
            {
                "station_id": self.stations.ids[s_idx],
                "time": times[t_idx],
                "value": values[t_idx, s_idx],
            }
        )


def _naive(ts: pd.Timestamp | None) -> pd.Timestamp | None:
    if ts is None:
        return None
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def read_weatherreal(
    path: Path,
    variables: Sequence[str] | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    stations: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The file (or a time window of it) as the observation store's long table, SI units."""
    obs = WeatherRealObs(path, stations)
    wanted = variables or [VARIABLES[n].canonical for n in obs._convert]
    meta = pd.DataFrame(
        {
            "station_id": obs.stations.ids,
            "lat": obs.stations.lat,
            "lon": obs.stations.lon,
            "elevation": obs.stations.elevation.astype(np.float32),
        }
    )
    frames = []
    for var in wanted:
        rows = obs.window(var, start, end)
        frames.append(rows.assign(variable=var))
    out = pd.concat(frames, ignore_index=True).merge(meta, on="station_id", how="left")
    out["time"] = pd.DatetimeIndex(out["time"]).tz_convert("UTC").as_unit("us")
    out["source"] = SOURCE
    out["report_id"] = (
        f"{Path(path).name}:" + out["station_id"] + ":" + out["time"].dt.strftime("%Y-%m-%dT%H:%M")
    )
    cols = ["source", "station_id", "lat", "lon", "elevation", "time", "variable", "value"]
    return out[[*cols, "report_id"]]


def write_weatherreal(obs: pd.DataFrame, path: Path) -> Path:
    """Write a long table (store form, SI) as a WeatherReal NetCDF: station × time, native
    units, station coordinates lat/lon/elev (the median of each station's reports)."""
    missing = [
        c
        for c in ("station_id", "lat", "lon", "elevation", "time", "variable", "value")
        if c not in obs.columns
    ]
    if missing:
        raise VerifyInputError(f"cannot write WeatherReal file: the table lacks {missing}")
    frame = obs[obs["variable"].isin(list(CANONICAL))]
    times = pd.DatetimeIndex(frame["time"]).tz_convert("UTC").tz_localize(None)
    frame = frame.assign(time=times)
    meta = frame.groupby("station_id")[["lat", "lon", "elevation"]].median().sort_index()
    all_times = pd.DatetimeIndex(sorted(set(times)))
    data_vars = {}
    for var, name in CANONICAL.items():
        rows = frame[frame["variable"] == var]
        if rows.empty:
            continue
        wide = rows.pivot_table(index="station_id", columns="time", values="value", aggfunc="mean")
        wide = wide.reindex(index=meta.index, columns=all_times)
        spec = VARIABLES[name]
        values = spec.from_si(wide.to_numpy(dtype=np.float64)).astype(np.float32)
        data_vars[name] = (("station", "time"), values, {"units": spec.units})
    ds = xr.Dataset(
        data_vars,
        coords={
            "station": meta.index.to_numpy(dtype=str),
            "time": all_times.to_numpy(),
            "lat": ("station", meta["lat"].to_numpy(dtype=np.float32)),
            "lon": ("station", meta["lon"].to_numpy(dtype=np.float32)),
            "elev": ("station", meta["elevation"].to_numpy(dtype=np.float32)),
        },
        attrs={"title": "WeatherReal-style station observations", "source": "stratocast"},
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path)
    return path


def weatherreal_inputs(path: Path, stations_csv: Path | None = None) -> ObsInputs:
    """Stream inputs from one file: the verification window and the climatology before it
    come from the same file (the climatology has whatever the file holds before the first
    initialisation)."""
    ids = None
    if stations_csv is not None:
        from stratocast.verify.run import read_verify_stations

        ids = read_verify_stations(stations_csv)
    obs = WeatherRealObs(path, ids)
    if len(obs.stations) == 0:
        raise VerifyInputError(f"{path}: none of the requested stations is in the file")
    where = f"role 'verify' stations of {stations_csv}" if ids else "every station"
    return ObsInputs(
        obs=obs,
        climatology=obs,
        stations=obs.stations,
        n_requested=len(ids) if ids else len(obs.stations),
        description=f"{where} in {Path(path).name}",
    )
