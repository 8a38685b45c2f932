"""Stage 6 entry point: forecasts + held-out observations → scorecard, plots, HTML report."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from stratocast.verify.baselines import Climatology, persistence
from stratocast.verify.config import BASELINES, CLIMATOLOGY, PERSISTENCE, VerifyConfig
from stratocast.verify.matching import (
    BilinearWeights,
    Stations,
    VerifyInputError,
    bilinear_weights,
    check_forecast,
    forecast_at_stations,
    match_obs,
    prepare_obs,
    required_forecast_variables,
    stations_from_obs,
    time_window,
    utc_index,
    valid_times,
)
from stratocast.verify.metrics import ScoreAccumulator, systems_order
from stratocast.verify.plots import plot_rmse_vs_lead, plot_station_skill_map
from stratocast.verify.report import MaskSummary, render_report
from stratocast.verify.scorecard import rmse_table, write_scorecard

__all__ = ["VerifyConfig", "VerifyInputError", "VerifyResult", "run_verify", "verify"]

log = logging.getLogger(__name__)

#: Variables that get an RMSE-vs-lead plot when scored.
PLOTTED_VARIABLES = ("t2m", "ws10", "msl")


@dataclass(frozen=True)
class VerifyResult:
    scorecard: pd.DataFrame
    station_scores: pd.DataFrame
    report_path: Path
    plot_paths: list[Path]
    scorecard_parquet: Path
    scorecard_netcdf: Path
    attrs: dict[str, object] = field(default_factory=dict)

    def rmse_table(self) -> pd.DataFrame:
        """Tidy (system, variable, lead_hours, rmse, n) for printing."""
        return rmse_table(self.scorecard)


# --------------------------------------------------------------------------- time axes


def _lead_hours(ds: xr.Dataset) -> np.ndarray:
    lead = ds["lead_time"].to_numpy()
    if lead.dtype.kind == "m":  # tolerate timedelta leads from writers that decode them
        return (lead / np.timedelta64(1, "h")).astype(np.int64)
    return lead.astype(np.int64)


@dataclass(frozen=True)
class TimeAxes:
    """Initialisations and leads every system has, and where each system keeps them."""

    inits: pd.DatetimeIndex  # UTC
    leads: np.ndarray  # hours
    init_pos: dict[str, np.ndarray]
    lead_pos: dict[str, np.ndarray]


def common_time_axes(forecasts: Mapping[str, xr.Dataset], cfg: VerifyConfig) -> TimeAxes:
    """Intersect init and lead times across systems, then apply the config's selections."""
    init_sets = {n: utc_index(ds["init_time"].to_numpy()) for n, ds in forecasts.items()}
    lead_sets = {n: _lead_hours(ds) for n, ds in forecasts.items()}
    inits = pd.DatetimeIndex(sorted(set.intersection(*(set(i) for i in init_sets.values()))))
    inits = inits[np.isin(inits.hour, cfg.init_hours)]
    leads = np.array(sorted(set.intersection(*(set(v.tolist()) for v in lead_sets.values()))))
    if cfg.lead_hours is not None:
        absent = sorted(set(cfg.lead_hours) - set(leads.tolist()))
        if absent:
            raise VerifyInputError(f"lead hours {absent} are not in every forecast store")
        leads = np.array(sorted(set(cfg.lead_hours)))
    if inits.empty or leads.size == 0:
        raise VerifyInputError(
            f"no initialisation (at UTC hours {cfg.init_hours}) and lead time common to all "
            f"forecasts {list(forecasts)}"
        )
    return TimeAxes(
        inits=inits,
        leads=leads.astype(np.int64),
        init_pos={n: init_sets[n].get_indexer(inits) for n in forecasts},
        lead_pos={n: pd.Index(lead_sets[n]).get_indexer(leads) for n in forecasts},
    )


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


# --------------------------------------------------------------------------- verification


def _validate_systems(forecasts: Mapping[str, xr.Dataset], cfg: VerifyConfig) -> list[str]:
    if not forecasts:
        raise VerifyInputError("no forecast to verify")
    clash = [n for n in forecasts if n in BASELINES]
    if clash:
        raise VerifyInputError(f"forecast name(s) {clash} are reserved for baselines")
    systems = systems_order(list(forecasts), BASELINES)
    if cfg.skill_reference not in systems:
        raise VerifyInputError(f"skill_reference {cfg.skill_reference!r} is not in {systems}")
    for name, ds in forecasts.items():
        check_forecast(name, ds, cfg.variables, cfg.lapse_rate)
    return systems


