from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from verify_world import World

from stratocast.verify import VerifyConfig, VerifyInputError, run_verify, verify


def _run(world: World, tmp_path: Path, forecasts=None, **cfg):
    forecasts = forecasts or {"truth": world.forecast}
    return verify(
        forecasts,
        world.obs,
        world.stations["station_id"].tolist(),
        world.clim_obs,
        VerifyConfig(**cfg),
        tmp_path,
    )


def _noisy(world: World) -> xr.Dataset:
    rng = np.random.default_rng(9)
    noisy = world.forecast.copy(deep=True)
    for var in ("t2m", "u10", "v10", "msl"):
        noisy[var] = noisy[var] + rng.normal(0.0, 1.0, noisy[var].shape)
    return noisy


def test_perfect_forecast_scores_zero_and_baselines_do_not(world: World, tmp_path: Path):
    result = _run(world, tmp_path, {"truth": world.forecast, "noisy": _noisy(world)})
    card = result.scorecard
    perfect = card[card["system"] == "truth"]
    # float32 fields interpolated in float64: zero up to float32 rounding of ~1e5 Pa
    assert perfect.loc[perfect["variable"] == "t2m", "rmse"].max() < 1e-4
    assert perfect.loc[perfect["variable"] == "ws10", "rmse"].max() < 1e-5
    assert perfect.loc[perfect["variable"] == "msl", "rmse"].max() < 1e-2
    assert (card.loc[card["system"] == "noisy", "rmse"] > 0.1).all()
    # persistence is the truth at lead 0, and not after
    pers = card[card["system"] == "persistence"].set_index(["variable", "lead_hours"])
    assert pers.loc[("t2m", 0), "rmse"] < 1e-4 and pers.loc[("t2m", 24), "rmse"] > 1.0
    # one mask for all systems: identical counts per (variable, lead)
    assert (card.groupby(["variable", "lead_hours"])["n"].nunique() == 1).all()
    n_st = len(world.stations)
    n_inits = world.forecast.sizes["init_time"]
    assert set(card["n"]) == {n_st * n_inits} and set(card["n_stations"]) == {n_st}
    assert set(card["system"]) == {"truth", "noisy", "persistence", "climatology"}


def test_consistent_mask_through_the_stage(world: World, tmp_path: Path):
    holed = world.forecast.copy(deep=True)
    t2m = holed["t2m"].values.copy()
    t2m[1, 2, :, :] = np.nan  # one init/lead missing everywhere in model "holed"
    holed["t2m"] = (holed["t2m"].dims, t2m)
    card = _run(world, tmp_path, {"truth": world.forecast, "holed": holed}).scorecard
    at = card[(card["variable"] == "t2m") & (card["lead_hours"] == 12)]
    full = len(world.stations) * world.forecast.sizes["init_time"]
    assert set(at["n"]) == {full - len(world.stations)}  # removed for every system
    other = card[(card["variable"] == "t2m") & (card["lead_hours"] == 6)]
    assert set(other["n"]) == {full}


def test_outputs_report_and_plots(world: World, tmp_path: Path):
    from PIL import Image

    result = _run(world, tmp_path, {"A": world.forecast, "B": _noisy(world)}, map_lead_hours=12)
    html = result.report_path.read_text()
    assert html.count("data:image/png;base64,") == len(result.plot_paths) == 9
    assert "<table>" in html and "RMSE by lead time" in html and "±30.0 min" in html
    assert "persistence" in html and "climatology" in html
    for path in result.plot_paths:
        with Image.open(path) as img:
            img.verify()
            assert img.format == "PNG"
    back = pd.read_parquet(result.scorecard_parquet)
    assert len(back) == len(result.scorecard)
    with xr.open_dataset(result.scorecard_netcdf) as ds:
        assert set(ds.dims) == {"system", "variable", "lead_hours"}
        assert ds.attrs["reference"] == "climatology"
        np.testing.assert_allclose(
            ds["rmse"].sel(system="B", variable="t2m").values,
            result.scorecard.query("system == 'B' and variable == 't2m'")["rmse"].values,
        )
    table = result.rmse_table()
    assert list(table.columns) == ["system", "variable", "lead_hours", "rmse", "n"]
    assert set(result.station_scores["lead_hours"]) == {12}


def test_selection_and_chunking_do_not_change_scores(world: World, tmp_path: Path):
    a = _run(world, tmp_path / "a", {"B": _noisy(world)}, init_chunk_size=1)
    b = _run(world, tmp_path / "b", {"B": _noisy(world)}, init_chunk_size=64)
    pd.testing.assert_frame_equal(a.scorecard, b.scorecard)
    c = _run(world, tmp_path / "c", {"B": _noisy(world)}, lead_hours=[6, 24], init_hours=[0])
    assert set(c.scorecard["lead_hours"]) == {6, 24}
    assert set(c.scorecard["n"]) == {len(world.stations) * world.forecast.sizes["init_time"] // 2}


def test_errors_name_the_problem(world: World, tmp_path: Path):
    with pytest.raises(VerifyInputError, match="reserved"):
        _run(world, tmp_path, {"persistence": world.forecast})
    with pytest.raises(VerifyInputError, match=r"'B' lacks variable 'msl'"):
        _run(world, tmp_path, {"B": world.forecast.drop_vars("msl")})
    with pytest.raises(VerifyInputError, match=r"lead hours \[7\]"):
        _run(world, tmp_path, lead_hours=[7])


def test_run_verify_reads_stores(world: World, tmp_path: Path, monkeypatch):
    zarr_path = tmp_path / "fc.zarr"
    world.forecast.to_zarr(zarr_path, zarr_format=3)
    catalogue = world.stations.assign(role=["verify"] * 5 + ["train"] * (len(world.stations) - 5))
    catalogue.to_csv(tmp_path / "stations.csv", index=False)
    everything = pd.concat([world.clim_obs, world.obs], ignore_index=True)
    calls = []

    def read_observations(
        store_dir, variables=None, start=None, end=None, stations=None, sources=None
    ):
        calls.append((start, end, stations))
        df = everything[everything["variable"].isin(variables)]
        df = df[df["station_id"].isin(stations)]
        if start is not None:
            df = df[df["time"] >= start]
        return df[df["time"] <= end] if end is not None else df

    fake = types.ModuleType("stratocast.obs.store")
    fake.read_observations = read_observations  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "stratocast.obs.store", fake)
    result = run_verify(
        {"model": zarr_path},
        tmp_path / "store",
        tmp_path / "stations.csv",
        VerifyConfig(),
        tmp_path / "out",
    )
    assert set(result.scorecard["n_stations"]) == {5}
    assert result.scorecard.query("system == 'model' and variable == 't2m'")["rmse"].max() < 1e-4
    assert calls[0][2] == [f"V{i:03d}" for i in range(5)]
    assert calls[1][1] == pd.Timestamp("2024-01-10", tz="UTC")  # climatology ends at first init
