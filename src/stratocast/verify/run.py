"""Stage 6 entry point: forecasts + held-out observations → scorecard, plots, HTML report."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import geopandas as gp
import pandas as pd
import xarray as xr

from stratocast.verify.config import BASELINES, VerifyConfig
from stratocast.verify.gridded import GriddedSetup, build_gridded, empty_gridded_table
from stratocast.verify.matching import (
    FORECAST_DIMS,
    Stations,
    VerifyInputError,
    missing_forecast_variable,
    prepare_obs,
    stations_from_obs,
)
from stratocast.verify.metrics import ScoreAccumulator, systems_order
from stratocast.verify.plots import (
    plot_gridded_vs_lead,
    plot_region_skill,
    plot_rmse_vs_lead,
    plot_station_skill_map,
)
from stratocast.verify.regions import (
    RegionError,
    region_outlines,
    region_scores,
    resolve_ar6_file,
    station_regions,
)
from stratocast.verify.report import MaskSummary, render_report
from stratocast.verify.scorecard import rmse_table, write_scorecard
from stratocast.verify.stream import (
    ForecastSource,
    InMemoryObs,
    ObsInputs,
    TimeAxes,
    XarraySource,
    common_time_axes,
    plan_stream,
    score_stream,
)

__all__ = [
    "TimeAxes",
    "VerifyConfig",
    "VerifyInputError",
    "VerifyResult",
    "run_verify",
    "verify",
    "verify_sources",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifyResult:
    scorecard: pd.DataFrame
    station_scores: pd.DataFrame
    report_path: Path
    plot_paths: list[Path]
    scorecard_parquet: Path
    scorecard_netcdf: Path
    attrs: dict[str, object] = field(default_factory=dict)
    #: Every scorecard table by name (scores, accuracy, contingency, ensemble, regions,
    #: station_regions, significance, gridded), as written to Parquet and NetCDF.
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    def rmse_table(self) -> pd.DataFrame:
        """Tidy (system, variable, lead_hours, rmse, n) for printing."""
        return rmse_table(self.scorecard)


# --------------------------------------------------------------------------- verification


def _validate_systems(forecasts: Mapping[str, xr.Dataset], cfg: VerifyConfig) -> list[str]:
    if not forecasts:
        raise VerifyInputError("no forecast to verify")
    clash = [n for n in forecasts if n in BASELINES]
    if clash:
        raise VerifyInputError(f"forecast name(s) {clash} are reserved for baselines")
    systems = systems_order(list(forecasts), cfg.baselines)
    if cfg.skill_reference not in systems:
        raise VerifyInputError(f"skill_reference {cfg.skill_reference!r} is not in {systems}")
    for name, ds in forecasts.items():
        missing_dims = [d for d in FORECAST_DIMS if d not in ds.dims]
        if missing_dims:
            raise VerifyInputError(
                f"forecast {name!r} lacks dimension(s) {missing_dims}; dims are {list(ds.dims)}"
            )
    return systems


def select_variables(
    forecasts: Mapping[str, xr.Dataset], observed: set[str], cfg: VerifyConfig
) -> tuple[list[str], dict[str, str]]:
    """The configured variables every forecast can produce and the observations carry.

    With ``skip_unavailable`` the others are returned with the reason they are skipped;
    without it a forecast lacking one is an error (observations lacking one score nothing).
    """
    chosen: list[str] = []
    skipped: dict[str, str] = {}
    for var in cfg.variables:
        problems = [
            p
            for name, ds in forecasts.items()
            if (p := missing_forecast_variable(name, ds, var, cfg.lapse_rate))
        ]
        if problems and not cfg.skip_unavailable:
            raise VerifyInputError(problems[0])
        if problems:
            skipped[var] = "; ".join(problems)
        elif cfg.skip_unavailable and var not in observed:
            skipped[var] = "the observations have no value of it"
        else:
            chosen.append(var)
    if not chosen:
        raise VerifyInputError(f"no variable can be verified: {skipped}")
    return chosen, skipped


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


#: Start of the climatology period when none is configured: before any observation.
EARLIEST = pd.Timestamp("1800-01-01", tz="UTC")


def verify_sources(
    forecasts: Mapping[str, xr.Dataset],
    inputs: ObsInputs,
    cfg: VerifyConfig,
    out_dir: Path,
) -> VerifyResult:
    """Score every forecast and the configured baselines; write scorecard, plots, report."""
    out_dir = Path(out_dir)
    _validate_systems(forecasts, cfg)
    variables, skipped = select_variables(forecasts, inputs.obs.variables(), cfg)
    for var, why in skipped.items():
        log.warning("verification skips %s: %s", var, why)
    sources: dict[str, ForecastSource] = {n: XarraySource(ds) for n, ds in forecasts.items()}
    axes = common_time_axes(sources, cfg)
    period = climatology_period(cfg, axes.inits[0])
    gridded = build_gridded(cfg, sources, axes.inits, axes.leads, list(forecasts))
    plan = plan_stream(
        sources,
        inputs.stations,
        variables,
        cfg,
        inputs.climatology,
        (period[0] or EARLIEST, period[1]),
        gridded_fields=gridded.scorer.fields if gridded else (),
    )
    acc = ScoreAccumulator(
        systems_order(list(forecasts), cfg.baselines),
        variables,
        axes.leads,
        inputs.stations.ids,
        missing_members=cfg.ensemble_missing_members,
    )
    score_stream(plan, acc, inputs.obs, gridded=gridded.scorer if gridded else None)
    mask = MaskSummary(
        n_stations_requested=inputs.n_requested,
        n_stations_with_obs=len(inputs.stations),
        n_inits=axes.inits.size,
        init_start=str(axes.inits[0]),
        init_end=str(axes.inits[-1]),
        init_hours=list(cfg.init_hours),
        tolerance_minutes=cfg.match_tolerance_minutes,
        lapse_rate=cfg.lapse_rate,
        climatology_period=f"[{period[0] or 'start of record'}, {period[1]})",
        climatology_min_samples=cfg.climatology_min_samples,
        lead_hours=[int(h) for h in axes.leads],
        variables=variables,
        skipped=skipped,
        station_set=inputs.description,
        station_ids=[str(s) for s in inputs.stations.ids],
        gridded=gridded.notes if gridded else {},
    )
    return _write_outputs(acc, inputs.stations, mask, cfg, out_dir, list(forecasts), gridded)


def verify(
    forecasts: Mapping[str, xr.Dataset],
    obs: pd.DataFrame,
    stations: Sequence[str],
    climatology_obs: pd.DataFrame,
    cfg: VerifyConfig,
    out_dir: Path,
) -> VerifyResult:
    """Score every forecast and the baselines at the held-out ``stations``.

    ``obs`` covers the verification period, ``climatology_obs`` the climatology period
    (both in the observation store's long format). Writes the scorecard, plots and the HTML
    report into ``out_dir``.
    """
    _validate_systems(forecasts, cfg)
    where = stations_from_obs([obs, climatology_obs], stations)
    obs_rows = prepare_obs(obs, cfg.variables, where.ids, "verification observations")
    clim_rows = prepare_obs(climatology_obs, cfg.variables, where.ids, "climatology observations")
    inputs = ObsInputs(
        obs=InMemoryObs(obs_rows),
        climatology=InMemoryObs(clim_rows),
        stations=where,
        n_requested=len(set(stations)),
        description="held-out stations (role 'verify') with observations",
    )
    return verify_sources(forecasts, inputs, cfg, out_dir)


def significance_pairs(models: Sequence[str], reference: str) -> list[tuple[str, str]]:
    """Each model against the skill reference, and every two models against each other."""
    pairs = [(m, reference) for m in models if m != reference]
    for i, a in enumerate(models):
        for b in models[i + 1 :]:
            if (a, b) not in pairs and (b, a) not in pairs:
                pairs.append((a, b))
    return pairs


@dataclass(frozen=True)
class RegionSetup:
    """Station membership, the polygons to draw, and what the report says about them."""

    membership: pd.DataFrame
    outlines: gp.GeoDataFrame
    note: str


def region_setup(stations: Stations, cfg: VerifyConfig) -> RegionSetup:
    """Continents and AR6 regions (when the shapefile can be found) plus custom polygons."""
    ar6_path = None
    notes = []
    if cfg.ar6_regions:
        try:
            ar6_path = resolve_ar6_file(cfg.ar6_regions_path)
            notes.append(f"continents and AR6 land regions ({ar6_path.name})")
        except RegionError as err:
            log.warning("verification scores no AR6 region or continent: %s", err)
            notes.append(f"no AR6 regions or continents: {err}")
    if cfg.regions:
        notes.append(f"custom polygons {sorted(cfg.regions)}")
    use_ar6 = ar6_path is not None
    if not (use_ar6 or cfg.regions):
        empty = pd.DataFrame(columns=["station_id", "kind", "region"])
        return RegionSetup(empty, region_outlines(None, None), "; ".join(notes) or "none")
    membership = station_regions(
        stations.ids,
        stations.lon,
        stations.lat,
        ar6=use_ar6,
        continents=use_ar6,
        custom=cfg.regions or None,
        ar6_path=ar6_path,
    )
    return RegionSetup(membership, region_outlines(ar6_path, cfg.regions), "; ".join(notes))


def score_tables(
    acc: ScoreAccumulator,
    regions: RegionSetup,
    models: Sequence[str],
    cfg: VerifyConfig,
    gridded: GriddedSetup | None = None,
) -> dict[str, pd.DataFrame]:
    """Every table of the scorecard, all from the accumulators' sums."""
    reference = cfg.skill_reference
    return {
        "scores": acc.scorecard(reference),
        "accuracy": acc.accuracy_table(),
        "contingency": acc.contingency_table(),
        "ensemble": acc.ensemble_table(),
        "regions": region_scores(acc, regions.membership, reference),
        "station_regions": regions.membership,
        "significance": acc.significance_table(
            significance_pairs(models, reference),
            cfg.bootstrap_samples,
            cfg.bootstrap_seed,
            dm_method=cfg.dm_method,
        ),
        "gridded": gridded.scorer.table() if gridded else empty_gridded_table(),
    }


def _write_outputs(
    acc: ScoreAccumulator,
    stations: Stations,
    mask: MaskSummary,
    cfg: VerifyConfig,
    out_dir: Path,
    models: Sequence[str],
    gridded: GriddedSetup | None = None,
) -> VerifyResult:
    regions = region_setup(stations, cfg)
    mask = replace(mask, regions=regions.note)
    tables = score_tables(acc, regions, models, cfg, gridded)
    scorecard = tables["scores"]
    per_station = acc.station_scores(cfg.map_lead_hours, cfg.skill_reference)
    coords = pd.DataFrame({"station_id": stations.ids, "lat": stations.lat, "lon": stations.lon})
    per_station = per_station.merge(coords, on="station_id", how="left")
    attrs: dict[str, object] = {
        **mask.__dict__,
        "reference": cfg.skill_reference,
        "config": cfg.model_dump(mode="json"),
    }
    parquet, netcdf = write_scorecard(tables, attrs, out_dir)
    per_station.to_parquet(out_dir / "station_scores.parquet", index=False)
    plot_dir = out_dir / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    plots = [
        plot_rmse_vs_lead(scorecard, v, plot_dir / f"rmse_vs_lead_{v}.png") for v in mask.variables
    ]
    plots += [
        plot_station_skill_map(per_station, v, plot_dir / f"station_skill_{v}.png")
        for v in mask.variables
    ]
    region_plots = []
    if len(tables["regions"]):
        lead = int(per_station["lead_hours"].iloc[0])
        region_plots = [
            plot_region_skill(
                tables["regions"],
                regions.outlines,
                per_station,
                v,
                lead,
                plot_dir / f"region_skill_{v}.png",
            )
            for v in mask.variables
        ]
    grid_table = tables["gridded"]
    gridded_plots = [
        plot_gridded_vs_lead(grid_table, str(v), plot_dir / f"gridded_vs_lead_{v}.png")
        for v in dict.fromkeys(grid_table["variable"])
    ]
    report = render_report(
        scorecard,
        plots,
        mask,
        cfg.model_dump(mode="json"),
        out_dir / "report.html",
        tables=tables,
        region_plots=region_plots,
        gridded_plots=gridded_plots,
    )
    log.info("verification report written to %s", report)
    every_plot = [*plots, *region_plots, *gridded_plots]
    return VerifyResult(scorecard, per_station, report, every_plot, parquet, netcdf, attrs, tables)


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
    # ws10 may be stored as such or only as components; calm needs ws10 for wd10.
    extra = ["u10", "v10"] if "ws10" in variables else []
    extra += ["ws10"] if "wd10" in variables else []
    return list(dict.fromkeys([*variables, *extra]))


def open_forecast(name: str, path: Path) -> xr.Dataset:
    """A forecast Zarr store opened lazily: fields are read per (init, lead) when scored."""
    if not Path(path).exists():
        raise VerifyInputError(f"forecast store {name!r} not found: {path}")
    return xr.open_zarr(path, consolidated=False, chunks=None)


def _store_obs(
    forecasts: Mapping[str, xr.Dataset],
    store_dir: Path,
    stations: list[str] | None,
    cfg: VerifyConfig,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Verification- and climatology-period observations from the store."""
    from stratocast.obs.store import read_observations

    sources: dict[str, ForecastSource] = {n: XarraySource(ds) for n, ds in forecasts.items()}
    axes = common_time_axes(sources, cfg)
    tol = pd.Timedelta(minutes=cfg.match_tolerance_minutes)
    variables = _store_variables(cfg.variables)
    # Only the verification stations are read, so memory scales with them, not the network.
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
    return obs, clim


def run_verify(
    forecast_paths: Mapping[str, Path],
    store_dir: Path,
    stations_csv: Path,
    cfg: VerifyConfig,
    out_dir: Path,
) -> VerifyResult:
    """Verify forecast Zarr stores against the observation store's held-out stations."""
    forecasts = {name: open_forecast(name, path) for name, path in forecast_paths.items()}
    stations = read_verify_stations(stations_csv)
    obs, clim = _store_obs(forecasts, store_dir, stations, cfg)
    return verify(forecasts, obs, stations, clim, cfg, out_dir)


def verify_paths(
    forecast: Path,
    obs: Path,
    reference: str,
    out_dir: Path,
    cfg: VerifyConfig | None = None,
    stations_csv: Path | None = None,
    analysis: Path | None = None,
) -> VerifyResult:
    """``stratocast verify --forecast F --obs O --reference R``: one forecast store against
    an observation store directory or a WeatherReal-style NetCDF, with a baseline or a
    second forecast store as the skill reference. With ``analysis`` (a Zarr/NetCDF on the
    forecast grid) gridded RMSE and ACC are scored too.

    Without ``cfg`` every WeatherReal protocol variable both sides carry is scored and the
    others are listed in the report with the reason.
    """
    from stratocast.verify.config import PROTOCOL_VARIABLES
    from stratocast.verify.io_weatherreal import weatherreal_inputs

    name = Path(forecast).stem or "forecast"
    forecasts = {name: open_forecast(name, Path(forecast))}
    if reference in BASELINES:
        baselines = [reference]
    else:
        ref_name = Path(reference).stem
        if ref_name in forecasts or ref_name in BASELINES:
            ref_name = f"reference_{ref_name}"
        forecasts[ref_name] = open_forecast(ref_name, Path(reference))
        baselines, reference = [], ref_name
    base = cfg or VerifyConfig(variables=list(PROTOCOL_VARIABLES), skip_unavailable=True)
    update: dict[str, object] = {"baselines": baselines, "skill_reference": reference}
    if analysis is not None:
        update["analysis"] = str(analysis)
    cfg = base.model_copy(update=update)
    obs = Path(obs)
    if obs.is_file():
        inputs = weatherreal_inputs(obs, stations_csv)
        return verify_sources(forecasts, inputs, cfg, out_dir)
    if not obs.is_dir():
        raise VerifyInputError(f"observations not found: {obs} (a store directory or a .nc)")
    ids = read_verify_stations(stations_csv) if stations_csv else None
    obs_frame, clim = _store_obs(forecasts, obs, ids, cfg)
    stations = ids or sorted(set(obs_frame["station_id"].astype(str)))
    return verify(forecasts, obs_frame, stations, clim, cfg, out_dir)
