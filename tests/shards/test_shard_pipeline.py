"""The shard build's read path (batched source reads, read-ahead, parallel shard writes):
identical results to a plain ``.load()``, bounded reads, and errors at the right shard."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from stratocast.shards import pipeline
from stratocast.shards.build import ShardsConfig, build
from stratocast.shards.layout import GRID, OBS
from stratocast.shards.target import (
    GridConfig,
    RegionConfig,
    TargetConfig,
    TargetError,
    open_target,
)
from stratocast.testing.era5_layouts import write_arco_era5

CHANNELS = ["t2m", "u10", "v10", "msl", "z500", "t850"]
# Crosses 0°: the lazy target is a region cut with index arrays on a sorted, renamed store.
REGION = {"lat_min": -40.0, "lat_max": 60.0, "lon_min": -60.0, "lon_max": 100.0}


def _no_world() -> Path:
    raise AssertionError("a store source must not look for the world's truth")


@pytest.fixture(scope="module")
def arco_target(tmp_path_factory: pytest.TempPathFactory, tiny_truth: xr.Dataset) -> xr.Dataset:
    """The synthetic truth as an ARCO-ERA5 store (latitude descending, time chunk 1, Blosc),
    opened lazily (dask) through open_target with a region."""
    root = tmp_path_factory.mktemp("arco")
    store = write_arco_era5(tiny_truth.drop_vars("orography"), root / "arco.zarr")
    cfg = TargetConfig(source=str(store), region=RegionConfig(**REGION))
    return open_target(cfg, CHANNELS, world_truth=_no_world, cache_dir=root / "cache")


def _loaded(truth: xr.Dataset, lo: int, hi: int, channels: list[str] = CHANNELS) -> np.ndarray:
    """What the build's load_part did before shards.pipeline: one plain load per block."""
    fields = truth[channels].isel(time=slice(lo, hi)).load()
    return np.stack([fields[c].values.astype(np.float32) for c in channels], axis=1)


def test_batched_reads_equal_a_plain_load_bit_for_bit(arco_target: xr.Dataset) -> None:
    assert arco_target["t2m"].chunks is not None  # lazy: the batched path applies
    fields = [arco_target[c].isel(time=slice(5, 37)).data for c in CHANNELS]
    plan = pipeline._batched_plan(fields)
    assert plan is not None
    # one batched read per archive variable (geopotential, temperature and the four
    # single-level ones), each covering all 32 steps instead of 32 one-step reads
    assert len(plan.groups) == 6
    assert all(len(g.reads) == 32 for g in plan.groups)
    got = pipeline.read_block(arco_target, CHANNELS, 5, 37)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, _loaded(arco_target, 5, 37))


def test_batched_reads_under_a_regrid_equal_a_plain_load(
    tmp_path: Path, tiny_truth: xr.Dataset
) -> None:
    store = write_arco_era5(tiny_truth.drop_vars("orography"), tmp_path / "arco.zarr")
    cfg = TargetConfig(
        source=str(store),
        region=RegionConfig(**REGION),
        grid=GridConfig(resolution_deg=7.5, method="conservative"),
    )
    target = open_target(cfg, CHANNELS, world_truth=_no_world, cache_dir=tmp_path / "cache")
    assert pipeline._batched_plan([target[c].isel(time=slice(0, 24)).data for c in CHANNELS])
    got = pipeline.read_block(target, CHANNELS, 0, 24)
    np.testing.assert_array_equal(got, _loaded(target, 0, 24))


def test_read_budget_splits_the_block_and_keeps_the_values(arco_target: xr.Dataset) -> None:
    whole = pipeline._batched_plan([arco_target[c].isel(time=slice(0, 40)).data for c in CHANNELS])
    assert whole is not None
    budget = whole.nbytes // 3  # 40 steps → 2 × 20 → 4 × 10, each read batched
    calls: list[int] = []
    real = pipeline._Plan.run

    def counting(self: pipeline._Plan) -> list[np.ndarray]:
        calls.append(self.nbytes)
        return real(self)

    pipeline._Plan.run = counting  # type: ignore[method-assign]
    try:
        got = pipeline.read_block(arco_target, CHANNELS, 0, 40, read_budget=budget)
    finally:
        pipeline._Plan.run = real  # type: ignore[method-assign]
    assert len(calls) == 4 and max(calls) <= budget
    np.testing.assert_array_equal(got, _loaded(arco_target, 0, 40))


def test_in_memory_source_and_few_chunks_take_the_ordinary_path(
    tiny_truth: xr.Dataset, arco_target: xr.Dataset
) -> None:
    got = pipeline.read_block(tiny_truth, CHANNELS, 3, 19)
    np.testing.assert_array_equal(got, _loaded(tiny_truth, 3, 19))
    short = [arco_target[c].isel(time=slice(0, pipeline.MIN_CHUNKS - 1)) for c in CHANNELS]
    assert not pipeline._worth_batching(short)
    got = pipeline.read_block(arco_target, CHANNELS, 0, pipeline.MIN_CHUNKS - 1)
    np.testing.assert_array_equal(got, _loaded(arco_target, 0, pipeline.MIN_CHUNKS - 1))


