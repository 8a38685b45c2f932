"""Statistics from the writers' per-shard partials: equal to one streamed pass over the store,
independent of the part layout, and restartable without re-reading finished shards."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from stratocast.shards import partial_stats
from stratocast.shards.build import ShardsConfig, build, finalise, init, load_part
from stratocast.shards.layout import GRID, OBS, ChannelStats, Manifest, load_manifest
from stratocast.shards.stats import streamed_stats


def _close(a: ChannelStats, b: ChannelStats) -> None:
    for field in ("mean", "std", "diff_std"):
        np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=1e-9, atol=1e-12)


def _streamed(root: Path, m: Manifest, cfg: ShardsConfig) -> tuple[ChannelStats, ChannelStats]:
    times = m.times()
    lo = int(np.searchsorted(times, np.datetime64(cfg.stats_start, "ns"), side="left"))
    hi = int(np.searchsorted(times, np.datetime64(cfg.stats_end, "ns"), side="right"))
    grid = zarr.open_array(str(root / GRID), mode="r")
    obs = zarr.open_array(str(root / OBS), mode="r")
    return (
        streamed_stats(grid, lo, hi, channel_axis=1, chunk=cfg.shard_steps),
        streamed_stats(obs, lo, hi, channel_axis=2, chunk=cfg.shard_steps),
    )


def test_merged_partials_equal_one_streamed_pass_over_the_store(
    tiny_shards: tuple[Path, Manifest], tiny_shards_cfg: ShardsConfig
) -> None:
    root, m = tiny_shards
    # the period ends inside a shard: partial spans at both ends of the merge
    end = int(np.searchsorted(m.times(), np.datetime64(tiny_shards_cfg.stats_end, "ns"), "right"))
    assert end % tiny_shards_cfg.shard_steps != 0
    grid, obs = _streamed(root, m, tiny_shards_cfg)
    _close(m.grid_stats, grid)
    _close(m.obs_stats, obs)
    assert np.isnan(np.asarray(zarr.open_array(str(root / OBS), mode="r")[...])).any()
    assert sorted(p.name for p in (root / GRID / partial_stats.PARTIAL_DIR).iterdir()) == [
        f"{s}.npz" for s in range(4)
    ]


def test_finalise_uses_the_partials_and_does_not_read_the_shards(
    tmp_path: Path, tiny_truth: xr.Dataset, tiny_obs: pd.DataFrame, tiny_shards_cfg: ShardsConfig
) -> None:
    root = tmp_path / "s"
    want = build(tiny_shards_cfg, tiny_truth, tiny_obs, root, progress=False)
    # Garble every grid shard in place, keeping its size (record_checksums compares sizes):
    # finalise still succeeds with the same statistics, so it read none of them.
    spec = want.arrays[GRID]
    for shard in range(spec.n_shards):
        obj = root / spec.shard_key(shard)
        obj.write_bytes(b"\0" * obj.stat().st_size)
    again = finalise(tiny_shards_cfg, root)
    assert again.grid_stats == want.grid_stats
    # without the partials it must read them back, and the garbled shards fail to decode
    shutil.rmtree(root / GRID / partial_stats.PARTIAL_DIR)
    with pytest.raises(Exception):  # noqa: B017 - zarr/numcodecs' own decode error
        finalise(tiny_shards_cfg, root)


def test_missing_or_stale_partials_are_recomputed_from_the_store(
    tmp_path: Path, tiny_truth: xr.Dataset, tiny_obs: pd.DataFrame, tiny_shards_cfg: ShardsConfig
) -> None:
    root = tmp_path / "s"
    ref = build(tiny_shards_cfg, tiny_truth, tiny_obs, root, progress=False)
    # an older build (or a crash between a shard and its partial): partials gone
    (root / GRID / partial_stats.PARTIAL_DIR / "1.npz").unlink()
    shutil.rmtree(root / OBS / partial_stats.PARTIAL_DIR)
    m = finalise(tiny_shards_cfg, root)
    assert m.grid_stats == ref.grid_stats  # recomputed from the same bytes: bit for bit
    assert m.obs_stats == ref.obs_stats
    # another statistics period at finalise than at load_part: those partials are stale
    later = tiny_shards_cfg.model_copy(update={"stats_start": "2000-01-03T06"})
    got = finalise(later, root)
    grid, obs = _streamed(root, load_manifest(root), later)
    _close(got.grid_stats, grid)
    _close(got.obs_stats, obs)
    assert got.grid_stats != ref.grid_stats


def test_a_rewritten_shard_invalidates_its_partial(
    tmp_path: Path, tiny_truth: xr.Dataset, tiny_obs: pd.DataFrame, tiny_shards_cfg: ShardsConfig
) -> None:
    root = tmp_path / "s"
    init(tiny_shards_cfg, tiny_truth, tiny_obs, root)
    load_part(tiny_shards_cfg, tiny_truth, tiny_obs, root, 0, 1, progress=False)
    stale = root / GRID / partial_stats.PARTIAL_DIR / "0.npz"
    kept = stale.read_bytes()
    # the source changed and part 0 ran again; the old partial is put back as if the rerun
    # died between its shard and its partial
    warmer = tiny_truth.copy(deep=True)
    warmer["t2m"] += 5.0
    load_part(tiny_shards_cfg, warmer, tiny_obs, root, 0, 4, progress=False)
    stale.write_bytes(kept)
    m = finalise(tiny_shards_cfg, root)
    grid, _ = _streamed(root, m, tiny_shards_cfg)
    _close(m.grid_stats, grid)
