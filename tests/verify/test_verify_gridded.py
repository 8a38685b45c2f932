"""Gridded scores against an analysis: the verify run's ``gridded`` table against WeatherBench2's
formulas written out here in numpy (not the accumulator), the report, the CLI, bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from verify_world import World

from stratocast.cli.main import main
from stratocast.verify import VerifyConfig, VerifyInputError, verify
from stratocast.verify.io_weatherreal import write_weatherreal
from stratocast.verify.run import VerifyResult

VARIABLES = ["t2m", "ws10", "msl"]
MEMBERS = 3


def _cfg(analysis: Path, **extra: object) -> VerifyConfig:
    return VerifyConfig(
        variables=VARIABLES,
        analysis=str(analysis),
        ar6_regions=False,  # regions are tested elsewhere; keep this module offline and fast
        bootstrap_samples=100,
        **extra,
    )


def _forecasts(world: World) -> dict[str, xr.Dataset]:
    rng = np.random.default_rng(11)
    fc = world.forecast
    noisy = fc.copy(deep=True)
    for var, scale in (("t2m", 1.0), ("u10", 1.5), ("v10", 1.5), ("msl", 60.0)):
        noisy[var] = noisy[var] + scale * rng.standard_normal(noisy[var].shape)
    dims = ("init_time", "lead_time", "member", "lat", "lon")
    ens = {}
    for var, scale in (("t2m", 2.0), ("u10", 2.0), ("v10", 2.0), ("msl", 90.0)):
        base = fc[var].values.astype(np.float64)[:, :, None]
        ens[var] = (dims, base + scale * rng.standard_normal((*base.shape[:2], MEMBERS, 36, 72)))
    e = xr.Dataset(ens, coords=fc.coords).assign(orography=fc["orography"])
    return {"B": noisy, "E": e.assign_coords(member=np.arange(MEMBERS))}


@pytest.fixture(scope="module")
def analysis_zarr(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("analysis") / "truth.zarr"
    world.truth.to_zarr(path, zarr_format=3, consolidated=False)
    return path


@pytest.fixture(scope="module")
def run(world: World, analysis_zarr: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    forecasts = _forecasts(world)
    out = tmp_path_factory.mktemp("gridded")
    stations = world.stations["station_id"].tolist()
    result = verify(forecasts, world.obs, stations, world.clim_obs, _cfg(analysis_zarr), out)
    return {"result": result, "forecasts": forecasts}


# --------------------------------------------------------------- the hand computation (WB2)


def _var(ds: xr.Dataset, var: str) -> np.ndarray:
    if var == "ws10":
        return np.hypot(ds["u10"].values.astype(np.float64), ds["v10"].values.astype(np.float64))
    return ds[var].values.astype(np.float64)


def _truth_at(world: World, times: list[pd.Timestamp], var: str) -> np.ndarray:
    return _var(world.truth.sel(time=[t.tz_localize(None) for t in times]), var)


def _climatology(world: World, times: list[pd.Timestamp], var: str) -> np.ndarray:
    """The world spans 3 days, inside one 61-day window: every (day of year, hour) climatology
    is the mean over all analysis times at that hour of day."""
    all_fields = _var(world.truth, var)
    hours = pd.DatetimeIndex(world.truth["time"].values).hour
    return np.stack([all_fields[hours == t.hour].mean(axis=0) for t in times])


def _wb2(f: np.ndarray, a: np.ndarray, c: np.ndarray, lat: np.ndarray) -> tuple[float, float]:
    """WeatherBench2: L = cos φ / mean cos φ (its cell-area weights on this 5° grid without
    pole rows; test_verify_references.py checks grids with them);
    RMSE = sqrt(mean_t mean_ij L e²); ACC = mean_t Σ L f′a′ / sqrt(Σ L f′² Σ L a′²)."""
    w = np.cos(np.deg2rad(lat))
    w = (w / w.mean())[:, None]
    mse = [np.mean(w * (ft - at) ** 2) for ft, at in zip(f, a, strict=True)]
    accs = []
    for ft, at, ct in zip(f, a, c, strict=True):
        fa, aa = ft - ct, at - ct
        den = np.sqrt(np.sum(w * fa * fa) * np.sum(w * aa * aa))
        if den > 0:
            accs.append(np.sum(w * fa * aa) / den)
    return float(np.sqrt(np.mean(mse))), float(np.mean(accs)) if accs else np.nan


def _expected(run: dict, world: World, system: str, var: str, lead: int) -> tuple[float, float]:
    fc = world.forecast
    inits = pd.DatetimeIndex(fc["init_time"].values).tz_localize("UTC")
    valid = [i + pd.Timedelta(hours=lead) for i in inits]
    a = _truth_at(world, valid, var)
    c = _climatology(world, valid, var)
    if system == "persistence":
        f = _truth_at(world, list(inits), var)
    elif system == "climatology":
        f = c
    else:
        ds = run["forecasts"][system].sel(lead_time=lead)
        f = _var(ds, var)
        if system == "E":
            f = f.mean(axis=1)  # member mean of the variable (ws10: mean of member speeds)
    return _wb2(f, a, c, world.truth["lat"].values)


@pytest.mark.parametrize("var", VARIABLES)
@pytest.mark.parametrize("system", ["B", "E", "persistence", "climatology"])
def test_gridded_table_equals_wb2_by_hand(run: dict, world: World, system: str, var: str) -> None:
    table = run["result"].tables["gridded"]
    rows = table[(table["system"] == system) & (table["variable"] == var)]
    leads = world.forecast["lead_time"].values
    assert rows["lead_hours"].tolist() == leads.tolist()
    n_inits = world.forecast.sizes["init_time"]
    assert (rows["n_fields"] == n_inits).all()
    for lead, rmse, acc in zip(rows["lead_hours"], rows["rmse"], rows["acc"], strict=True):
        want_rmse, want_acc = _expected(run, world, system, var, int(lead))
        assert rmse == pytest.approx(want_rmse, rel=1e-9, abs=1e-9), (system, var, lead)
        if system == "climatology":
            assert np.isnan(acc)  # no forecast anomaly: no ACC
            continue
        if system == "persistence" and lead == 0:
            assert rmse == 0.0 and acc == pytest.approx(1.0, abs=1e-12)
        assert acc == pytest.approx(want_acc, rel=1e-9, abs=1e-9), (system, var, lead)


def test_gridded_outputs_and_report(run: dict) -> None:
    result: VerifyResult = run["result"]
    out = result.scorecard_parquet.parent
    back = pd.read_parquet(out / "scorecard_gridded.parquet")
    pd.testing.assert_frame_equal(back, result.tables["gridded"])
    with xr.open_dataset(result.scorecard_netcdf, group="gridded") as ds:
        got = ds["rmse"].sel(system="B", variable="t2m").values
    want = back[(back["system"] == "B") & (back["variable"] == "t2m")]["rmse"].to_numpy()
    np.testing.assert_allclose(got, want)
    html = result.report_path.read_text()
    for var in VARIABLES:
        assert f'alt="gridded_vs_lead_{var}.png"' in html
        assert (out / "plots" / f"gridded_vs_lead_{var}.png").is_file()
    assert '<table id="gridded">' in html
    assert "cell areas" in html and "61-day window" in html
    assert "In-sample" in html  # the default climatology period is the whole analysis


def test_climatology_period_is_stated_and_bounds_acc(
    world: World, analysis_zarr: Path, tmp_path: Path
) -> None:
    # A climatology from the last analysis time (12 UTC) only: no climatology at 06/18 UTC,
    # so no ACC at leads 6 and 18; the report states the period.
    period = ("2024-01-12T12:00:00Z", "2024-01-13T00:00:00Z")
    cfg = _cfg(analysis_zarr, gridded_climatology_period=period, baselines=["persistence"])
    cfg = cfg.model_copy(update={"skill_reference": "persistence"})
    result = verify(
        {"B": _forecasts(world)["B"]},
        world.obs,
        world.stations["station_id"].tolist(),
        world.clim_obs,
        cfg,
        tmp_path,
    )
    html = result.report_path.read_text()
    assert "2024-01-12 12:00:00+00:00" in html and "In-sample" in html
    table = result.tables["gridded"]
    assert set(table["system"]) == {"B", "persistence"}
    acc = table[table["system"] == "B"].set_index(["variable", "lead_hours"])["acc"]
    assert np.isnan(acc["t2m", 6]) and np.isnan(acc["t2m", 18]) and np.isfinite(acc["t2m", 12])


def test_cli_with_analysis(world: World, analysis_zarr: Path, tmp_path: Path) -> None:
    fc = tmp_path / "model.zarr"
    _forecasts(world)["B"].to_zarr(fc, zarr_format=3, consolidated=False)
    obs = write_weatherreal(world.obs, tmp_path / "obs.nc")
    out = tmp_path / "out"
    args = ["verify", "--forecast", str(fc), "--obs", str(obs), "--out", str(out)]
    assert main([*args, "--analysis", str(analysis_zarr)]) == 0
    table = pd.read_parquet(out / "scorecard_gridded.parquet")
    assert set(table["system"]) == {"model", "persistence"}
    assert {"t2m", "msl", "ws10"} <= set(table["variable"])
    assert '<table id="gridded">' in (out / "report.html").read_text()


def test_missing_and_mismatched_analysis_are_named(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stations = world.stations["station_id"].tolist()
    fc = {"B": world.forecast}

    def run_with(analysis: Path) -> None:
        verify(fc, world.obs, stations, world.clim_obs, _cfg(analysis), tmp_path / "o")

    with pytest.raises(VerifyInputError, match=r"analysis not found: .*nope\.zarr"):
        run_with(tmp_path / "nope.zarr")
    coarse = tmp_path / "coarse.nc"
    world.truth.isel(lat=slice(None, None, 2)).to_netcdf(coarse)
    with pytest.raises(VerifyInputError, match=r"grid 18×72 .* forecast 'B' is on 36×72"):
        run_with(coarse)
    late = tmp_path / "late.nc"
    world.truth.assign_coords(time=world.truth["time"] + np.timedelta64(30, "D")).to_netcdf(late)
    with pytest.raises(VerifyInputError, match="has none of the valid times"):
        run_with(late)
    no_msl = tmp_path / "no_msl.nc"
    world.truth.drop_vars("msl").to_netcdf(no_msl)
    with pytest.raises(VerifyInputError, match=r"'msl' cannot be scored: the analysis lack"):
        verify(
            fc,
            world.obs,
            stations,
            world.clim_obs,
            _cfg(no_msl, gridded_variables=["t2m", "msl"]),
            tmp_path / "o",
        )
    # The CLI form reports it as an error line, exit code 2.
    fcz = tmp_path / "model.zarr"
    world.forecast.to_zarr(fcz, zarr_format=3, consolidated=False)
    obs = write_weatherreal(world.obs, tmp_path / "obs.nc")
    argv = ["verify", "--forecast", str(fcz), "--obs", str(obs), "--analysis", str(coarse)]
    assert main([*argv, "--out", str(tmp_path / "cli")]) == 2
    assert "differs" not in (err := capsys.readouterr().err) and "coarse.nc is on grid" in err
