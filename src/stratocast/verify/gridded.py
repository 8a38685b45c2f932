"""Gridded scores against an analysis, streamed one initialisation at a time.

The analysis is a Zarr store or NetCDF file with canonical variable names and dims
``(time, lat, lon)`` on the forecast grid (the demo uses the world's truth). For every
initialisation and lead whose valid time the analysis has, each system's field updates one
:class:`~stratocast.verify.metrics_gridded.GriddedAccumulator` per (system, variable, lead):
cell-area latitude weights normalised to mean 1 (WeatherBench2's ``get_lat_weights``),
``rmse = sqrt(mean_t MSE_t)`` and ``acc = mean_t ACC_t`` (WeatherBench2). Persistence is the
analysis at initialisation, the climatology reference the climatology at the valid time. Every
system is scored on the same (initialisation, lead) set.

The ACC climatology is per (day of year, hour of day): the mean of the analysis fields at that
hour within a window of days centred on that day of year (WeatherBench2 uses 61), over a
configured period, or read from a file with dims ``(dayofyear, hour, lat, lon)``. The fitted
climatology holds one field per variable for every (day of year, hour) a scored valid time has,
so it grows with the verification period, not with the analysis record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import xarray as xr

from stratocast.verify.config import CLIMATOLOGY, PERSISTENCE, VerifyConfig
from stratocast.verify.matching import VerifyInputError, utc_index
from stratocast.verify.metrics_base import NonFiniteError
from stratocast.verify.metrics_ensemble import MissingMembers
from stratocast.verify.metrics_gridded import GriddedAccumulator

#: ``analysis`` value naming the built-in world's truth; the run's verify stage resolves it.
WORLD_TRUTH = "truth"
#: Variables scored on the grid straight from a field of that name.
GRID_FIELDS = ("t2m", "d2m", "sp", "msl", "u10", "v10", "z500", "t850")
#: Variables derived on the grid from other fields.
DERIVED = {"ws10": ("u10", "v10")}
GRIDDED_COLUMNS = ("system", "variable", "lead_hours", "rmse", "acc", "n_fields")
#: Values read per analysis block while fitting the climatology (~128 MB of float64).
_BLOCK_VALUES = 2**24

ClimKey = tuple[int, int]  # (day of year 1..366, hour of day)


def fields_for(variable: str) -> tuple[str, ...]:
    """Store fields a gridded variable is computed from."""
    return DERIVED.get(variable, (variable,))


def derive_field(fields: Mapping[str, np.ndarray], variable: str) -> np.ndarray:
    """One variable from fields ``[..., lat, lon]`` (float64)."""
    if variable == "ws10":
        return np.asarray(
            np.hypot(np.asarray(fields["u10"], np.float64), np.asarray(fields["v10"], np.float64))
        )
    return np.asarray(fields[variable], dtype=np.float64)


def grid_text(lat: np.ndarray, lon: np.ndarray) -> str:
    return (
        f"{lat.size}×{lon.size} (lat {lat[0]:g}..{lat[-1]:g}, lon {lon[0]:g}..{lon[-1]:g})"
        if lat.size and lon.size
        else f"{lat.size}×{lon.size}"
    )


def check_field_finite(values: np.ndarray, lat: np.ndarray, lon: np.ndarray, what: str) -> None:
    """Refuse a field ``[..., lat, lon]`` holding ±inf, naming ``what`` (file or system,
    variable, time) and the first such grid point by latitude and longitude.

    NaN is a missing value (that point gets weight 0); inf is an overflow or a corrupt value
    and is refused rather than scored around (metrics_base explains why).
    """
    inf = np.isinf(values)
    if not inf.any():
        return
    first = tuple(int(i) for i in np.argwhere(inf)[0])
    lead = f" {first[:-2]} of the leading axes," if len(first) > 2 else ""
    raise NonFiniteError(
        f"{what}: {int(inf.sum())} infinite value(s) of {values.size}, the first "
        f"({values[first]}) at{lead} lat {lat[first[-2]]:g}, lon {lon[first[-1]]:g}; NaN marks "
        "a missing value, an infinite one is refused"
    )


def member_mean(members: np.ndarray, missing_members: MissingMembers) -> np.ndarray:
    """Member mean of ``[member, lat, lon]``: NaN where any member is ("drop_pair"), or the
    mean of the finite members where at least 2 are ("finite", the ``scores`` convention)."""
    if missing_members == "drop_pair":
        return np.asarray(members.mean(axis=0))
    finite = np.isfinite(members)
    count = finite.sum(axis=0)
    total = np.where(finite, members, 0.0).sum(axis=0)
    return np.asarray(np.where(count >= 2, total / np.maximum(count, 1), np.nan))


def clim_key(t: pd.Timestamp) -> ClimKey:
    # Rounded to the hour: an analysis stamped 11:59:59 describes 12 UTC.
    r = t.round("h")
    return int(r.day_of_year), int(r.hour)


# --------------------------------------------------------------------------- the analysis


def _open_store(path: Path) -> xr.Dataset:
    try:
        if path.is_dir():
            meta = path / "zarr.json"
            consolidated = (path / ".zmetadata").exists() or (
                meta.exists() and '"consolidated_metadata"' in meta.read_text(errors="replace")
            )
            return xr.open_zarr(path, consolidated=consolidated, chunks=None)
        return xr.open_dataset(path, chunks=None)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        raise VerifyInputError(f"cannot open {path} as Zarr or NetCDF: {err}") from err


def _canonical_grid(ds: xr.Dataset, path: Path, what: str) -> xr.Dataset:
    """lat ascending, lon in [0, 360) ascending (lazy: no field is read)."""
    missing = [d for d in ("lat", "lon") if d not in ds.dims]
    if missing:
        raise VerifyInputError(f"{what} {path} lacks dimension(s) {missing}; has {list(ds.dims)}")
    lon = np.mod(np.asarray(ds["lon"].values, dtype=np.float64), 360.0)
    ds = ds.assign_coords(lon=lon, lat=np.asarray(ds["lat"].values, dtype=np.float64))
    return ds.sortby(["lat", "lon"])


class Analysis:
    """An analysis ``(time, lat, lon)`` read one valid time (or one block) at a time."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise VerifyInputError(f"analysis not found: {self.path}")
        ds = _open_store(self.path)
        if "time" not in ds.dims:
            raise VerifyInputError(
                f"analysis {self.path} has no 'time' dimension; dims are {list(ds.dims)}"
            )
        self.ds = _canonical_grid(ds, self.path, "analysis").sortby("time")
        self.lat = np.asarray(self.ds["lat"].values, dtype=np.float64)
        self.lon = np.asarray(self.ds["lon"].values, dtype=np.float64)
        self.times = utc_index(self.ds["time"].values)
        self.variables = frozenset(
            str(n) for n, da in self.ds.data_vars.items() if set(da.dims) == {"time", "lat", "lon"}
        )

    def position(self, t: pd.Timestamp) -> int | None:
        pos = self.times.get_indexer([t])[0]
        return None if pos < 0 else int(pos)

    def read(self, pos: int | slice, fields: Sequence[str]) -> dict[str, np.ndarray]:
        """Fields ``[lat, lon]`` at one position (``[time, lat, lon]`` for a slice)."""
        part = self.ds[list(fields)].isel(time=pos)
        dims = ("lat", "lon") if isinstance(pos, int) else ("time", "lat", "lon")
        out = {f: np.asarray(part[f].transpose(*dims).values, dtype=np.float64) for f in fields}
        for f, values in out.items():
            inf = np.isinf(values)
            if inf.any():
                # Name the first time holding inf (a block's first axis is time).
                k = pos if isinstance(pos, int) else int(np.flatnonzero(inf.any(axis=(1, 2)))[0])
                at = self.times[k if isinstance(pos, int) else range(self.times.size)[pos][k]]
                field2d = values if isinstance(pos, int) else values[k]
                what = f"analysis {self.path}, {f}, time {at}"
                check_field_finite(field2d, self.lat, self.lon, what)
        return out

    def check_grid(self, name: str, lat: np.ndarray, lon: np.ndarray) -> None:
        same = (
            lat.shape == self.lat.shape
            and lon.shape == self.lon.shape
            and np.allclose(lat, self.lat, atol=1e-6)
            and np.allclose(lon, self.lon, atol=1e-6)
        )
        if not same:
            raise VerifyInputError(
                f"analysis {self.path} is on grid {grid_text(self.lat, self.lon)} but forecast "
                f"{name!r} is on {grid_text(lat, lon)}: regrid the analysis onto the forecast "
                "grid first (stratocast.gridded.regrid)"
            )

    def describe(self) -> str:
        t0, t1 = self.times[0], self.times[-1]
        return f"{self.path} ({grid_text(self.lat, self.lon)}, {self.times.size} times {t0}–{t1})"


