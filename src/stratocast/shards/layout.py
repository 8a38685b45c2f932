"""Versioned layout of the training shards (layout version 2).

``<shards>/grid.zarr``  dense state ``(time, channel, lat, lon)``, a Zarr v3 array with the
                        sharding codec. Inner chunks are aligned with the training stride:
                        ``chunk_steps`` time steps (default 1) × a channel group (default all
                        channels) × a region tile (default the whole grid). A shard holds
                        ``shard_steps`` steps of every channel and tile, so an object store sees
                        few large objects while a reader still decodes one step.
``<shards>/obs.zarr``   sparse observations per window as a fixed-capacity padded array
                        ``(time, slot, obs_variable)``: one slot per input station, NaN = no report,
                        so a batch of sparse observations loads exactly like a dense one.
``<shards>/manifest.json`` variables, units, grid, time axis, stations, statistics, and per
                        array (``arrays``) the chunk and shard geometry, each shard object's size
                        and the crc32c of every stored inner chunk.

Shard objects are ordinary Zarr v3 shards (inner chunks, then the index of ``(offset, nbytes)``
uint64 pairs and its crc32c), written by :mod:`stratocast.shards.writer`, so zarr-python reads
them too. The per-chunk checksums live in the manifest rather than in a ``crc32c`` codec inside
each chunk: a reader then checks the bytes it got against what the *builder* wrote, which also
catches a stale or swapped shard object whose embedded checksums would still be self-consistent,
and the stored chunks stay plain (an uncompressed chunk is exactly the array bytes, which the
memory-mapped read path copies with one memcpy).

A store made only of generic arrays (:func:`stratocast.shards.writer.create_array`, e.g. the
loader benchmark's synthetic stores) has a manifest with just ``layout_version`` and ``arrays``.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stratocast.errors import StratocastError

LAYOUT_VERSION = 2
MANIFEST = "manifest.json"
GRID = "grid.zarr"
OBS = "obs.zarr"
CHECKSUM_DIR = "checksums"  # per-shard checksum records inside each array, gathered at finalise
EMPTY_CHUNK = -1  # checksum entry of a chunk that was legitimately not stored (all fill value)
MAX_UINT64 = 2**64 - 1  # Zarr v3 sharding: (offset, nbytes) of an absent inner chunk


class ShardError(StratocastError, RuntimeError):
    """Shards are missing, incomplete or from an incompatible layout."""


class ShardChecksumError(ShardError):
    """Stored bytes differ from what the builder recorded (corrupt, truncated or missing)."""

    def __init__(
        self, message: str, *, array: str, shard: str, chunk: tuple[int, ...] | None = None
    ) -> None:
        super().__init__(message)
        self.array = array
        self.shard = shard
        self.chunk = chunk


@dataclass
class ChannelStats:
    mean: list[float]
    std: list[float]
    diff_std: list[float]  # std of the one-step tendency: scales the model's residual output


@dataclass
class ArrayManifest:
    """Geometry and integrity record of one sharded array; the time axis is axis 0."""

    path: str  # the Zarr array, relative to the store root
    shape: list[int]
    dtype: str  # NumPy dtype string, little-endian (e.g. "<f4")
    chunk_shape: list[int]  # inner chunk: (chunk_steps, *group/tile extents)
    shard_shape: list[int]  # (shard_steps, *whole extents rounded up to chunk multiples)
    compression: str  # "zstd" or "none"
    fill_value: float | int
    dimension_names: list[str]
    # Recorded once every shard is written (record_checksums / finalise):
    shard_nbytes: list[int] = field(default_factory=list)  # size of each shard object
    checksums: list[int] = field(default_factory=list)  # crc32c per chunk, C order; EMPTY_CHUNK

    @property
    def np_dtype(self) -> np.dtype[Any]:
        return np.dtype(self.dtype)

    @property
    def chunk_grid(self) -> tuple[int, ...]:
        return tuple(math.ceil(s / c) for s, c in zip(self.shape, self.chunk_shape, strict=True))

    @property
    def chunks_per_shard(self) -> tuple[int, ...]:
        return tuple(s // c for s, c in zip(self.shard_shape, self.chunk_shape, strict=True))

    @property
    def n_shards(self) -> int:
        return math.ceil(self.shape[0] / self.shard_shape[0])

    @property
    def recorded(self) -> bool:
        return len(self.checksums) == math.prod(self.chunk_grid)

    def shard_key(self, shard: int) -> str:
        """Object key of shard ``shard`` (along time) relative to the store root."""
        rest = "/".join("0" for _ in self.shape[1:])
        return f"{self.path}/c/{shard}/{rest}" if rest else f"{self.path}/c/{shard}"

    def chunk_number(self, coords: tuple[int, ...]) -> int:
        """Position of the chunk at grid ``coords`` in ``checksums``."""
        return int(np.ravel_multi_index(coords, self.chunk_grid))

    def steps_of_chunk(self, chunk_t: int) -> range:
        lo = chunk_t * self.chunk_shape[0]
        return range(lo, min(lo + self.chunk_shape[0], self.shape[0]))


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
    arrays: dict[str, ArrayManifest] = field(default_factory=dict)
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
        write_json_atomic(root / MANIFEST, asdict(self))


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)  # atomic: a reader never sees half a manifest


def check_version(raw: dict[str, Any], where: str) -> None:
    if raw.get("layout_version") != LAYOUT_VERSION:
        raise ShardError(
            f"{where}: layout version {raw.get('layout_version')} but this stratocast reads "
            f"version {LAYOUT_VERSION}; rebuild the shards"
        )


def parse_arrays(raw: dict[str, Any], where: str) -> dict[str, ArrayManifest]:
    arrays = raw.get("arrays", {})
    if not isinstance(arrays, dict):
        raise ShardError(f"{where}: 'arrays' is not a mapping")
    return {name: ArrayManifest(**spec) for name, spec in arrays.items()}


def load_manifest(root: Path) -> Manifest:
    path = root / MANIFEST
    if not path.is_file():
        raise ShardError(f"no shard manifest at {path}: run `stratocast shards` first")
    raw: dict[str, Any] = json.loads(path.read_text())
    check_version(raw, str(path))
    raw["grid_stats"] = ChannelStats(**raw["grid_stats"])
    raw["obs_stats"] = ChannelStats(**raw["obs_stats"])
    raw["arrays"] = parse_arrays(raw, str(path))
    return Manifest(**raw)
