"""Shards → train → forecast on every kind of grid a user's target can have: a 33×49 regional
box (no longitude wrap, odd sizes, west of 0° included), a 32×64 global grid, the same with
latitude descending, and a 721×1440 global grid with pole rows (shape only: two steps).

The fields are the synthetic travelling waves (`stratocast.testing.synthetic`) relabelled onto
each grid; the point is that every stage accepts the geometry and produces finite output of
the right shape, not skill."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from stratocast.infer.config import ForecastConfig
from stratocast.infer.forecast import run_forecast
from stratocast.shards.build import ShardsConfig, build
from stratocast.shards.stations import split_observations
from stratocast.testing.synthetic import synthetic_obs, synthetic_truth
from stratocast.train.config import TrainConfig
from stratocast.train.trainer import train

GRIDS: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "regional_33x49": (np.linspace(30.0, 62.0, 33), np.linspace(-20.0, 28.0, 49)),
    "global_32x64": (np.linspace(-87.1875, 87.1875, 32), np.arange(64) * 5.625),
    "global_32x64_descending": (np.linspace(87.1875, -87.1875, 32), np.arange(64) * 5.625),
    "global_721x1440_poles": (np.linspace(-90.0, 90.0, 721), np.arange(1440) * 0.25),
}


def _truth(lat: np.ndarray, lon: np.ndarray, n_time: int) -> xr.Dataset:
    ds = synthetic_truth(n_time=n_time, n_lat=lat.size, n_lon=lon.size)
    return ds.assign_coords(lat=lat, lon=lon)


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_shards_train_forecast_on_any_grid(name: str, tmp_path: Path) -> None:
    lat, lon = GRIDS[name]
    big = lat.size * lon.size > 100_000
    n_time = 12 if big else 24
    truth = _truth(lat, lon, n_time)
    # stations drawn over the globe; those outside a regional box are left out (counted)
    obs = synthetic_obs(truth.sortby("lat"), n_stations=600 if name.startswith("regional") else 40)
    far = obs[obs["station_id"] == obs["station_id"].iloc[0]].assign(
        station_id="FAR", lat=-40.0, lon=150.0
    )  # a station in the southern Pacific: outside the regional box, inside a global grid
    inputs, roles = split_observations(pd.concat([obs, far]), lat, lon, None, None)
    outside = set(roles.loc[roles["role"] == "outside", "station_id"])
    assert outside == ({"FAR"} if name.startswith("regional") else set())
    assert not inputs.empty
    end = str(truth["time"].values[n_time - 5])[:13]
    cfg = ShardsConfig(stats_start="2000-01-01T00", stats_end=end, shard_steps=8)
    manifest = build(cfg, truth, inputs, tmp_path / "shards", progress=False)
    assert (len(manifest.lat), len(manifest.lon)) == (lat.size, lon.size)
    assert manifest.lat[0] == lat[0]  # stored as given: a descending grid stays descending

    torch.manual_seed(0)
    tcfg = TrainConfig.model_validate(
        {
            "model": {"hidden": 4 if big else 8, "blocks": 1, "kernel_widths_km": [600.0]},
            "train_start": "2000-01-01T00",
            "train_end": end,
            "val_start": end,
            "val_end": str(truth["time"].values[n_time - 3])[:13],
            "steps": 2,
            "batch_size": 1,
            "warmup_steps": 0,
            "history": 1,
            "rollout": 1,
            "precision": "fp32",
            "tensorboard": False,
            "checkpoint": {"every": 2, "keep": 1, "async_save": False},
        }
    )
    ckpt = train(tcfg, tmp_path / "shards", tmp_path / "train", progress=False)
    init = truth["time"].values[n_time - 3]
    fcfg = ForecastConfig(
        start=str(init)[:13],
        end=str(init)[:13],
        init_hours=[int(str(init)[11:13])],
        horizon_hours=6,
    )
    out = run_forecast(fcfg, ckpt, tmp_path / "shards", tmp_path / "fc.zarr", progress=False)
    fc = xr.open_zarr(out, consolidated=False)
    assert fc["t2m"].sizes["lat"] == lat.size and fc["t2m"].sizes["lon"] == lon.size
    np.testing.assert_array_equal(fc["lat"].values, lat)
    np.testing.assert_array_equal(fc["lon"].values, lon)
    assert bool(np.isfinite(fc["t2m"].values).all())