def climatology_period(
    cfg: VerifyConfig, first_init: pd.Timestamp
) -> tuple[pd.Timestamp | None, pd.Timestamp]:
    """[start, end) of the climatology: by default everything before the first init."""
    start = _utc(cfg.climatology_start) if cfg.climatology_start else None
    end = _utc(cfg.climatology_end) if cfg.climatology_end else first_init
    return start, end


def _utc(value: object) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _fit_climatologies(
    climatology_obs: pd.DataFrame,
    stations: Stations,
    cfg: VerifyConfig,
    period: tuple[pd.Timestamp | None, pd.Timestamp],
) -> dict[str, Climatology]:
    rows = prepare_obs(climatology_obs, cfg.variables, stations.ids, "climatology observations")
    start, end = period
    out = {}
    for var, frame in rows.items():
        keep = frame["time"] < end
        if start is not None:
            keep &= frame["time"] >= start
        out[var] = Climatology.fit(frame[keep], stations, cfg.climatology_min_samples)
    return out


@dataclass(frozen=True)
class _Prepared:
    """Everything a chunk needs, built once before streaming the initialisations."""

    forecasts: Mapping[str, xr.Dataset]
    weights: Mapping[str, BilinearWeights]  # per system: systems may use different grids
    axes: TimeAxes
    stations: Stations
    obs_rows: Mapping[str, pd.DataFrame]
    climatologies: Mapping[str, Climatology]
    cfg: VerifyConfig


def _chunk_forecasts(prep: _Prepared, chunk: slice) -> dict[str, dict[str, np.ndarray]]:
    """system → variable → ``[init, lead, station]`` for one chunk of initialisations."""
    cfg, axes = prep.cfg, prep.axes
    need = required_forecast_variables(cfg.variables, cfg.lapse_rate)
    out = {}
    for name, ds in prep.forecasts.items():
        part = ds[need].isel(init_time=axes.init_pos[name][chunk], lead_time=axes.lead_pos[name])
        out[name] = forecast_at_stations(
            part.load(), prep.weights[name], prep.stations, cfg.variables, cfg.lapse_rate
        )
    return out


def _accumulate_chunk(acc: ScoreAccumulator, prep: _Prepared, chunk: slice) -> None:
    tol = pd.Timedelta(minutes=prep.cfg.match_tolerance_minutes)
    inits, leads, stations = prep.axes.inits[chunk], prep.axes.leads, prep.stations
    valid = valid_times(inits, leads)  # [init, lead]
    targets = utc_index(valid.ravel())
    start, end = inits.min() - tol, targets.max() + tol
    models = _chunk_forecasts(prep, chunk)
    shape = (inits.size, leads.size, len(stations))
    for var in prep.cfg.variables:
        rows = time_window(prep.obs_rows[var], start, end)
        obs = match_obs(rows, stations, targets, tol).reshape(shape)
        systems = {name: models[name][var] for name in prep.forecasts}
        systems[PERSISTENCE] = persistence(rows, stations, inits, leads.size, tol)
        systems[CLIMATOLOGY] = prep.climatologies[var].predict(valid)
        acc.update(var, obs, systems, valid)


def verify(
    forecasts: Mapping[str, xr.Dataset],
    obs: pd.DataFrame,
    stations: Sequence[str],
    climatology_obs: pd.DataFrame,
    cfg: VerifyConfig,
    out_dir: Path,
) -> VerifyResult:
    """Score every forecast and both baselines at the held-out ``stations``.

    ``obs`` covers the verification period, ``climatology_obs`` the climatology period
    (both in the observation store's long format). Writes the scorecard, plots and the HTML
    report into ``out_dir``.
    """
    out_dir = Path(out_dir)
    systems = _validate_systems(forecasts, cfg)
    axes = common_time_axes(forecasts, cfg)
    where = stations_from_obs([obs, climatology_obs], stations)
    obs_rows = prepare_obs(obs, cfg.variables, where.ids, "verification observations")
    period = climatology_period(cfg, axes.inits[0])
    weights = {
        name: bilinear_weights(ds["lat"].to_numpy(), ds["lon"].to_numpy(), where.lat, where.lon)
        for name, ds in forecasts.items()
    }
    prep = _Prepared(
        forecasts=forecasts,
        weights=weights,
        axes=axes,
        stations=where,
        obs_rows=obs_rows,
        climatologies=_fit_climatologies(climatology_obs, where, cfg, period),
        cfg=cfg,
    )
    acc = ScoreAccumulator(systems, list(cfg.variables), axes.leads, where.ids)
    for chunk in _chunks(axes.inits.size, cfg.init_chunk_size):
        _accumulate_chunk(acc, prep, chunk)
    mask = MaskSummary(
        n_stations_requested=len(set(stations)),
        n_stations_with_obs=len(where),
        n_inits=axes.inits.size,
        init_start=str(axes.inits[0]),
        init_end=str(axes.inits[-1]),
        init_hours=list(cfg.init_hours),
        tolerance_minutes=cfg.match_tolerance_minutes,
        lapse_rate=cfg.lapse_rate,
        climatology_period=f"[{period[0] or 'start of record'}, {period[1]})",
        climatology_min_samples=cfg.climatology_min_samples,
    )
    return _write_outputs(acc, where, mask, cfg, out_dir)


