"""Scoring by streaming: one initialisation's fields at a time, reduced into accumulators.

A year of forecasts (730 initialisations × 13 leads × a 0.25° grid) is terabytes of fields, so
nothing here holds more than one (initialisation, lead) field set per system: each is read,
interpolated to the stations and dropped. What stays is per station — the station values of a
chunk of initialisations (``[init, lead, station]``), the observation rows of the chunk's time
window, and the accumulators' running sums — so peak memory is

    one field set (variables × lat × lon × 8 bytes) per system
    + chunk × leads × stations × (systems + 1) × 8 bytes per variable
    + the accumulators (systems × leads × stations × a few sums per variable),

independent of the number of initialisations. With an analysis (``stratocast.verify.gridded``)
the chunk is read initialisation by initialisation and each field set is also scored on the
grid before it is dropped, adding one initialisation's analysis fields to the peak.
Forecasts come from a :class:`ForecastSource` (an xarray/Zarr store read lazily, or a
generator in the benchmark), observations from an :class:`ObsProvider` asked only for each
chunk's time window.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import xarray as xr

from stratocast.verify.baselines import Climatology, persistence
from stratocast.verify.config import CLIMATOLOGY, PERSISTENCE, PRECIP_HOURS, VerifyConfig
from stratocast.verify.gridded import GriddedScorer, check_field_finite
from stratocast.verify.matching import (
    BilinearWeights,
    Stations,
    VerifyInputError,
    bilinear_weights,
    derive_at_stations,
    match_obs,
    precip_from_accumulation,
    required_forecast_variables,
    time_window,
    utc_index,
    valid_times,
    wrap_degrees,
)
from stratocast.verify.metrics_base import check_rows_finite
from stratocast.verify.metrics_continuous import CIRCULAR_VARIABLES
from stratocast.verify.metrics_ensemble import MissingMembers


class Accumulator(Protocol):
    """What the stream needs of a score accumulator (additive running sums)."""

    def update(
        self,
        variable: str,
        obs: np.ndarray,
        systems: Mapping[str, np.ndarray],
        valid: np.ndarray,
        ensembles: Mapping[str, np.ndarray] | None = None,
    ) -> None: ...


class ForecastSource(Protocol):
    """A gridded forecast, readable one (initialisation, lead) at a time."""

    lat: np.ndarray
    lon: np.ndarray
    init_times: pd.DatetimeIndex  # UTC
    lead_hours: np.ndarray
    variables: frozenset[str]  # store fields, orography included
    members: int  # ensemble members; 0 for a deterministic forecast

    def orography(self) -> np.ndarray:
        """Model surface height [lat, lon] in m."""
        ...

    def read(self, init_pos: int, lead_pos: int, variables: Sequence[str]) -> dict[str, np.ndarray]:
        """The fields ``variables`` [lat, lon] (``[member, lat, lon]`` for an ensemble) of one
        initialisation and lead."""
        ...


class ObsProvider(Protocol):
    """Observations per variable, asked for one time window at a time."""

    def variables(self) -> set[str]:
        """Variables with at least one observation."""
        ...

    def window(self, variable: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """(station_id, time, value) with start <= time <= end, sorted by time (UTC, ns)."""
        ...


# --------------------------------------------------------------------------- sources


#: Dimension of ensemble members in a forecast store.
MEMBER_DIM = "member"


def lead_hours_of(ds: xr.Dataset) -> np.ndarray:
    lead = ds["lead_time"].to_numpy()
    if lead.dtype.kind == "m":  # tolerate timedelta leads from writers that decode them
        return (lead / np.timedelta64(1, "h")).astype(np.int64)
    return lead.astype(np.int64)


class XarraySource:
    """A forecast Dataset ``(init_time, lead_time, [member,] lat, lon)``; lazily backed ones
    (Zarr opened with ``chunks=None``) read only the requested (init, lead) chunk."""

    def __init__(self, ds: xr.Dataset) -> None:
        self.ds = ds
        self.lat = np.asarray(ds["lat"].to_numpy(), dtype=np.float64)
        self.lon = np.asarray(ds["lon"].to_numpy(), dtype=np.float64)
        self.init_times = utc_index(ds["init_time"].to_numpy())
        self.lead_hours = lead_hours_of(ds)
        self.variables = frozenset(map(str, ds.variables))
        self.members = int(ds.sizes.get(MEMBER_DIM, 0))
        self._dims = (MEMBER_DIM, "lat", "lon") if self.members else ("lat", "lon")

    def orography(self) -> np.ndarray:
        return np.asarray(self.ds["orography"].transpose("lat", "lon").values, dtype=np.float64)

    def read(self, init_pos: int, lead_pos: int, variables: Sequence[str]) -> dict[str, np.ndarray]:
        part = self.ds[list(variables)].isel(init_time=init_pos, lead_time=lead_pos)
        return {v: np.asarray(part[v].transpose(*self._dims).values) for v in variables}


class InMemoryObs:
    """Observation rows already prepared per variable (:func:`prepare_obs`)."""

    def __init__(self, rows: Mapping[str, pd.DataFrame]) -> None:
        self.rows = dict(rows)

    def variables(self) -> set[str]:
        return {v for v, r in self.rows.items() if len(r)}

    def window(self, variable: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        rows = self.rows.get(variable)
        if rows is None:
            return pd.DataFrame({"station_id": [], "time": [], "value": []})
        return time_window(rows, start, end)


@dataclass(frozen=True)
class ObsInputs:
    """Observations of the verification and climatology periods, and where they are."""

    obs: ObsProvider
    climatology: ObsProvider
    stations: Stations
    n_requested: int
    description: str  # the station set, for the report


# --------------------------------------------------------------------------- time axes


@dataclass(frozen=True)
class TimeAxes:
    """Initialisations and leads every system has, and where each system keeps them."""

    inits: pd.DatetimeIndex  # UTC
    leads: np.ndarray  # hours
    init_pos: dict[str, np.ndarray]
    lead_pos: dict[str, np.ndarray]


def common_time_axes(sources: Mapping[str, ForecastSource], cfg: VerifyConfig) -> TimeAxes:
    """Intersect init and lead times across systems, then apply the config's selections."""
    inits = pd.DatetimeIndex(
        sorted(set.intersection(*(set(s.init_times) for s in sources.values())))
    )
    inits = inits[np.isin(inits.hour, cfg.init_hours)]
    leads = np.array(
        sorted(set.intersection(*(set(s.lead_hours.tolist()) for s in sources.values())))
    )
    if cfg.lead_hours is not None:
        absent = sorted(set(cfg.lead_hours) - set(leads.tolist()))
        if absent:
            raise VerifyInputError(f"lead hours {absent} are not in every forecast store")
        leads = np.array(sorted(set(cfg.lead_hours)))
    elif leads.size:
        leads = leads[leads % cfg.lead_step_hours == 0]
    if inits.empty or leads.size == 0:
        raise VerifyInputError(
            f"no initialisation (at UTC hours {cfg.init_hours}) and lead time (every "
            f"{cfg.lead_step_hours} h) common to all forecasts {list(sources)}"
        )
    return TimeAxes(
        inits=inits,
        leads=leads.astype(np.int64),
        init_pos={n: s.init_times.get_indexer(inits) for n, s in sources.items()},
        lead_pos={n: pd.Index(s.lead_hours).get_indexer(leads) for n, s in sources.items()},
    )


def chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


# --------------------------------------------------------------------------- streaming


@dataclass(frozen=True)
class _System:
    """What one forecast system needs per chunk, worked out once."""

    source: ForecastSource
    weights: BilinearWeights
    fields: list[str]  # store fields read per (init, lead), orography excluded
    orography: np.ndarray | None  # at the stations
    read_leads: np.ndarray  # hours read per init: scored leads and precipitation starts
    read_pos: np.ndarray  # their positions in the source


def _system(
    source: ForecastSource,
    stations: Stations,
    axes_leads: np.ndarray,
    cfg: VerifyConfig,
    variables: Sequence[str],
    extra_fields: Sequence[str] = (),
) -> _System:
    need = required_forecast_variables(variables, cfg.lapse_rate, source.variables)
    need = list(dict.fromkeys([*need, *extra_fields]))
    weights = bilinear_weights(source.lat, source.lon, stations.lat, stations.lon)
    orog = None
    if "orography" in need:
        height = np.asarray(source.orography(), dtype=np.float64)
        check_field_finite(height, source.lat, source.lon, "forecast orography")
        orog = weights.apply(height)
    leads = set(axes_leads.tolist())
    if "tp" in need:  # accumulations: also read the start of each period
        store = set(source.lead_hours.tolist())
        for var in variables:
            if var in PRECIP_HOURS and var not in source.variables:
                leads |= {h - PRECIP_HOURS[var] for h in axes_leads} & store
    read_leads = np.array(sorted(leads), dtype=np.int64)
    return _System(
        source=source,
        weights=weights,
        fields=[f for f in need if f != "orography"],
        orography=orog,
        read_leads=read_leads,
        read_pos=pd.Index(source.lead_hours).get_indexer(read_leads),
    )