def test_build_from_a_lazy_store_equals_the_build_from_memory(
    tmp_path: Path, arco_target: xr.Dataset, tiny_obs: pd.DataFrame
) -> None:
    cfg = ShardsConfig(stats_start="2000-01-01T00", stats_end="2000-01-15T18", shard_steps=16)
    lazy = build(cfg, arco_target, tiny_obs, tmp_path / "lazy", progress=False)
    mem = build(cfg, arco_target.load(), tiny_obs, tmp_path / "mem", progress=False)
    for name in (GRID, OBS):
        a = zarr.open_array(str(tmp_path / "lazy" / name), mode="r")[...]
        b = zarr.open_array(str(tmp_path / "mem" / name), mode="r")[...]
        np.testing.assert_array_equal(a, b)
    # same stored bytes: the per-chunk checksums agree too
    assert lazy.arrays[GRID].checksums == mem.arrays[GRID].checksums
    assert lazy.grid_stats == mem.grid_stats


def test_incomplete_target_fails_at_its_shard_and_later_shards_are_not_written(
    tmp_path: Path, tiny_truth: xr.Dataset, tiny_obs: pd.DataFrame
) -> None:
    bad = tiny_truth.copy(deep=True)
    bad["msl"][37, 2, 3] = np.nan  # shard 2 of 16-step shards
    cfg = ShardsConfig(stats_start="2000-01-01T00", stats_end="2000-01-15T18", shard_steps=16)
    with pytest.raises(TargetError, match=r"'msl' at 2000-01-10T06:00: 1 of 512"):
        build(cfg, bad, tiny_obs, tmp_path / "s", progress=False)
    written = sorted(p.name for p in (tmp_path / "s" / GRID / "checksums").glob("*.json"))
    assert written == ["0.json", "1.json"]


def test_read_ahead_keeps_order_and_raises_at_the_failing_item() -> None:
    seen: list[int] = []

    def read(i: int) -> int:
        if i == 3:
            raise OSError("source object 3 unreadable")
        return i * 10

    with pytest.raises(OSError, match="object 3"):
        for _, v in pipeline.read_ahead(read, list(range(6))):
            seen.append(v)
    assert seen == [0, 10, 20]


def test_read_ahead_stops_its_thread_when_the_consumer_stops() -> None:
    before = threading.active_count()
    reads: list[int] = []

    def read(i: int) -> int:
        reads.append(i)
        return i

    for i, _ in pipeline.read_ahead(read, list(range(100))):
        if i == 2:
            break
    assert threading.active_count() == before
    assert len(reads) <= 5  # at most one in the queue and one being read beyond the consumer


def test_pipelined_writes_everything_once_and_raises_write_errors() -> None:
    written: list[int] = []
    lock = threading.Lock()

    def write(i: int, v: int) -> None:
        if v == 70:
            raise OSError("disk full at 7")
        with lock:
            written.append(i)

    pipeline.pipelined(list(range(6)), lambda i: i * 10, lambda i, v: None, write)
    assert sorted(written) == list(range(6))
    written.clear()
    with pytest.raises(OSError, match="disk full"):
        pipeline.pipelined(list(range(12)), lambda i: i * 10, lambda i, v: None, write)
    assert 7 not in written and set(written) <= set(range(12))


def test_pipelined_stops_reader_and_writers_at_once_on_a_failed_check() -> None:
    before = threading.active_count()
    written: list[int] = []

    def check(i: int, v: int) -> None:
        if i == 2:
            raise TargetError("block 2 incomplete")

    with pytest.raises(TargetError, match="block 2") as info:
        pipeline.pipelined(list(range(50)), lambda i: i, check, lambda i, v: written.append(i))
    # while the traceback (which holds the loop's frame) is still alive
    assert info.traceback and threading.active_count() == before
    # blocks after the failed one are never written; the ones before may still be in flight
    # when it fails (a restarted build rewrites any shard left absent): timing, not a contract
    assert set(written) <= {0, 1} and len(written) == len(set(written))


def test_spatially_chunked_source_batches_each_tile_along_time(
    tmp_path: Path, tiny_truth: xr.Dataset
) -> None:
    # a Zarr store tiled 2 × 2 in space, one step per chunk, with lat descending
    surface = ["t2m", "u10", "v10", "msl"]  # the names a plain store can give
    src = tiny_truth[surface].isel(lat=slice(None, None, -1))
    enc = {c: {"chunks": (1, 8, 16)} for c in surface}
    src.to_zarr(tmp_path / "tiled.zarr", mode="w", zarr_format=2, encoding=enc)
    cfg = TargetConfig(source=str(tmp_path / "tiled.zarr"))
    target = open_target(cfg, surface, world_truth=_no_world, cache_dir=tmp_path / "cache")
    plan = pipeline._batched_plan([target[c].isel(time=slice(8, 40)).data for c in surface])
    assert plan is not None
    assert len(plan.groups) == 4 * len(surface)
    assert all(len(g.reads) == 32 for g in plan.groups)
    got = pipeline.read_block(target, surface, 8, 40)
    np.testing.assert_array_equal(got, _loaded(target, 8, 40, surface))
    np.testing.assert_array_equal(got[:, 0], tiny_truth["t2m"].values[8:40])