# --------------------------------------------------------------------------- climatology


class GriddedClimatology(Protocol):
    @property
    def description(self) -> str: ...

    def at(self, t: pd.Timestamp, variable: str) -> np.ndarray | None:
        """The climatological field at valid time ``t``; None when there is none."""
        ...


@dataclass(frozen=True)
class FittedClimatology:
    """Analysis means per (day of year, hour), for the keys the scored valid times need."""

    fields: dict[ClimKey, dict[str, np.ndarray]]
    description: str

    def at(self, t: pd.Timestamp, variable: str) -> np.ndarray | None:
        return self.fields.get(clim_key(t), {}).get(variable)


def _day_distance(a: int, b: int) -> int:
    d = abs(a - b) % 366
    return min(d, 366 - d)


def fit_climatology(
    analysis: Analysis,
    variables: Sequence[str],
    keys: set[ClimKey],
    period: tuple[pd.Timestamp, pd.Timestamp],
    window_days: int,
) -> FittedClimatology:
    """Mean of the analysis over [start, end) per (day of year, hour) for ``keys``: every
    analysis time at that hour whose day of year lies within ±window_days//2 (circular)."""
    half = window_days // 2
    feeds: dict[ClimKey, list[ClimKey]] = {}  # analysis key -> needed keys it contributes to
    for doy, hour in keys:
        for d in range(1, 367):
            if _day_distance(d, doy) <= half:
                feeds.setdefault((d, hour), []).append((doy, hour))
    grid = (analysis.lat.size, analysis.lon.size)
    sums = {k: {v: np.zeros(grid) for v in variables} for k in keys}
    counts = dict.fromkeys(keys, 0)
    start, end = period
    inside = np.flatnonzero((analysis.times >= start) & (analysis.times < end))
    needed = sorted({f for v in variables for f in fields_for(v)})
    block = max(1, _BLOCK_VALUES // max(1, analysis.lat.size * analysis.lon.size * len(needed)))
    for lo in range(0, inside.size, block):
        pos = inside[lo : lo + block]
        cube = analysis.read(slice(int(pos[0]), int(pos[-1]) + 1), needed)
        for k, p in enumerate(pos - pos[0]):
            targets = feeds.get(clim_key(analysis.times[int(pos[0]) + int(p)]), [])
            if not targets:
                continue
            one = {f: cube[f][k] for f in needed}
            for var in variables:
                value = derive_field(one, var)
                for key in targets:
                    sums[key][var] += value
            for key in targets:
                counts[key] += 1
    fields = {
        k: {v: s / counts[k] for v, s in by_var.items()}
        for k, by_var in sums.items()
        if counts[k] > 0
    }
    span = (
        f"its {inside.size} times from {analysis.times[inside[0]]} to {analysis.times[inside[-1]]}"
        if inside.size
        else f"no time (none in [{start}, {end}))"
    )
    text = (
        f"mean of the analysis per (day of year, hour of day) over {span}, days within "
        f"a {min(2 * half + 1, 366)}-day window centred on the day of year (uniform weights)"
    )
    return FittedClimatology(fields, text)


class FileClimatology:
    """A climatology file with canonical names and dims ``(dayofyear, hour, lat, lon)``."""

    def __init__(self, path: Path | str, analysis: Analysis) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise VerifyInputError(f"gridded climatology not found: {self.path}")
        ds = _canonical_grid(_open_store(self.path), self.path, "gridded climatology")
        missing = [d for d in ("dayofyear", "hour") if d not in ds.dims]
        if missing:
            raise VerifyInputError(
                f"gridded climatology {self.path} lacks dimension(s) {missing}; "
                f"has {list(ds.dims)} (expected dayofyear, hour, lat, lon)"
            )
        lat = np.asarray(ds["lat"].values, dtype=np.float64)
        lon = np.asarray(ds["lon"].values, dtype=np.float64)
        if lat.shape != analysis.lat.shape or not np.allclose(lat, analysis.lat, atol=1e-6):
            raise VerifyInputError(
                f"gridded climatology {self.path} is on grid {grid_text(lat, lon)}, the analysis "
                f"on {grid_text(analysis.lat, analysis.lon)}"
            )
        if lon.shape != analysis.lon.shape or not np.allclose(lon, analysis.lon, atol=1e-6):
            raise VerifyInputError(
                f"gridded climatology {self.path} is on grid {grid_text(lat, lon)}, the analysis "
                f"on {grid_text(analysis.lat, analysis.lon)}"
            )
        self.ds = ds
        self.lat, self.lon = lat, lon
        self.doys = pd.Index(np.asarray(ds["dayofyear"].values, dtype=np.int64))
        self.hours = pd.Index(np.asarray(ds["hour"].values, dtype=np.int64))
        self.description = f"read from {self.path} (per day of year and hour)"

    def at(self, t: pd.Timestamp, variable: str) -> np.ndarray | None:
        doy, hour = clim_key(t)
        i, j = self.doys.get_indexer([doy])[0], self.hours.get_indexer([hour])[0]
        if i < 0 or j < 0 or not all(f in self.ds for f in fields_for(variable)):
            return None
        part = self.ds[list(fields_for(variable))].isel(dayofyear=int(i), hour=int(j))
        fields = {f: np.asarray(part[f].transpose("lat", "lon").values) for f in part.data_vars}
        for f, values in fields.items():
            what = f"gridded climatology {self.path}, {f}, day of year {doy}, hour {hour}"
            check_field_finite(np.asarray(values, dtype=np.float64), self.lat, self.lon, what)
        return derive_field({str(k): v for k, v in fields.items()}, variable)


# --------------------------------------------------------------------------- scoring


@dataclass
class GriddedScorer:
    """One accumulator per (system, variable, lead); fed one initialisation at a time."""

    analysis: Analysis
    climatology: GriddedClimatology
    systems: list[str]
    variables: list[str]
    leads: np.ndarray  # hours
    baselines: list[str]
    #: How a NaN member enters the member mean (``VerifyConfig.ensemble_missing_members``).
    missing_members: MissingMembers = "drop_pair"
    accs: dict[tuple[str, str], list[GriddedAccumulator]] = field(init=False)
    _truth: dict[int, dict[str, np.ndarray]] = field(init=False, default_factory=dict)
    _clim: dict[int, dict[str, np.ndarray | None]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.accs = {
            (s, v): [GriddedAccumulator(self.analysis.lat) for _ in self.leads]
            for s in self.systems
            for v in self.variables
        }
        self._lead_index = {int(h): k for k, h in enumerate(self.leads)}

    @property
    def fields(self) -> list[str]:
        return sorted({f for v in self.variables for f in fields_for(v)})

    def _analysis_at(self, pos: int) -> dict[str, np.ndarray]:
        raw = self.analysis.read(pos, self.fields)
        return {v: derive_field(raw, v) for v in self.variables}

    def begin_init(self, init: pd.Timestamp) -> None:
        """Read the analysis (and climatology) at this initialisation's valid times, and score
        the baselines. Holds one initialisation's analysis fields until :meth:`end_init`."""
        self.end_init()
        init_pos = self.analysis.position(init)
        if PERSISTENCE in self.baselines and init_pos is None:
            return  # persistence cannot be scored, so no system is: the same set for all
        for k, hours in enumerate(self.leads):
            valid = init + pd.Timedelta(hours=int(hours))
            pos = self.analysis.position(valid)
            if pos is None:
                continue
            clim = {v: self.climatology.at(valid, v) for v in self.variables}
            if CLIMATOLOGY in self.baselines and any(c is None for c in clim.values()):
                continue
            self._truth[k] = self._analysis_at(pos)
            self._clim[k] = clim
        if PERSISTENCE in self.baselines and init_pos is not None and self._truth:
            at_init = self._analysis_at(init_pos)
            for k in self._truth:
                self._update(PERSISTENCE, k, at_init)
        if CLIMATOLOGY in self.baselines:
            for k, clim in self._clim.items():
                self._update(CLIMATOLOGY, k, {v: c for v, c in clim.items() if c is not None})

    def end_init(self) -> None:
        self._truth.clear()
        self._clim.clear()

    def update(self, system: str, lead_hours: int, fields: Mapping[str, np.ndarray]) -> None:
        """Score one system's fields ``[lat, lon]`` (``[member, lat, lon]``: the member mean)
        at one lead of the current initialisation; leads without analysis are ignored."""
        k = self._lead_index.get(int(lead_hours))
        if k is None or k not in self._truth:
            return
        values = {}
        for var in self.variables:
            value = derive_field(fields, var)
            values[var] = member_mean(value, self.missing_members) if value.ndim == 3 else value
        self._update(system, k, values)

    def _update(self, system: str, k: int, values: Mapping[str, np.ndarray]) -> None:
        for var in self.variables:
            self.accs[(system, var)][k].update(
                values[var], self._truth[k][var], self._clim[k].get(var)
            )

    def table(self) -> pd.DataFrame:
        rows = []
        for (system, var), accs in self.accs.items():
            for hours, acc in zip(self.leads, accs, strict=True):
                res = acc.result()
                rows.append(
                    {
                        "system": system,
                        "variable": var,
                        "lead_hours": int(hours),
                        "rmse": float(res["rmse"]),
                        "acc": float(res["acc"]),
                        "n_fields": int(res["n_fields"]),
                    }
                )
        return pd.DataFrame(rows, columns=list(GRIDDED_COLUMNS))


def empty_gridded_table() -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in GRIDDED_COLUMNS})


