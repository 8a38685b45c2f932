"""Restartable shard build: ``init`` → ``load_part(i, n)`` → ``finalise``.

Each part covers whole shards along time, so parts never write the same object and can run
in any order, in parallel, or again after a crash (idempotent: every shard object is replaced
atomically together with its checksum record). ``finalise`` gathers the per-chunk checksums
into the manifest and merges the per-shard partial statistics the writers stored next to each
shard (:mod:`stratocast.shards.partial_stats`), re-reading only shards whose partial is missing
or stale.

The generic writer (``create_array``, ``write_block``, ``record_checksums``; see
:mod:`stratocast.shards.writer`) is re-exported here for code that builds other sharded
arrays, such as the loader benchmark's synthetic stores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr
import zarr
from pydantic import Field
from tqdm import tqdm

from stratocast.config import ComponentConfig, count
from stratocast.shards import partial_stats
from stratocast.shards.layout import (
    GRID,
    LAYOUT_VERSION,
    OBS,
    ArrayManifest,
    ChannelStats,
    Manifest,
    ShardError,
    load_manifest,
)
from stratocast.shards.stations import HeldOutConfig
from stratocast.shards.target import TargetConfig, TargetError
from stratocast.shards.windows import obs_windows
from stratocast.shards.writer import create_array, new_array, record_checksums, write_block
from stratocast.vocab.variables import get as get_variable


class ShardsConfig(ComponentConfig):
    # Where the dense fields come from (the world's truth, or any reanalysis: target.py).
    target: TargetConfig = TargetConfig()
    # Verification stations kept out of the shards; None: the world's own list where there is
    # one, else 15 % spread over the domain (stations.py).
    held_out: HeldOutConfig | None = None
    channels: list[str] = Field(default=["t2m", "u10", "v10", "msl", "z500", "t850"], min_length=1)
    obs_variables: list[str] = Field(default=["t2m", "u10", "v10", "msl"], min_length=1)
    stats_start: str = "2000-01-01T00"
    stats_end: str = "2000-10-31T18"
    shard_steps: int = count(64, le=100_000)  # steps per shard object (object-store sized)
    chunk_steps: int = count(1, le=100_000)  # steps per inner chunk: the training stride
    channel_group: int | None = count(None, le=10_000)  # channels per chunk; None = all
    tile: tuple[int, int] | None = None  # (lat, lon) extent of a chunk; None = whole grid
    compression: Literal["zstd", "none"] = "zstd"


__all__ = [
    "ShardsConfig",
    "build",
    "create_array",
    "finalise",
    "init",
    "load_part",
    "part_range",
    "record_checksums",
    "write_block",
]


def init(
    cfg: ShardsConfig,
    truth: xr.Dataset,
    obs: pd.DataFrame,
    out: Path,
) -> Manifest:
    """Create empty arrays and a provisional manifest (``complete=False``)."""
    for name in [*cfg.channels, *cfg.obs_variables]:
        get_variable(name)  # unknown names fail here with the list of known ones
    missing = [c for c in cfg.channels if c not in truth]
    if missing:
        raise ShardError(f"gridded input lacks channels {missing}; it has {list(truth.data_vars)}")
    times = truth["time"].values.astype("datetime64[ns]")
    if len(times) < 2:
        raise ShardError("gridded input needs at least two time steps")
    step = (times[1] - times[0]) / np.timedelta64(1, "h")
    if not np.all(np.diff(times) == times[1] - times[0]):
        raise ShardError("gridded input time axis is not regular")
    stations = (
        obs.sort_values("station_id")
        .drop_duplicates("station_id")[["station_id", "lat", "lon", "elevation"]]
        .reset_index(drop=True)
    )
    n_t, n_c = len(times), len(cfg.channels)
    n_lat, n_lon = truth.sizes["lat"], truth.sizes["lon"]
    out.mkdir(parents=True, exist_ok=True)
    grid = new_array(
        out,
        GRID,
        (n_t, n_c, n_lat, n_lon),
        np.float32,
        cfg.chunk_steps,
        cfg.shard_steps,
        cfg.compression,
        ["time", "channel", "lat", "lon"],
        chunk_inner=(cfg.channel_group or n_c, *(cfg.tile or (n_lat, n_lon))),
    )
    obs_arr = new_array(
        out,
        OBS,
        (n_t, len(stations), len(cfg.obs_variables)),
        np.float32,
        cfg.chunk_steps,
        cfg.shard_steps,
        cfg.compression,
        ["time", "slot", "variable"],
    )
    oro = truth["orography"].values if "orography" in truth else np.zeros((n_lat, n_lon))
    empty = ChannelStats(mean=[], std=[], diff_std=[])
    manifest = Manifest(
        layout_version=LAYOUT_VERSION,
        channels=list(cfg.channels),
        units=[get_variable(c).units for c in cfg.channels],
        obs_variables=list(cfg.obs_variables),
        lat=[float(x) for x in truth["lat"].values],
        lon=[float(x) for x in truth["lon"].values],
        time_start=str(times[0]),
        time_step_hours=int(step),
        n_time=n_t,
        window=f"(t-{int(step)}h, t]",
        station_ids=stations["station_id"].astype(str).tolist(),
        station_lat=stations["lat"].astype(float).tolist(),
        station_lon=stations["lon"].astype(float).tolist(),
        station_elevation=stations["elevation"].astype(float).fillna(0.0).tolist(),
        stats_period=[cfg.stats_start, cfg.stats_end],
        grid_stats=empty,
        obs_stats=empty,
        orography=np.asarray(oro, dtype=float).tolist(),
        arrays={GRID: grid, OBS: obs_arr},
    )
    manifest.save(out)
    return manifest


def part_range(manifest: Manifest, shard_steps: int, part: int, n_parts: int) -> range:
    """Time indices of part ``part`` of ``n_parts``: whole shards only."""
    if not 0 <= part < n_parts:
        raise ShardError(f"part {part} out of range for {n_parts} parts")
    n_shards = -(-manifest.n_time // shard_steps)
    lo = (n_shards * part // n_parts) * shard_steps
    hi = min((n_shards * (part + 1) // n_parts) * shard_steps, manifest.n_time)
    return range(lo, hi)


def _obs_windows(obs: pd.DataFrame, manifest: Manifest, times: range) -> np.ndarray:
    """Latest report per (window, station, variable) as a padded dense array: the one window
    code the product cycles run too (stratocast.shards.windows)."""
    first = np.datetime64(manifest.time_start, "ns") + times.start * np.timedelta64(
        manifest.time_step_hours, "h"
    )
    return obs_windows(
        obs,
        manifest.station_ids,
        manifest.obs_variables,
        first,
        manifest.time_step_hours,
        len(times),
    )


def load_part(
    cfg: ShardsConfig,
    truth: xr.Dataset,
    obs: pd.DataFrame,
    out: Path,
    part: int = 0,
    n_parts: int = 1,
    progress: bool = True,
) -> range:
    import threading

    from stratocast.shards.pipeline import pipelined, read_block

    manifest = load_manifest(out)
    rng = part_range(manifest, cfg.shard_steps, part, n_parts)
    spans = [
        (lo, min(lo + cfg.shard_steps, rng.stop))
        for lo in range(rng.start, rng.stop, cfg.shard_steps)
    ]
    channels = list(cfg.channels)
    bar = tqdm(
        total=len(spans),
        desc=f"shards part {part + 1}/{n_parts}",
        disable=not progress,
        unit="shard",
    )

    def read(span: tuple[int, int]) -> np.ndarray:
        # All channels at once, the source's chunks fetched in batched calls.
        return read_block(truth, channels, *span)

    def check(span: tuple[int, int], block: np.ndarray) -> None:
        _check_complete(block, channels, manifest, span[0])

    counted = threading.Lock()  # the bar is advanced from the writer threads

    window = _stats_window(cfg, manifest)

    def write(span: tuple[int, int], block: np.ndarray) -> None:
        lo, hi = span
        windows = _obs_windows(obs, manifest, range(lo, hi))
        write_block(out, GRID, lo, block)
        write_block(out, OBS, lo, windows)
        # The statistics of this shard while it is in memory (finalise merges them): after
        # the shard and its checksum record, whose fingerprint the partial carries.
        a, b = max(lo, window[0]), min(hi, window[1])
        if a < b:
            shard = lo // cfg.shard_steps
            for name, values, axis in ((GRID, block, 1), (OBS, windows, 2)):
                part = partial_stats.partial(values[a - lo : b - lo], a, channel_axis=axis)
                partial_stats.save(out, manifest.arrays[name], shard, part)
        with counted:
            bar.update(1)

    # Block i + 1 is read while block i is compressed and written, two shards at a time.
    # Each shard is still written whole and atomically by write_block, with its own checksum
    # record: a part stays restartable and idempotent, whatever order the writes finish in.
    with bar:
        pipelined(spans, read, check, write)
    return rng


def _check_complete(block: np.ndarray, channels: list[str], manifest: Manifest, t0: int) -> None:
    """The target must be a complete field: a NaN would reach the loss (a sea-surface field
    over land, a source's missing-value bitmap, a regrid outside the source's extent)."""
    bad = ~np.isfinite(block)
    if not bad.any():
        return
    t, c = (int(i[0]) for i in np.nonzero(bad.any(axis=(2, 3))))
    when = manifest.times()[t0 + t]
    n = int(bad[t, c].sum())
    raise TargetError(
        f"target channel {channels[c]!r} at {np.datetime_as_string(when, unit='m')}: {n} of "
        f"{bad[t, c].size} grid points are missing or not finite; the training target must be "
        "complete (choose a region or grid inside the source's valid area)"
    )


def _stats_window(cfg: ShardsConfig, manifest: Manifest) -> tuple[int, int]:
    """Time indices ``lo..hi-1`` of the statistics period."""
    times = manifest.times()
    lo = int(np.searchsorted(times, np.datetime64(cfg.stats_start, "ns"), side="left"))
    hi = int(np.searchsorted(times, np.datetime64(cfg.stats_end, "ns"), side="right"))
    return lo, hi


def _merged_stats(
    out: Path, spec: ArrayManifest, lo: int, hi: int, channel_axis: int
) -> ChannelStats:
    """Steps ``lo..hi-1``: the writers' partials, shard by shard in order; a shard without a
    valid one (a part built before the period changed, an older build) is read back."""
    steps = spec.shard_shape[0]
    arr: zarr.Array | None = None
    merged = partial_stats.Merger()  # streamed: one shard's partial in memory at a time
    for shard in range(lo // steps, (hi - 1) // steps + 1):
        a, b = max(lo, shard * steps), min(hi, (shard + 1) * steps)
        got = partial_stats.load(out, spec, shard, a, b)
        if got is None:
            if arr is None:
                arr = zarr.open_array(str(out / spec.path), mode="r")
            got = partial_stats.partial(np.asarray(arr[a:b]), a, channel_axis)
        merged.add(got)
    return merged.result()


def finalise(cfg: ShardsConfig, out: Path) -> Manifest:
    # A part that never ran leaves shards absent: record_checksums names them and refuses.
    record_checksums(out, GRID)
    record_checksums(out, OBS)
    manifest = load_manifest(out)
    lo, hi = _stats_window(cfg, manifest)
    if hi - lo < 2:
        raise ShardError(
            f"statistics period {cfg.stats_start}..{cfg.stats_end} holds {hi - lo} time steps "
            f"of the shards ({manifest.time_start}, {manifest.n_time} steps); need at least 2"
        )
    manifest.grid_stats = _merged_stats(out, manifest.arrays[GRID], lo, hi, channel_axis=1)
    manifest.obs_stats = _merged_stats(out, manifest.arrays[OBS], lo, hi, channel_axis=2)
    if not np.all(np.isfinite(manifest.grid_stats.std)):
        raise ShardError(f"{out / GRID}: non-finite statistics; some time steps were not loaded")
    manifest.complete = True
    manifest.save(out)
    return manifest


def build(
    cfg: ShardsConfig,
    truth: xr.Dataset,
    obs: pd.DataFrame,
    out: Path,
    progress: bool = True,
) -> Manifest:
    init(cfg, truth, obs, out)
    load_part(cfg, truth, obs, out, 0, 1, progress=progress)
    return finalise(cfg, out)
