"""Versioned layout of the training shards.

``<shards>/grid.zarr``  dense state ``(time, channel, lat, lon)``: one inner chunk per time step
                        (the training stride) holding every channel, sharded along time so an
                        object store sees few large objects and a reader still fetches one step.
``<shards>/obs.zarr``   sparse observations per window as a fixed-capacity padded array
                        ``(time, slot, obs_variable)``: one slot per input station, NaN = no report,
                        so a batch of sparse observations loads exactly like a dense one.
``<shards>/manifest.json`` variables, units, grid, time axis, stations, statistics.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LAYOUT_VERSION = 1
MANIFEST = "manifest.json"
GRID = "grid.zarr"
OBS = "obs.zarr"


class ShardError(RuntimeError):
    """Shards are missing, incomplete or from an incompatible layout."""


@dataclass
class ChannelStats:
    mean: list[float]
    std: list[float]
    diff_std: list[float]  # std of the one-step tendency: scales the model's residual output


@dataclass
class Manifest:
    layout_version: int
    channels: list[str]
    units: list[str]
    obs_variables: list[str]
    lat: list[float]
    lon: list[float]
    time_start: str
    time_step_hours: int
    n_time: int
    window: str  # which observations a window at t holds, e.g. "(t-6h, t]"
    station_ids: list[str]
    station_lat: list[float]
    station_lon: list[float]
    station_elevation: list[float]
    stats_period: list[str]
    grid_stats: ChannelStats
    obs_stats: ChannelStats
    orography: list[list[float]] = field(default_factory=list)
    complete: bool = False

    def times(self) -> np.ndarray:
        start = np.datetime64(self.time_start, "ns")
        step = np.timedelta64(self.time_step_hours, "h")
        return start + np.arange(self.n_time) * step

    def time_index(self, t: np.datetime64) -> int:
        start = np.datetime64(self.time_start, "ns")
        delta = (np.asarray(t).astype("datetime64[ns]") - start) / np.timedelta64(
            self.time_step_hours, "h"
        )
        idx = round(float(delta))
        if not 0 <= idx < self.n_time or abs(delta - idx) > 1e-6:
            raise ShardError(f"time {t} is not on the shard time axis starting {self.time_start}")
        return idx

    def save(self, root: Path) -> None:
        tmp = root / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(root / MANIFEST)  # atomic: a reader never sees half a manifest


def load_manifest(root: Path) -> Manifest:
    path = root / MANIFEST
    if not path.is_file():
        raise ShardError(f"no shard manifest at {path}: run `stratocast shards` first")
    raw: dict[str, Any] = json.loads(path.read_text())
    if raw.get("layout_version") != LAYOUT_VERSION:
        raise ShardError(
            f"{path}: layout version {raw.get('layout_version')} but this stratocast reads "
            f"version {LAYOUT_VERSION}; rebuild the shards"
        )
    raw["grid_stats"] = ChannelStats(**raw["grid_stats"])
    raw["obs_stats"] = ChannelStats(**raw["obs_stats"])
    return Manifest(**raw)
