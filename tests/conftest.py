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
