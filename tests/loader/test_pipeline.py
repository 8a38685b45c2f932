from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from stratocast.loader.pipeline import FieldSpec, PipelineLoader
from stratocast.loader.pipeline_zarr import ZarrBlockReader
from stratocast.loader.sampler import WindowSampler

N_T, N_C, N_Y, N_X = 40, 3, 4, 5


def _field(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(280.0, 10.0, (N_T, N_C, N_Y, N_X)).astype(np.float32)


class ArrayReader:
    """Reads steps from an in-memory array; optional jitter scrambles the threads' order."""

    def __init__(self, data: np.ndarray, jitter_s: float = 0.0, fail_at: int | None = None):
        self.data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.nbytes_per_step = int(np.prod(data.shape[1:])) * data.dtype.itemsize
        self.jitter = np.random.default_rng(1)
        self.jitter_s = jitter_s
        self.fail_at = fail_at
        self.calls = 0

    def read_block(self, t0: int, t1: int, out: np.ndarray) -> int:
        self.calls += 1
        if self.jitter_s:
            time.sleep(self.jitter_s * float(self.jitter.random()))
        if self.fail_at is not None and t0 <= self.fail_at < t1:
            raise OSError(
                f"checksum mismatch in shard grid.zarr/state/c/0/0/0/0 chunk "
                f"({self.fail_at}, 0, 0, 0): stored crc32c 0x1234abcd, computed 0x00000000"
            )
        np.copyto(out, self.data[t0:t1])
        return (t1 - t0) * self.nbytes_per_step


MEAN = np.array([270.0, 280.0, 290.0], np.float32)[:, None, None]
STD = np.array([5.0, 10.0, 20.0], np.float32)[:, None, None]


def _loader(
    reader: ArrayReader | ZarrBlockReader,
    rank: int = 0,
    world_size: int = 1,
    depth: int = 4,
    readers: int = 2,
) -> PipelineLoader:
    s = WindowSampler(np.arange(1, N_T - 2), 3, seed=7, rank=rank, world_size=world_size)
    fields = {"target": FieldSpec(reader, offsets=(-1, 3), mean=MEAN, std=STD)}
    return PipelineLoader(s, fields, depth=depth, readers=readers)


def _take(loader: PipelineLoader, n: int) -> list[dict[str, np.ndarray]]:
    # The loader's tensors view its buffers until the next batch: copy what is kept.
    return [{k: v.numpy().copy() for k, v in b.items()} for b in itertools.islice(loader, n)]


def _expected(data: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Independent reference: plain slicing of the source array, then (x - mean) / std."""
    return np.stack([(data[i - 1 : i + 3] - MEAN) / STD for i in index])


@pytest.mark.parametrize("world_size", [1, 2])
def test_resume_sees_exactly_the_remaining_batches(world_size: int) -> None:
    data = _field()
    for rank in range(world_size):
        full = _take(_loader(ArrayReader(data, 0.002), rank, world_size), 15)  # crosses epochs
        first = _loader(ArrayReader(data, 0.002), rank, world_size)
        head = _take(first, 6)
        state = first.state_dict()  # the threads ran ahead; the state must not
        first.close()
        assert state == {"epoch": 0, "position": 6}
        resumed = _loader(ArrayReader(data, 0.002), rank, world_size)
        resumed.load_state_dict(state)
        tail = _take(resumed, 9)
        sampler = WindowSampler(np.arange(1, N_T - 2), 3, seed=7, rank=rank, world_size=world_size)
        order = [b for e in range(3) for b in sampler.epoch_batches(e)]
        for k, (got, want) in enumerate(zip(head + tail, full, strict=True)):
            np.testing.assert_array_equal(got["index"], want["index"])
            np.testing.assert_array_equal(got["target"], want["target"])
            np.testing.assert_array_equal(got["index"], order[k])  # the sampler's order
            np.testing.assert_array_equal(got["target"], _expected(data, order[k]))


@pytest.fixture
def zarr_store(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = _field(3)
    path = tmp_path / "grid.zarr"
    a = zarr.create_array(
        str(path),
        name="state",
        shape=data.shape,
        chunks=(1, N_C, N_Y, N_X),
        shards=(8, N_C, N_Y, N_X),
        dtype="float32",
        dimension_names=["time", "channel", "lat", "lon"],
    )
    a[:] = data
    return path, data


@pytest.mark.parametrize("world_size", [1, 2])
def test_resume_on_the_zarr_reader(zarr_store: tuple[Path, np.ndarray], world_size: int) -> None:
    path, data = zarr_store
    for rank in range(world_size):
        full = _take(_loader(ZarrBlockReader(path, "state"), rank, world_size), 12)
        first = _loader(ZarrBlockReader(path, "state"), rank, world_size)
        head = _take(first, 5)
        state = first.state_dict()
        first.close()
        resumed = _loader(ZarrBlockReader(path, "state"), rank, world_size)
        resumed.load_state_dict(state)
        for got, want in zip(head + _take(resumed, 7), full, strict=True):
            np.testing.assert_array_equal(got["target"], want["target"])
            np.testing.assert_array_equal(got["target"], _expected(data, got["index"]))


def test_zarr_reader_checks_its_arguments(zarr_store: tuple[Path, np.ndarray]) -> None:
    path, data = zarr_store
    r = ZarrBlockReader(path, "state")
    out = np.empty((2, N_C, N_Y, N_X), np.float32)
    assert r.read_block(5, 7, out) == out.nbytes
    np.testing.assert_array_equal(out, data[5:7])
    with pytest.raises(IndexError, match=r"steps \[39, 41\) outside \[0, 40\)"):
        r.read_block(39, 41, out)
    with pytest.raises(ValueError, match="C-contiguous"):
        r.read_block(0, 2, np.empty((2, N_C, N_Y, N_X), np.float64))


class RecordingReader(ArrayReader):
    """Remembers which thread wrote into which memory."""

    def __init__(self, data: np.ndarray) -> None:
        super().__init__(data, jitter_s=0.002)
        self.writes: list[tuple[str, int]] = []

    def read_block(self, t0: int, t1: int, out: np.ndarray) -> int:
        self.writes.append((threading.current_thread().name, out.ctypes.data))
        return super().read_block(t0, t1, out)


def test_each_reader_fills_only_buffers_of_its_own_pool() -> None:
    reader = RecordingReader(_field())
    loader = _loader(reader, depth=5, readers=2)
    _take(loader, 20)
    pools = loader.pool.pools
    assert [p.depth for p in pools] == [3, 2]  # depth split between the readers
    assert all(p.allocated <= p.depth for p in pools)
    owner_of: list[tuple[int, int, int]] = []  # (start, end, reader) of every buffer
    for k, p in enumerate(pools):
        for b in p.buffers:
            a = b.arrays["target"]
            owner_of.append((a.ctypes.data, a.ctypes.data + a.nbytes, k))
    seen = set()
    for thread, address in reader.writes:
        k = next(o for lo, hi, o in owner_of if lo <= address < hi)
        assert thread == f"loader-reader-{k}", (thread, k)
        seen.add(k)
    assert seen == {0, 1}  # both readers worked
    loader.close()


def test_buffer_pool_never_allocates_more_than_depth() -> None:
    loader = _loader(ArrayReader(_field()), depth=4, readers=3)
    it = iter(loader)
    for _ in range(30):
        next(it)
        time.sleep(0.005)  # a slow consumer: the readers run ahead until the pool is empty
        assert loader.pool.allocated <= 4
        with loader._cond:
            assert len(loader._ready) <= 4
    assert loader.pool.allocated == 4  # they did run ahead, as far as allowed
    assert loader.pool.peak_in_use <= 4
    batch_bytes = 3 * (8 + 4 * N_C * N_Y * N_X * 4)  # index int64 + 4 steps float32, 3 samples
    assert loader.pool.batch_nbytes == batch_bytes
    assert loader.pool.allocated_bytes == 4 * batch_bytes
    m = loader.metrics.snapshot()
    assert m["loader_batches"] == 30
    assert m["loader_io_wait_s"] > 0 and m["loader_bytes_per_s"] > 0
    assert 0 <= m["loader_queue_depth"] <= 4
    assert {"loader_wait_s", "loader_read_bytes_per_s", "loader_fill_s"} <= set(m)
    loader.close()
    assert not any(t.is_alive() for t in threading.enumerate() if t.name.startswith("loader-"))


def test_an_error_in_a_reader_thread_reaches_the_consumer() -> None:
    data = _field()
    sampler = WindowSampler(np.arange(1, N_T - 2), 3, seed=7)
    order = sampler.epoch_batches(0)
    fail_at = 20
    covered = [k for k, b in enumerate(order) if any(i - 1 <= fail_at < i + 3 for i in b)]
    loader = _loader(ArrayReader(data, fail_at=fail_at), readers=2)
    got = []
    with pytest.raises(OSError, match=rf"shard grid.zarr/state/c/0/0/0/0 chunk \({fail_at}, 0"):
        for b in loader:
            got.append(b["index"].numpy().copy())
    assert len(got) == covered[0]  # every batch before the bad one arrived, in order
    for g, want in zip(got, order, strict=False):
        np.testing.assert_array_equal(g, want)
    assert not loader._threads  # the loader stopped its threads


def test_masked_fields_and_extras() -> None:
    obs = _field(5)
    obs[3, 1, 2, 2] = np.nan
    s = WindowSampler(np.array([3, 4, 5, 6]), 2, seed=0, shuffle=False)
    fields = {"obs": FieldSpec(ArrayReader(obs), (0, 1), MEAN, STD, mask="obs_mask")}
    loader = PipelineLoader(
        s, fields, depth=2, readers=1, extras=lambda i: {"hour": (i % 4).astype(np.float32)}
    )
    b = next(iter(loader))
    loader.close()
    assert b["obs_mask"].shape == (2, 1, N_C, N_Y, N_X) and b["obs_mask"].dtype == torch.float32
    assert b["obs_mask"][0, 0, 1, 2, 2] == 0 and b["obs"][0, 0, 1, 2, 2] == 0
    assert b["obs_mask"].sum() == b["obs_mask"].numel() - 1
    want = (obs[4, 0] - MEAN[0]) / STD[0]
    np.testing.assert_array_equal(b["obs"][1, 0, 0].numpy(), want)
    np.testing.assert_array_equal(b["hour"].numpy(), [3.0, 0.0])


def test_bad_configuration_is_a_clear_error() -> None:
    s = WindowSampler(np.arange(10), 2, seed=0)
    r = ArrayReader(_field())
    with pytest.raises(ValueError, match="readers <= depth"):
        PipelineLoader(s, {"x": FieldSpec(r)}, depth=2, readers=3)
    with pytest.raises(ValueError, match="both mean and std"):
        PipelineLoader(s, {"x": FieldSpec(r, mean=MEAN)})
    loader = PipelineLoader(
        WindowSampler(np.array([38, 39]), 2, seed=0), {"x": FieldSpec(r, (0, 3))}
    )
    with pytest.raises(IndexError, match=r"steps \[3[89], 4[12]\) outside the array's 40 steps"):
        next(iter(loader))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_equal_cpu_batches() -> None:
    data = _field()
    cpu = _take(_loader(ArrayReader(data)), 5)
    s = WindowSampler(np.arange(1, N_T - 2), 3, seed=7)
    fields = {"target": FieldSpec(ArrayReader(data), offsets=(-1, 3), mean=MEAN, std=STD)}
    loader = PipelineLoader(s, fields, device="cuda")
    assert loader.pool.pin_memory
    for want, got in zip(cpu, itertools.islice(loader, 5), strict=True):
        assert got["target"].is_cuda
        np.testing.assert_array_equal(got["target"].cpu().numpy(), want["target"])
    loader.close()


def test_a_corrupted_chunk_reaches_the_consumer_naming_shard_and_chunk(tmp_path: Path) -> None:
    reader_mod = pytest.importorskip("stratocast.shards.reader")
    from stratocast.shards.writer import create_array, record_checksums, write_block

    data = _field(9)
    create_array(tmp_path, "state", data.shape, "float32", 1, 8, "none", ["t", "c", "y", "x"])
    write_block(tmp_path, "state", 0, data)
    record_checksums(tmp_path, "state")
    shard = tmp_path / "state" / "c" / "2" / "0" / "0" / "0"  # steps 16..23
    raw = bytearray(shard.read_bytes())
    raw[5 * data[0].nbytes + 17] ^= 0xFF  # inside the chunk of step 21
    shard.write_bytes(bytes(raw))
    s = WindowSampler(np.array([21]), 1, seed=0)
    reader = reader_mod.ShardArrayReader(tmp_path, "state")
    loader = PipelineLoader(s, {"x": FieldSpec(reader)}, depth=2, readers=1)
    with pytest.raises(reader_mod.ShardChecksumError, match=r"c/2/0/0/0.*21|21.*c/2/0/0/0"):
        next(iter(loader))


@pytest.mark.slow  # ~15 s alone, 40 s on the shared machine: xarray + DataLoader workers
def test_benchmark_smoke(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "loader.py"
    out = tmp_path / "res.json"
    cmd = [sys.executable, str(script), "--size-gb", "0.02", "--rounds", "1"]
    cmd += ["--workdir", str(tmp_path / "w"), "--json", str(out), "--batch-size", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for text in ["memcpy_2t", "zstd_decode_1core", "c_stratocast_zstd", "targets (issue 4)"]:
        assert text in proc.stdout
    res = json.loads(out.read_text())
    assert set(res["targets"]) == {
        "uncompressed_vs_memcpy",
        "uncompressed_vs_a",
        "compressed_vs_cores_x_decode",
    }
    for key in ["a_xarray_dataloader_none", "b_zarr_direct_zstd", "c_stratocast_none"]:
        assert res["median_gb_per_s"][key] > 0
    assert res["first_batch_mismatches"] == {k: 0 for k in res["first_batch_mismatches"]}
    mem = res["memory"]["none"]
    assert mem["buffers_allocated"] <= 4
    assert mem["pool_bytes"] == mem["buffers_allocated"] * mem["batch_bytes"]
