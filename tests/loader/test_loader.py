from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from stratocast.loader.dataset import ShardStore, WindowSpec, clock_features
from stratocast.loader.prefetch import PrefetchLoader
from stratocast.loader.sampler import WindowSampler
from stratocast.shards.layout import Manifest, ShardError


def _take(loader: PrefetchLoader, n: int) -> list[np.ndarray]:
    return [b["index"].numpy().copy() for b in itertools.islice(loader, n)]


def test_ranks_see_disjoint_deterministic_samples() -> None:
    idx = np.arange(100)
    r0 = WindowSampler(idx, 4, seed=3, rank=0, world_size=2)
    r1 = WindowSampler(idx, 4, seed=3, rank=1, world_size=2)
    b0 = np.concatenate(r0.epoch_batches(0))
    b1 = np.concatenate(r1.epoch_batches(0))
    assert not set(b0) & set(b1)
    assert len(b0) == len(b1) == 48  # ragged tail dropped: equal steps on every rank
    again = np.concatenate(WindowSampler(idx, 4, seed=3, rank=0, world_size=2).epoch_batches(0))
    np.testing.assert_array_equal(b0, again)
    assert not np.array_equal(b0, np.concatenate(r0.epoch_batches(1)))  # reshuffled per epoch


def test_too_few_samples_for_a_batch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="cannot fill one batch"):
        WindowSampler(np.arange(5), 4, seed=0, world_size=2)


@pytest.mark.parametrize("world_size", [1, 2])
def test_resume_replays_exactly_the_remaining_batches(world_size: int) -> None:
    idx = np.arange(40)
    for rank in range(world_size):

        def make(rank: int = rank) -> PrefetchLoader:
            s = WindowSampler(idx, 3, seed=7, rank=rank, world_size=world_size)
            return PrefetchLoader(s, lambda i: {"index": i}, depth=4)

        full = _take(make(), 15)  # crosses an epoch boundary
        first = make()
        head = _take(first, 6)
        state = first.state_dict()  # the prefetcher has run ahead; the state must not
        first.close()
        resumed = make()
        resumed.load_state_dict(state)
        tail = _take(resumed, 9)
        for a, b in zip(head + tail, full, strict=True):
            np.testing.assert_array_equal(a, b)


def test_prefetch_is_bounded_and_reports_metrics() -> None:
    s = WindowSampler(np.arange(64), 2, seed=0)
    loader = PrefetchLoader(s, lambda i: {"index": i}, depth=3)
    it = iter(loader)
    next(it)
    assert loader._queue.maxsize == 3
    assert loader._queue.qsize() <= 3
    for _ in range(5):
        next(it)
    m = loader.metrics.snapshot()
    assert loader.metrics.batches == 6
    assert m["loader_wait_s"] >= 0.0
    loader.close()


def test_errors_in_the_producer_reach_the_consumer() -> None:
    def broken(i: np.ndarray) -> dict[str, np.ndarray]:
        raise OSError(f"chunk for samples {i.tolist()} unreadable")

    loader = PrefetchLoader(WindowSampler(np.arange(8), 2, seed=0), broken, depth=2)
    with pytest.raises(OSError, match="unreadable"):
        next(iter(loader))


def test_store_batches_are_normalised_windows(
    tiny_shards: tuple[Path, Manifest], tiny_truth: xr.Dataset
) -> None:
    root, m = tiny_shards
    store = ShardStore(root)
    spec = WindowSpec(history=2, rollout=3)
    idx = store.indices("2000-01-01T00", "2000-01-10T00", spec)
    assert idx[0] == 1 and idx[-1] == 36 - 3
    b = store.batch(idx[:4], spec)
    assert b["obs"].shape == (4, 2, len(m.station_ids), 4)
    assert b["target"].shape == (4, 5, 6, 16, 32)
    assert b["clock"].shape == (4, 5, 2)
    k = m.channels.index("t2m")
    raw = b["target"][0, 0, k] * store.grid_std[k] + store.grid_mean[k]
    np.testing.assert_allclose(raw, tiny_truth["t2m"].values[idx[0] - 1], rtol=1e-6)
    assert np.all(b["obs"][b["obs_mask"] == 0] == 0)
    assert torch.from_numpy(b["target"]).dtype == torch.float32
    with pytest.raises(ShardError, match="too short"):
        store.indices("2000-01-01T00", "2000-01-01T06", spec)


def test_clock_features() -> None:
    t = np.array(["2000-01-01T06", "2000-12-31T18"], dtype="datetime64[ns]")
    c = clock_features(t)
    np.testing.assert_allclose(c, [[6.0, 0.25], [18.0, 365.75]])