def _write_outputs(
    acc: ScoreAccumulator,
    stations: Stations,
    mask: MaskSummary,
    cfg: VerifyConfig,
    out_dir: Path,
) -> VerifyResult:
    scorecard = acc.scorecard(cfg.skill_reference)
    per_station = acc.station_scores(cfg.map_lead_hours, cfg.skill_reference)
    coords = pd.DataFrame({"station_id": stations.ids, "lat": stations.lat, "lon": stations.lon})
    per_station = per_station.merge(coords, on="station_id", how="left")
    attrs: dict[str, object] = {
        **mask.__dict__,
        "reference": cfg.skill_reference,
        "config": cfg.model_dump(mode="json"),
    }
    parquet, netcdf = write_scorecard(scorecard, attrs, out_dir)
    per_station.to_parquet(out_dir / "station_scores.parquet", index=False)
    plot_dir = out_dir / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    plots = [
        plot_rmse_vs_lead(scorecard, v, plot_dir / f"rmse_vs_lead_{v}.png")
        for v in cfg.variables
        if v in PLOTTED_VARIABLES
    ]
    plots += [
        plot_station_skill_map(per_station, v, plot_dir / f"station_skill_{v}.png")
        for v in cfg.variables
    ]
    report = render_report(
        scorecard, plots, mask, cfg.model_dump(mode="json"), out_dir / "report.html"
    )
    log.info("verification report written to %s", report)
    return VerifyResult(scorecard, per_station, report, plots, parquet, netcdf, attrs)


# --------------------------------------------------------------------------- from disk


def read_verify_stations(stations_csv: Path) -> list[str]:
    """Ids of the held-out stations (role == 'verify') of a world's stations.csv."""
    if not Path(stations_csv).is_file():
        raise VerifyInputError(f"station catalogue not found: {stations_csv}")
    table = pd.read_csv(stations_csv, dtype={"station_id": str})
    missing = [c for c in ("station_id", "role") if c not in table.columns]
    if missing:
        raise VerifyInputError(f"{stations_csv} lacks column(s) {missing}")
    ids = table.loc[table["role"] == "verify", "station_id"].astype(str).tolist()
    if not ids:
        raise VerifyInputError(f"{stations_csv} has no station with role 'verify'")
    return ids


def _store_variables(variables: Sequence[str]) -> list[str]:
    # ws10 may be stored as such or only as components; fetch both.
    extra = ["u10", "v10"] if "ws10" in variables else []
    return list(dict.fromkeys([*variables, *extra]))


def run_verify(
    forecast_paths: Mapping[str, Path],
    store_dir: Path,
    stations_csv: Path,
    cfg: VerifyConfig,
    out_dir: Path,
) -> VerifyResult:
    """Verify forecast Zarr stores against the observation store's held-out stations."""
    from stratocast.obs.store import read_observations

    for name, path in forecast_paths.items():
        if not Path(path).exists():
            raise VerifyInputError(f"forecast store {name!r} not found: {path}")
    forecasts = {
        name: xr.open_zarr(path, consolidated=False) for name, path in forecast_paths.items()
    }
    stations = read_verify_stations(stations_csv)
    axes = common_time_axes(forecasts, cfg)
    tol = pd.Timedelta(minutes=cfg.match_tolerance_minutes)
    variables = _store_variables(cfg.variables)
    # Only the held-out stations are read, so memory scales with them, not the network.
    obs = read_observations(
        store_dir,
        variables=variables,
        start=axes.inits[0] - tol,
        end=axes.inits[-1] + pd.Timedelta(hours=int(axes.leads.max())) + tol,
        stations=stations,
    )
    clim_start, clim_end = climatology_period(cfg, axes.inits[0])
    clim = read_observations(
        store_dir, variables=variables, start=clim_start, end=clim_end, stations=stations
    )
    return verify(forecasts, obs, stations, clim, cfg, out_dir)
