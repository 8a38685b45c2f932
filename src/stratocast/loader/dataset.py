"""Training windows read from the shards: normalised observations in, dense states out.

The shards of the demo fit in host memory, so the whole store is read once (the host tier)
through the checksummed shard reader; batches are then gathered with fancy indexing, which
NumPy runs without the GIL held for the copy, so the prefetch thread overlaps with the training
step.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from stratocast.shards.layout import GRID, OBS, ChannelStats, Manifest, ShardError, load_manifest
from stratocast.shards.reader import ShardArrayReader


def clock_features(times: np.ndarray) -> np.ndarray:
    """(T,) datetime64 → (T, 2) float32: UTC hour of day and day of year (fractional).

    Models derive their solar forcing (local time of day, season) from these; without them a
    stepper cannot know whether the sun is about to rise.
    """
    t = np.asarray(times).astype("datetime64[s]")
    day = t.astype("datetime64[D]")
    hour = (t - day).astype(np.int64) / 3600.0
    doy = (day - day.astype("datetime64[Y]")).astype(np.int64) + hour / 24.0
    return np.stack([hour, doy], axis=-1).astype(np.float32)


def normalise_obs(
    obs: np.ndarray, mean: np.ndarray, std: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Physical observations (NaN: missing) → (normalised float32 with 0 where missing, the
    finite mask). The shards' loader and an operational cycle both call this, so the same
    observations give the model the same bits."""
    mask = np.isfinite(obs)
    normalised = np.where(mask, (obs - mean) / std, 0.0)
    return normalised.astype(np.float32), mask


def _read_all(root: Path, name: str) -> np.ndarray:
    with ShardArrayReader(root, name) as reader:
        out = np.empty(reader.shape, dtype=reader.dtype)
        reader.read_block(0, reader.shape[0], out)
    return out


@dataclass(frozen=True)
class WindowSpec:
    history: int  # observation windows fed per sample, oldest first (cycling depth)
    rollout: int  # forecast steps after the last analysis time


class ShardStore:
    """The shards in host memory, normalised: by the shards' own statistics (training), or
    by a trained model's (``stats`` = its grid and observation statistics: forecasting from
    shards built since, whose statistics may differ)."""

    def __init__(self, root: Path, stats: tuple[ChannelStats, ChannelStats] | None = None) -> None:
        self.root = root
        self.manifest: Manifest = load_manifest(root)
        if not self.manifest.complete:
            raise ShardError(f"shards at {root} are incomplete: run the build's finalise step")
        gs, os_ = stats or (self.manifest.grid_stats, self.manifest.obs_stats)
        self.grid_mean = np.asarray(gs.mean, np.float32)[:, None, None]
        self.grid_std = np.asarray(gs.std, np.float32)[:, None, None]
        self.obs_mean = np.asarray(os_.mean, np.float32)
        self.obs_std = np.asarray(os_.std, np.float32)
        self.clock = clock_features(self.manifest.times())

    # The arrays are read on first use: a run that streams its batches from the shards
    # (train.loader = "stream") never holds the whole store unless it asks for these.
    @cached_property
    def state(self) -> np.ndarray:
        state = _read_all(self.root, GRID)
        if not np.all(np.isfinite(state)):
            bad = np.argwhere(~np.isfinite(state).all(axis=(1, 2, 3)))[:3].ravel().tolist()
            raise ShardError(f"{self.root / GRID}: missing or non-finite state at steps {bad}")
        return ((state - self.grid_mean) / self.grid_std).astype(np.float32)

    @cached_property
    def _obs_and_mask(self) -> tuple[np.ndarray, np.ndarray]:
        return normalise_obs(_read_all(self.root, OBS), self.obs_mean, self.obs_std)

    @property
    def obs(self) -> np.ndarray:
        return self._obs_and_mask[0]

    @property
    def obs_mask(self) -> np.ndarray:
        return self._obs_and_mask[1]

    def indices(self, start: str, end: str, spec: WindowSpec) -> np.ndarray:
        """Analysis indices whose whole sample (history and rollout) lies in [start, end]."""
        times = self.manifest.times()
        lo = int(np.searchsorted(times, np.datetime64(start, "ns"), side="left"))
        hi = int(np.searchsorted(times, np.datetime64(end, "ns"), side="right"))
        first, last = lo + spec.history - 1, hi - 1 - spec.rollout
        if last < first:
            raise ShardError(
                f"period {start}..{end} is too short for history {spec.history} and rollout "
                f"{spec.rollout} on shards covering {times[0]}..{times[-1]}"
            )
        return np.arange(first, last + 1)

    def batch(self, idx: np.ndarray, spec: WindowSpec) -> dict[str, np.ndarray]:
        hist = idx[:, None] + np.arange(-spec.history + 1, 1)[None, :]
        span = idx[:, None] + np.arange(-spec.history + 1, spec.rollout + 1)[None, :]
        return {
            "index": idx,
            "clock": self.clock[span],
            "obs": self.obs[hist],
            "obs_mask": self.obs_mask[hist].astype(np.float32),
            "target": self.state[span],
        }
