"""Shared fixtures: tiny synthetic inputs that follow the stage contracts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import xarray as xr

from stratocast.shards.build import ShardsConfig, build
from stratocast.shards.layout import Manifest
from stratocast.testing.synthetic import synthetic_obs, synthetic_truth

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_truth() -> xr.Dataset:
    return synthetic_truth(n_time=80, n_lat=16, n_lon=32)


@pytest.fixture(scope="session")
def tiny_obs(tiny_truth: xr.Dataset) -> pd.DataFrame:
    return synthetic_obs(tiny_truth, n_stations=30)


@pytest.fixture(scope="session")
def tiny_shards_cfg() -> ShardsConfig:
    return ShardsConfig(stats_start="2000-01-01T00", stats_end="2000-01-15T18", shard_steps=16)


@pytest.fixture(scope="session")
def tiny_shards(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_truth: xr.Dataset,
    tiny_obs: pd.DataFrame,
    tiny_shards_cfg: ShardsConfig,
) -> tuple[Path, Manifest]:
    root = tmp_path_factory.mktemp("shards") / "shards"
    manifest = build(tiny_shards_cfg, tiny_truth, tiny_obs, root, progress=False)
    return root, manifest


@pytest.fixture(scope="session")
def tiny_store_and_model(
    tiny_shards: tuple[Path, Manifest],
    tiny_obs: pd.DataFrame,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path]:
    """An observation store of the tiny observations and a tiny model trained on the tiny
    shards (4 steps): what a product cycle needs. Returns (store dir, model.pt)."""
    from stratocast.obs.store import OBS_SCHEMA, write_observations
    from stratocast.train.config import ModelConfig, TrainConfig
    from stratocast.train.trainer import train

    root = tmp_path_factory.mktemp("store_and_model")
    obs = tiny_obs.copy()
    if "received" in OBS_SCHEMA.names and "received" not in obs:
        obs["received"] = pd.NaT
    write_observations(root / "store", "synthetic", "0" * 16, obs)
    cfg = TrainConfig(
        model=ModelConfig(hidden=8, blocks=1, kernel_widths_km=[800.0]),
        train_start="2000-01-01T00",
        train_end="2000-01-15T18",
        val_start="2000-01-16T00",
        val_end="2000-01-18T18",
        steps=4,
        batch_size=2,
        warmup_steps=1,
        history=2,
        rollout=1,
        tensorboard=False,
    )
    return root / "store", train(cfg, tiny_shards[0], root / "train", progress=False)