# --------------------------------------------------------------------------- setup


class GridSource(Protocol):
    lat: np.ndarray
    lon: np.ndarray
    variables: frozenset[str]


@dataclass(frozen=True)
class GriddedSetup:
    scorer: GriddedScorer
    #: What the report says: analysis, climatology, variables, conventions.
    notes: dict[str, str]
    skipped: dict[str, str]


def select_gridded_variables(
    cfg: VerifyConfig, analysis: Analysis, sources: Mapping[str, GridSource]
) -> tuple[list[str], dict[str, str]]:
    """Variables scored on the grid: ``gridded_variables``, or the station variables that the
    analysis and every forecast carry as fields (others listed with the reason)."""
    explicit = cfg.gridded_variables is not None
    candidates = cfg.gridded_variables if explicit else cfg.variables
    chosen: list[str] = []
    skipped: dict[str, str] = {}
    for var in candidates or []:
        if var not in GRID_FIELDS and var not in DERIVED:
            why = "not a gridded field"
        else:
            lacking = [
                name
                for name, have in [("the analysis", analysis.variables)]
                + [(f"forecast {n!r}", s.variables) for n, s in sources.items()]
                if not set(fields_for(var)) <= have
            ]
            why = f"{', '.join(lacking)} lack(s) {list(fields_for(var))}" if lacking else ""
        if not why:
            chosen.append(var)
        elif explicit and not cfg.skip_unavailable:
            raise VerifyInputError(f"gridded variable {var!r} cannot be scored: {why}")
        else:
            skipped[var] = why
    if not chosen:
        raise VerifyInputError(
            f"no variable can be scored against the analysis {analysis.path}: {skipped}"
        )
    return chosen, skipped