@dataclass(frozen=True)
class StreamPlan:
    """Everything the stream needs, built once before the initialisations flow."""

    systems: dict[str, _System]
    axes: TimeAxes
    stations: Stations
    variables: list[str]
    baselines: list[str]
    climatologies: dict[str, Climatology]
    cfg: VerifyConfig


def plan_stream(
    sources: Mapping[str, ForecastSource],
    stations: Stations,
    variables: Sequence[str],
    cfg: VerifyConfig,
    climatology_obs: ObsProvider | None = None,
    climatology_period: tuple[pd.Timestamp, pd.Timestamp] | None = None,
    *,
    gridded_fields: Sequence[str] = (),
) -> StreamPlan:
    """Interpolation weights, read plans and fitted climatologies for :func:`score_stream`;
    ``gridded_fields`` are read besides the station variables' for gridded scores."""
    axes = common_time_axes(sources, cfg)
    systems = {
        n: _system(s, stations, axes.leads, cfg, variables, gridded_fields)
        for n, s in sources.items()
    }
    climatologies: dict[str, Climatology] = {}
    if CLIMATOLOGY in cfg.baselines:
        if climatology_obs is None or climatology_period is None:
            raise VerifyInputError("the climatology baseline needs climatology observations")
        start, end = climatology_period
        for var in variables:
            rows = climatology_obs.window(var, start, end)
            rows = rows[rows["time"] < end]  # the period is half-open: [start, end)
            check_rows_finite(rows, var, "climatology observations")
            climatologies[var] = Climatology.fit(rows, stations, cfg.climatology_min_samples)
    return StreamPlan(
        systems, axes, stations, list(variables), list(cfg.baselines), climatologies, cfg
    )


def _allocate(plan: StreamPlan, sys: _System, n_inits: int) -> dict[str, np.ndarray]:
    members = (sys.source.members,) if sys.source.members else ()
    shape = (n_inits, sys.read_leads.size, *members, len(plan.stations))
    return {f: np.empty(shape) for f in sys.fields}


def _read_init(
    name: str,
    sys: _System,
    init_pos: int,
    raw: dict[str, np.ndarray],
    i: int,
    gridded: GriddedScorer | None,
) -> None:
    """One initialisation of one system: every read lead interpolated into ``raw[:, i]``,
    and scored on the grid while its fields are in memory. A field holding ±inf is refused
    here, named by system, field, initialisation, lead and grid point: interpolated or
    derived (a direction, an accumulation difference) it would turn into NaN and be dropped
    as missing without a word."""
    src = sys.source
    for j, lp in enumerate(sys.read_pos):
        fields = src.read(init_pos, int(lp), sys.fields)
        for f in sys.fields:
            values = fields[f]
            what = (
                f"forecast {name!r}, {f}, init {src.init_times[init_pos]}, "
                f"lead {int(src.lead_hours[int(lp)])} h"
            )
            check_field_finite(values, src.lat, src.lon, what)
            raw[f][i, j] = sys.weights.apply(values)
        if gridded is not None:
            gridded.update(name, int(sys.read_leads[j]), fields)
        del fields  # the only full fields alive: one (init, lead) of one system


