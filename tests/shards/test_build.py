from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from stratocast.loader.dataset import ShardStore
from stratocast.shards.build import ShardsConfig, build, finalise, init, load_part, part_range
from stratocast.shards.layout import GRID, OBS, Manifest, ShardError, load_manifest


def test_grid_shards_hold_the_truth_with_sharding_codec(
    tiny_shards: tuple[Path, Manifest], tiny_truth: xr.Dataset
) -> None:
    root, m = tiny_shards
    arr = zarr.open_array(str(root / GRID), mode="r")
    assert arr.shape == (80, 6, 16, 32)
    assert arr.chunks == (1, 6, 16, 32)  # one training step per inner chunk
    assert arr.shards == (16, 6, 16, 32)
    k = m.channels.index("msl")
    np.testing.assert_array_equal(arr[17, k], tiny_truth["msl"].values[17])


def test_obs_windows_take_the_latest_report_in_the_window(
    tiny_shards: tuple[Path, Manifest], tiny_obs: pd.DataFrame
) -> None:
    root, m = tiny_shards
    values = zarr.open_array(str(root / OBS), mode="r")[...]
    row = tiny_obs[(tiny_obs.variable == "t2m")].iloc[100]
    t = row.time.tz_localize(None).to_datetime64()
    i = m.time_index(t)
    s = m.station_ids.index(row.station_id)
    v = m.obs_variables.index("t2m")
    assert values[i, s, v] == pytest.approx(row.value, rel=1e-6)
    # Every stored value is a report: the count of finite entries equals the report count.
    assert np.isfinite(values).sum() == tiny_obs["variable"].isin(m.obs_variables).sum()


def test_window_bounds_are_open_left_closed_right(
    tmp_path: Path, tiny_truth: xr.Dataset, tiny_shards_cfg: ShardsConfig
) -> None:
    t0 = pd.Timestamp("2000-01-02T00", tz="UTC")
    obs = pd.DataFrame(
        {
            "station_id": ["A", "A", "A"],
            "lat": [10.0] * 3,
            "lon": [20.0] * 3,
            "elevation": [0.0] * 3,
            "time": [t0 - pd.Timedelta("6h"), t0 - pd.Timedelta("1h"), t0],
            "variable": ["t2m"] * 3,
            "value": [280.0, 281.0, 282.0],
        }
    )
    m = build(tiny_shards_cfg, tiny_truth, obs, tmp_path / "s", progress=False)
    values = zarr.open_array(str(tmp_path / "s" / OBS), mode="r")[...]
    i = m.time_index(t0.tz_localize(None).to_datetime64())
    assert values[i, 0, 0] == 282.0  # latest in (t-6h, t]
    assert values[i - 1, 0, 0] == 280.0  # t-6h belongs to the previous window


def test_statistics_match_numpy_over_the_stats_period(
    tiny_shards: tuple[Path, Manifest], tiny_truth: xr.Dataset
) -> None:
    _, m = tiny_shards
    sel = tiny_truth["t2m"].sel(time=slice("2000-01-01T00", "2000-01-15T18")).values.astype(float)
    k = m.channels.index("t2m")
    assert m.grid_stats.mean[k] == pytest.approx(sel.mean(), rel=1e-6)
    assert m.grid_stats.std[k] == pytest.approx(sel.std(), rel=1e-5)
    assert m.grid_stats.diff_std[k] == pytest.approx(
        np.sqrt((np.diff(sel, axis=0) ** 2).mean()), rel=1e-5
    )


def test_parts_in_any_order_give_the_same_store(
    tmp_path: Path, tiny_truth: xr.Dataset, tiny_obs: pd.DataFrame, tiny_shards_cfg: ShardsConfig
) -> None:
    one = tmp_path / "one"
    build(tiny_shards_cfg, tiny_truth, tiny_obs, one, progress=False)
    three = tmp_path / "three"
    init(tiny_shards_cfg, tiny_truth, tiny_obs, three)
    with pytest.raises(ShardError, match="never loaded"):
        finalise(tiny_shards_cfg, three)  # nothing loaded yet: refuses to finalise
    for part in (2, 0, 1, 1):  # out of order and one part twice (a restarted worker)
        load_part(tiny_shards_cfg, tiny_truth, tiny_obs, three, part, 3, progress=False)
    m3 = finalise(tiny_shards_cfg, three)
    m1 = load_manifest(one)
    assert m3.grid_stats == m1.grid_stats
    a = zarr.open_array(str(one / GRID), mode="r")[...]
    b = zarr.open_array(str(three / GRID), mode="r")[...]
    np.testing.assert_array_equal(a, b)


def test_part_ranges_cover_time_once_in_whole_shards(tiny_shards: tuple[Path, Manifest]) -> None:
    _, m = tiny_shards
    ranges = [part_range(m, 16, i, 3) for i in range(3)]
    covered = [t for r in ranges for t in r]
    assert covered == list(range(m.n_time))
    assert all(r.start % 16 == 0 for r in ranges)


def test_missing_channel_is_named(
    tmp_path: Path, tiny_truth: xr.Dataset, tiny_obs: pd.DataFrame
) -> None:
    cfg = ShardsConfig(channels=["t2m", "q701"], stats_start="2000-01-01", stats_end="2000-01-10")
    with pytest.raises(KeyError, match="q701"):
        init(cfg, tiny_truth, tiny_obs, tmp_path / "x")
    cfg = ShardsConfig(channels=["t2m", "sp"], stats_start="2000-01-01", stats_end="2000-01-10")
    with pytest.raises(ShardError, match=r"lacks channels \['sp'\]"):
        init(cfg, tiny_truth, tiny_obs, tmp_path / "x")


def test_manifest_of_another_layout_version_is_refused(
    tiny_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    root, _ = tiny_shards
    text = (
        (root / "manifest.json").read_text().replace('"layout_version": 2', '"layout_version": 99')
    )
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(ShardError, match="layout version 99"):
        load_manifest(tmp_path)


def test_chunk_geometry_is_configurable_and_checksummed(
    tmp_path: Path,
    tiny_truth: xr.Dataset,
    tiny_obs: pd.DataFrame,
    tiny_shards_cfg: ShardsConfig,
    tiny_shards: tuple[Path, Manifest],
) -> None:
    cfg = tiny_shards_cfg.model_copy(
        update={"chunk_steps": 2, "channel_group": 4, "tile": (8, 16), "compression": "none"}
    )
    m = build(cfg, tiny_truth, tiny_obs, tmp_path / "g", progress=False)
    arr = zarr.open_array(str(tmp_path / "g" / GRID), mode="r")
    assert arr.chunks == (2, 4, 8, 16)
    assert arr.shards == (16, 8, 16, 32)  # 6 channels in groups of 4: padded to whole chunks
    spec = m.arrays[GRID]
    assert spec.chunk_shape == [2, 4, 8, 16] and spec.shard_nbytes and spec.recorded
    assert len(spec.checksums) == 40 * 2 * 2 * 2  # time chunks × channel groups × tiles
    k = m.channels.index("z500")
    np.testing.assert_array_equal(arr[33, k], tiny_truth["z500"].values[33])
    root, _ = tiny_shards
    np.testing.assert_array_equal(arr[...], zarr.open_array(str(root / GRID), mode="r")[...])
    # The trainer's store reads both geometries (through the shard reader) identically.
    np.testing.assert_array_equal(ShardStore(tmp_path / "g").state, ShardStore(root).state)