def _period(cfg: VerifyConfig, analysis: Analysis) -> tuple[pd.Timestamp, pd.Timestamp]:
    if cfg.gridded_climatology_period is None:
        return analysis.times[0], analysis.times[-1] + pd.Timedelta(1, "ns")
    start, end = (pd.Timestamp(t) for t in cfg.gridded_climatology_period)
    utc = [t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC") for t in (start, end)]
    return utc[0], utc[1]


def build_gridded(
    cfg: VerifyConfig,
    sources: Mapping[str, GridSource],
    inits: pd.DatetimeIndex,
    leads: np.ndarray,
    models: Sequence[str],
) -> GriddedSetup | None:
    """The gridded scorer for ``cfg.analysis`` (None when no analysis is configured)."""
    if cfg.analysis is None:
        return None
    if cfg.analysis == WORLD_TRUTH:
        raise VerifyInputError(
            f"analysis {WORLD_TRUTH!r} means the built-in world's truth, which only the run's "
            "verify stage resolves (stratocast verify --config ...); give a path here"
        )
    analysis = Analysis(cfg.analysis)
    for name, src in sources.items():
        analysis.check_grid(name, np.asarray(src.lat), np.asarray(src.lon))
    variables, skipped = select_gridded_variables(cfg, analysis, sources)
    valid = [i + pd.Timedelta(hours=int(h)) for i in inits for h in leads]
    scored = [t for t in valid if analysis.position(t) is not None]
    if not scored:
        raise VerifyInputError(
            f"analysis {analysis.describe()} has none of the valid times "
            f"{valid[0]}–{valid[-1]} of the forecasts"
        )
    climatology: GriddedClimatology
    if cfg.gridded_climatology is not None:
        climatology = FileClimatology(cfg.gridded_climatology, analysis)
        in_sample = ""
    else:
        period = _period(cfg, analysis)
        climatology = fit_climatology(
            analysis,
            variables,
            {clim_key(t) for t in scored},
            period,
            cfg.gridded_climatology_window_days,
        )
        overlap = period[0] <= max(scored) and min(scored) < period[1]
        in_sample = (
            "In-sample: the climatology period overlaps the verification valid times "
            f"({min(scored)}–{max(scored)}), which makes the climatology (and the ACC's "
            "anomalies) optimistic."
            if overlap
            else "Out of sample: the climatology period does not overlap the verification."
        )
    scorer = GriddedScorer(
        analysis,
        climatology,
        [*models, *cfg.baselines],
        variables,
        np.asarray(leads, dtype=np.int64),
        list(cfg.baselines),
        cfg.ensemble_missing_members,
    )
    notes = {
        "analysis": analysis.describe(),
        "climatology": f"{climatology.description}. {in_sample}".strip(),
        "variables": ", ".join(variables),
        "skipped": "; ".join(f"{v}: {why}" for v, why in skipped.items()),
    }
    return GriddedSetup(scorer, notes, skipped)
