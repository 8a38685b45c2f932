"""Storage tiers: the reader over an S3-compatible server on 127.0.0.1 through a bounded
disk cache, and the cache's eviction rules."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from stratocast.shards.build import create_array, record_checksums, write_block
from stratocast.shards.layout import ShardError
from stratocast.shards.reader import ShardArrayReader
from stratocast.shards.tiers import DiskCache, Location
from stratocast.testing.s3 import local_s3

SHAPE = (40, 2, 16, 24)
SHARD_STEPS = 8  # 5 shard objects


@pytest.fixture(scope="module")
def local_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiers") / "store"
    data = np.cumsum(np.random.default_rng(1).standard_normal(SHAPE), axis=-1).astype("f4")
    create_array(root, "x", SHAPE, np.float32, 2, SHARD_STEPS, "zstd")
    write_block(root, "x", 0, data)
    record_checksums(root, "x")
    return root


@pytest.fixture(scope="module")
def s3(local_store: Path) -> Iterator[tuple[dict[str, Any], Any]]:
    for module in ("moto.server", "boto3", "s3fs"):
        pytest.importorskip(module)
    with local_s3("shards") as (options, client):
        for f in sorted(p for p in local_store.rglob("*") if p.is_file()):
            client.upload_file(str(f), "shards", f"run1/{f.relative_to(local_store)}")
        yield options, client


def _read(reader: ShardArrayReader, t0: int, t1: int) -> np.ndarray:
    out = np.empty((t1 - t0, *reader.shape[1:]), dtype=reader.dtype)
    reader.read_block(t0, t1, out)
    return out


def test_s3_through_a_bounded_cache_equals_the_local_store(
    s3: tuple[dict[str, Any], Any], local_store: Path, tmp_path: Path
) -> None:
    options, _ = s3
    ref = zarr.open_array(str(local_store / "x"), mode="r")[...]
    shard_bytes = (local_store / "x" / "c" / "0" / "0" / "0" / "0").stat().st_size
    cache = DiskCache(tmp_path / "cache", max_bytes=int(2.5 * shard_bytes))
    blocks = [(0, 40), (5, 19), (33, 40), (0, 3), (15, 17), (22, 31)]
    with ShardArrayReader(
        "s3://shards/run1", "x", cache=cache, storage_options=options, max_open_shards=1
    ) as reader:
        for t0, t1 in blocks:
            np.testing.assert_array_equal(_read(reader, t0, t1), ref[t0:t1])
            assert cache.nbytes() <= cache.max_bytes
    assert cache.stats.evictions > 0
    assert len(list((tmp_path / "cache").glob("*.shard"))) <= 2


def test_second_read_is_served_from_the_cache(
    s3: tuple[dict[str, Any], Any], local_store: Path, tmp_path: Path
) -> None:
    options, client = s3
    for f in sorted(p for p in local_store.rglob("*") if p.is_file()):
        client.upload_file(str(f), "shards", f"run2/{f.relative_to(local_store)}")
    ref = zarr.open_array(str(local_store / "x"), mode="r")[...]
    first = DiskCache(tmp_path / "cache", max_bytes=1 << 30)
    with ShardArrayReader("s3://shards/run2", "x", cache=first, storage_options=options) as reader:
        np.testing.assert_array_equal(_read(reader, 0, 40), ref)
    total = sum(p.stat().st_size for p in (local_store / "x" / "c").rglob("*") if p.is_file())
    assert first.stats.misses == 5 and first.stats.bytes_fetched == total
    # The shard objects leave the object store: only the cache can serve them now.
    listed = client.list_objects_v2(Bucket="shards", Prefix="run2/x/c/")["Contents"]
    for obj in listed:
        client.delete_object(Bucket="shards", Key=obj["Key"])
    second = DiskCache(tmp_path / "cache", max_bytes=1 << 30)  # another process's view
    with ShardArrayReader("s3://shards/run2", "x", cache=second, storage_options=options) as reader:
        np.testing.assert_array_equal(_read(reader, 0, 40), ref)
    assert second.stats.misses == 0 and second.stats.bytes_fetched == 0
    assert second.stats.hits == 5


def test_s3_without_cache_reads_byte_ranges(
    s3: tuple[dict[str, Any], Any], local_store: Path
) -> None:
    options, _ = s3
    ref = zarr.open_array(str(local_store / "x"), mode="r")[...]
    with ShardArrayReader("s3://shards/run1", "x", storage_options=options) as reader:
        np.testing.assert_array_equal(_read(reader, 7, 26), ref[7:26])


def test_cache_never_evicts_a_file_in_use(local_store: Path, tmp_path: Path) -> None:
    src = Location(local_store)
    keys = [f"x/c/{i}/0/0/0" for i in range(5)]
    size = (local_store / keys[0]).stat().st_size
    cache = DiskCache(tmp_path / "c", max_bytes=2 * size + size // 2)
    held = cache.open(src, keys[0])  # a reader is using it
    for k in keys[1:]:
        cache.open(src, k).close()
    assert held.path.exists()  # the oldest entry, but in use: skipped
    assert cache.nbytes() <= cache.max_bytes
    held.close()
    cache.open(src, keys[1]).close()  # a miss: evicted earlier; now the unheld oldest goes
    assert not held.path.exists()
    assert cache.nbytes() <= cache.max_bytes


def test_cache_fills_once_under_concurrency(local_store: Path, tmp_path: Path) -> None:
    src = Location(local_store)
    cache = DiskCache(tmp_path / "c", max_bytes=1 << 30)
    errors: list[BaseException] = []

    def grab() -> None:
        try:
            for i in range(5):
                cache.open(src, f"x/c/{i}/0/0/0").close()
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=grab) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cache.stats.misses == 5 and cache.stats.hits == 15
    assert not list((tmp_path / "c").glob(".*.tmp"))  # no leftover partial downloads


def test_cache_smaller_than_a_shard_is_refused(local_store: Path, tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "c", max_bytes=100)
    with pytest.raises(ShardError, match="more than the whole disk cache"):
        cache.open(Location(local_store), "x/c/0/0/0/0")


def test_a_store_rebuilt_at_the_same_url_never_hits_stale_cache_entries(
    s3: tuple[dict[str, Any], Any], tmp_path: Path
) -> None:
    options, client = s3
    cache = DiskCache(tmp_path / "cache", max_bytes=1 << 30)
    for value in (1.0, 2.0):
        root = tmp_path / f"build{value}"
        create_array(root, "x", (16, 4, 4), np.float32, 1, 8, "none")
        write_block(root, "x", 0, np.full((16, 4, 4), value, np.float32))
        record_checksums(root, "x")
        for f in sorted(p for p in root.rglob("*") if p.is_file()):
            client.upload_file(str(f), "shards", f"run3/{f.relative_to(root)}")
        with ShardArrayReader(
            "s3://shards/run3", "x", cache=cache, storage_options=options
        ) as reader:
            assert (_read(reader, 0, 16) == value).all()
    assert cache.stats.misses == 4  # 2 shards × 2 builds


def _hammer(store: str, cache_dir: str, max_bytes: int, seed: int) -> int:
    """One process reading shard objects through a shared, too-small cache."""
    cache = DiskCache(cache_dir, max_bytes)
    src = Location(Path(store))
    rng = np.random.default_rng(seed)
    for i in rng.integers(0, 5, size=40):
        held = cache.open(src, f"x/c/{i}/0/0/0")
        want = (Path(store) / f"x/c/{i}/0/0/0").read_bytes()
        with open(held.path, "rb") as fh:
            if fh.read() != want:  # a half-written or evicted-and-refilled file would differ
                raise AssertionError(f"cache entry for shard {i} differs from the object")
        held.close()
    return cache.stats.misses


def test_processes_share_one_cache_safely(local_store: Path, tmp_path: Path) -> None:
    size = (local_store / "x" / "c" / "0" / "0" / "0" / "0").stat().st_size
    max_bytes = 3 * size
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        jobs = [
            pool.submit(_hammer, str(local_store), str(tmp_path / "c"), max_bytes, seed)
            for seed in range(2)
        ]
        misses = [j.result() for j in jobs]
    assert sum(misses) >= 5
    assert DiskCache(tmp_path / "c", max_bytes).nbytes() <= max_bytes
    assert not list((tmp_path / "c").glob(".*.tmp"))