def _station_values(
    plan: StreamPlan, sys: _System, raw: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """variable → ``[init, lead, station]`` (``[init, lead, member, station]`` for an
    ensemble) from the stations' interpolated fields ``raw``."""
    scored = pd.Index(sys.read_leads).get_indexer(plan.axes.leads)
    at_leads = {f: a[:, scored] for f, a in raw.items()}
    if sys.orography is not None:
        at_leads["orography"] = sys.orography
    out = {}
    for var in plan.variables:
        if var in PRECIP_HOURS and var not in sys.fields:
            out[var] = precip_from_accumulation(
                raw["tp"], sys.read_leads, plan.axes.leads, PRECIP_HOURS[var]
            )
        else:
            out[var] = derive_at_stations(at_leads, var, plan.stations, plan.cfg.lapse_rate)
    return out


def ensemble_mean(
    members: np.ndarray, variable: str, missing_members: MissingMembers = "drop_pair"
) -> np.ndarray:
    """The deterministic value of an ensemble ``[..., member]``: the member mean, or for a
    direction the direction of the mean unit vector (the plain mean of 350° and 10° is 180°).

    ``missing_members`` "drop_pair": NaN where any member is NaN, so the common mask also
    covers every member. "finite" (the ``scores`` convention): the mean of the finite
    members, NaN where fewer than 2 are finite (as the ensemble scores then skip the pair).
    """
    finite = np.isfinite(members)
    count = finite.sum(axis=-1)
    if missing_members == "drop_pair":
        usable, x = count == members.shape[-1], members
    else:
        usable, x = count >= 2, np.where(finite, members, 0.0)
    n = np.maximum(count, 1) if missing_members == "finite" else members.shape[-1]
    with np.errstate(invalid="ignore"):
        if variable in CIRCULAR_VARIABLES:
            rad = np.deg2rad(x)
            sin = np.where(finite, np.sin(rad), 0.0).sum(axis=-1) / n
            cos = np.where(finite, np.cos(rad), 0.0).sum(axis=-1) / n
            mean = np.mod(np.degrees(np.arctan2(sin, cos)), 360.0)
        else:
            mean = x.sum(axis=-1) / n
    return np.asarray(np.where(usable, mean, np.nan))


def _read_chunk(
    plan: StreamPlan, chunk: slice, gridded: GriddedScorer | None
) -> dict[str, dict[str, np.ndarray]]:
    """Every system's station values for the chunk, read initialisation by initialisation
    so the gridded scorer holds one initialisation's analysis at a time."""
    inits = plan.axes.inits[chunk]
    raw = {name: _allocate(plan, sys, inits.size) for name, sys in plan.systems.items()}
    for i, init in enumerate(inits):
        if gridded is not None:
            gridded.begin_init(init)
        for name, sys in plan.systems.items():
            pos = int(plan.axes.init_pos[name][chunk][i])
            _read_init(name, sys, pos, raw[name], i, gridded)
        if gridded is not None:
            gridded.end_init()
    return {name: _station_values(plan, sys, raw[name]) for name, sys in plan.systems.items()}


def score_chunk(
    plan: StreamPlan,
    acc: Accumulator,
    obs: ObsProvider,
    chunk: slice,
    gridded: GriddedScorer | None = None,
) -> None:
    """Read, interpolate, match and accumulate one chunk of initialisations (and score the
    fields against the analysis when ``gridded`` is given)."""
    tol = pd.Timedelta(minutes=plan.cfg.match_tolerance_minutes)
    inits, leads, stations = plan.axes.inits[chunk], plan.axes.leads, plan.stations
    valid = valid_times(inits, leads)  # [init, lead]
    targets = utc_index(valid.ravel())
    start, end = inits.min() - tol, targets.max() + tol
    models = _read_chunk(plan, chunk, gridded)
    shape = (inits.size, leads.size, len(stations))
    for var in plan.variables:
        rows = obs.window(var, start, end)
        check_rows_finite(rows, var, "observations")
        observed = match_obs(rows, stations, targets, tol).reshape(shape)
        systems: dict[str, np.ndarray] = {}
        ensembles: dict[str, np.ndarray] = {}
        for name, sys in plan.systems.items():
            if sys.source.members:
                members = np.moveaxis(models[name][var], 2, -1)  # [init, lead, station, member]
                systems[name] = ensemble_mean(members, var, plan.cfg.ensemble_missing_members)
                if var not in CIRCULAR_VARIABLES:  # CRPS of an angle needs a circular CRPS
                    ensembles[name] = members
            else:
                systems[name] = models[name][var]
        if PERSISTENCE in plan.baselines:
            systems[PERSISTENCE] = persistence(rows, stations, inits, leads.size, tol)
        if CLIMATOLOGY in plan.baselines:
            systems[CLIMATOLOGY] = plan.climatologies[var].predict(valid)
        if var == "wd10":
            # Directions: the error is the wrapped angle, so forecast = obs + wrapped error.
            systems = {n: observed + wrap_degrees(v - observed) for n, v in systems.items()}
        acc.update(var, observed, systems, valid, ensembles)


def score_stream(
    plan: StreamPlan,
    acc: Accumulator,
    obs: ObsProvider,
    on_chunk: Callable[[int, int], None] | None = None,
    *,
    gridded: GriddedScorer | None = None,
) -> Accumulator:
    """Stream every chunk of initialisations through ``acc`` (and ``gridded``);
    ``on_chunk(done, total)``."""
    parts = list(chunks(plan.axes.inits.size, plan.cfg.init_chunk_size))
    for k, chunk in enumerate(parts):
        score_chunk(plan, acc, obs, chunk, gridded)
        if on_chunk is not None:
            on_chunk(k + 1, len(parts))
    return acc
