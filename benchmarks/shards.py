"""Training-shard build against the generic xarray path, in one run.

    python benchmarks/shards.py [--steps 512] [--rounds 3] [--source zarr netcdf]
                                [--memory-steps 256 512 1024] [--no-previous]
                                [--workdir runs/bench-shards] [--json FILE]

Source (built once under ``--workdir/source`` for the longest length asked, reused after):
the real ERA5 NetCDF sample ``/work/shared/data/netcdf/era5_1995-07-14T12.nc`` (0.25°,
105 × 237 over the contiguous US; t2m, d2m, u10, v10, sp) tiled in time and perturbed so every
step differs as real hours do: a diurnal cycle whose phase follows longitude, slowly drifting
low-order spatial modes and a little white noise, each scaled per variable; ``msl`` (absent
from the sample) is sp's anomaly pattern around 1013 hPa. Hourly steps from 1995-07-01T00,
float32, written twice:

* ``netcdf/era5_YYYYMMDD.nc``: one NetCDF4 file per day as the CDS delivers them (CDS short
  names, ``latitude`` descending, ``longitude`` -125..-66, no compression);
* ``arco.zarr``: a Zarr v2 store laid out as ARCO-ERA5 (:func:`stratocast.testing.era5_layouts.
  write_arco_era5`: ``2m_temperature`` … on ``(time, latitude, longitude)``, latitude
  descending, time chunk 1, Blosc-lz4, consolidated).

Every job cuts the same time range (the first ``--steps`` hourly steps; the NetCDF jobs open
just the days holding them) and region (lat 30..45, lon -110..-80: 61 × 121 points) of the
six channels and writes one time step per chunk with zstd level 3:

* baseline: ``xr.open_mfdataset(files)`` / ``xr.open_zarr(store)`` → ``[vars]`` → ``.sel`` of
  time and region → ``.to_zarr(out, encoding=zstd, chunks (1, lat, lon))``, as a user writes
  it (dask's threaded scheduler on both cores);
* ours: :func:`stratocast.shards.target.open_target` + :func:`stratocast.shards.build.build`
  (init → load_part → finalise, timed by phase: besides the grid it writes the observation
  windows of 20 synthetic stations, the per-chunk crc32c records and the normalisation
  statistics — taken by the writers shard by shard, merged by finalise — none of which the
  baseline does). The daily NetCDF files go to ``open_target`` as a list of paths (each
  opened once, joined along time lazily, one dask chunk per file, as ``open_mfdataset`` has
  it);
* previous (``--no-previous`` skips it): ours with the ``load_part`` loop as it was before
  :mod:`stratocast.shards.pipeline` (copied here), to show what that change did.

Measured in interleaved rounds after one untimed warm-up of every job (each job once per
round, the order reversed every other round), the median of each quoted with the ratio
baseline / job. The outputs are compared value for value once per source (ours has latitude
ascending: flipped before comparing).

Peak memory of ours: each ``--memory-steps`` length builds in a child process, which polls its
own ``VmRSS``/``RssAnon`` every 2 ms and runs tracemalloc (which sees NumPy's buffers), for
the shard writing (init + load_part) and the statistics pass (finalise) separately; growth
over the state after the imports and the lazy open is quoted against the stated bounds of
:func:`memory_bounds`, which depend on ``shard_steps`` and the grids, not on the number of
time steps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

SAMPLE = Path("/work/shared/data/netcdf/era5_1995-07-14T12.nc")
START = np.datetime64("1995-07-01T00", "ns")
CHANNELS = ["t2m", "d2m", "u10", "v10", "sp", "msl"]
ARCO_NAMES = {
    "t2m": "2m_temperature",
    "d2m": "2m_dewpoint_temperature",
    "u10": "10m_u_component_of_wind",
    "v10": "10m_v_component_of_wind",
    "sp": "surface_pressure",
    "msl": "mean_sea_level_pressure",
}
UNITS = {"t2m": "K", "d2m": "K", "u10": "m s**-1", "v10": "m s**-1", "sp": "Pa", "msl": "Pa"}
# Per-variable amplitudes: (diurnal, drifting modes, white noise), in the variable's units.
AMPLITUDE = {
    "t2m": (6.0, 3.0, 0.05),
    "d2m": (2.0, 2.0, 0.05),
    "u10": (1.5, 3.0, 0.05),
    "v10": (1.5, 3.0, 0.05),
    "sp": (80.0, 600.0, 2.0),
    "msl": (80.0, 600.0, 2.0),
}
REGION = {"lat_min": 30.0, "lat_max": 45.0, "lon_min": -110.0, "lon_max": -80.0}
SHARD_STEPS = 64
SOURCE_VERSION = 1
K_BOUND = 7.0  # output blocks held at once by ours' load_part: see memory_bounds
K_STATS = 10.0  # channel shares of a block in the writers' statistics: memory_bounds
K_FINALISE = 1.0 + 5.0 / len(CHANNELS)  # finalise re-reading a shard: memory_bounds


# -- source ------------------------------------------------------------------------------------


def sample_fields() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The sample's fields (float32, latitude descending as stored), its lat and lon."""
    with xr.open_dataset(SAMPLE) as ds:
        lat = ds["latitude"].values.astype(np.float32)
        lon = ds["longitude"].values.astype(np.float32)
        base = {v: ds[v].values.astype(np.float32) for v in ("t2m", "d2m", "u10", "v10", "sp")}
    sp = base["sp"]
    base["msl"] = (101325.0 + 0.05 * (sp - sp.mean())).astype(np.float32)
    return base, lat, lon


def synthesise(n_time: int, t0: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Steps ``t0 .. t0 + n_time`` of every channel, (time, latitude desc, longitude)."""
    base, lat, lon = sample_fields()
    hours = np.arange(t0, t0 + n_time, dtype=np.float64)
    la = np.deg2rad(lat.astype(np.float64))[:, None]
    lo = np.deg2rad(lon.astype(np.float64))[None, :]
    # Local solar time from longitude: the diurnal wave crosses the domain west→east.
    diurnal = np.sin(2 * np.pi * (hours[:, None, None] / 24.0) + lo[None])
    modes = [np.sin(2 * la) * np.cos(3 * lo), np.cos(4 * la) * np.sin(2 * lo), np.sin(5 * lo)]
    periods = [97.0, 151.0, 233.0]  # hours: weather-like drift, never repeating in the run
    rng = np.random.default_rng(t0)
    out: dict[str, np.ndarray] = {}
    for k, c in enumerate(CHANNELS):
        a_d, a_m, a_n = AMPLITUDE[c]
        drift = sum(
            np.sin(2 * np.pi * hours / p + k)[:, None, None] * m[None]
            for p, m in zip(periods, modes, strict=True)
        )
        field = base[c][None] + a_d * diurnal + a_m * drift
        field += a_n * rng.standard_normal(field.shape)
        out[c] = field.astype(np.float32)
    times = START + np.arange(t0, t0 + n_time) * np.timedelta64(1, "h")
    return out, times


def ensure_source(workdir: Path, n_time: int) -> dict[str, Any]:
    """The daily NetCDF files and the ARCO-ERA5-like store of ``n_time`` hourly steps."""
    days = -(-n_time // 24)
    src = workdir / "source"
    stamp = src / "source.json"
    want = {"version": SOURCE_VERSION, "days": days, "sample": str(SAMPLE)}
    if stamp.is_file():
        have = json.loads(stamp.read_text())
        if {**have, "days": days} == want and have["days"] >= days:
            return _source_paths(src, have["days"])
    shutil.rmtree(src, ignore_errors=True)
    (src / "netcdf").mkdir(parents=True)
    _, lat, lon = sample_fields()
    t_start = time.perf_counter()
    canon: dict[str, list[np.ndarray]] = {c: [] for c in CHANNELS}
    all_times: list[np.ndarray] = []
    for d in range(days):
        fields, times = synthesise(24, 24 * d)
        ds = xr.Dataset(
            {
                c: (("time", "latitude", "longitude"), fields[c], {"units": UNITS[c]})
                for c in fields
            },
            coords={
                "time": times,
                "latitude": ("latitude", lat, {"units": "degrees_north"}),
                "longitude": ("longitude", lon, {"units": "degrees_east"}),
            },
        )
        day = str(np.datetime_as_string(times[0], unit="D")).replace("-", "")
        ds.to_netcdf(src / "netcdf" / f"era5_{day}.nc", engine="netcdf4")
        for c in CHANNELS:
            canon[c].append(fields[c][:, ::-1])  # canonical: latitude ascending
        all_times.append(times)
    from stratocast.testing.era5_layouts import write_arco_era5

    lon360 = np.mod(lon.astype(np.float64), 360.0)
    ds = xr.Dataset(
        {c: (("time", "lat", "lon"), np.concatenate(canon[c])) for c in CHANNELS},
        coords={
            "time": np.concatenate(all_times),
            "lat": lat[::-1].astype(np.float64),
            "lon": lon360,
        },
    )
    del canon
    write_arco_era5(ds, src / "arco.zarr")
    print(
        f"source: {days} daily NetCDF files + ARCO store in {time.perf_counter() - t_start:.0f} s"
    )
    stamp.write_text(json.dumps(want))
    return _source_paths(src, days)


def _source_paths(src: Path, days: int) -> dict[str, Any]:
    files = sorted((src / "netcdf").glob("era5_*.nc"))
    assert len(files) == days, (len(files), days)
    return {"netcdf": files, "zarr": src / "arco.zarr"}


def time_range(n_time: int) -> tuple[np.datetime64, np.datetime64]:
    return START, START + (n_time - 1) * np.timedelta64(1, "h")


# -- the two jobs ------------------------------------------------------------------------------


def baseline_open(kind: str, source: Any, n_time: int) -> xr.Dataset:
    """What a user writes with xarray alone: open, pick the variables, cut time and region."""
    t0, t1 = time_range(n_time)
    if kind == "netcdf":
        ds = xr.open_mfdataset(days_for(source, n_time))[CHANNELS]
        lon = slice(REGION["lon_min"], REGION["lon_max"])
    else:
        ds = xr.open_zarr(source)[[ARCO_NAMES[c] for c in CHANNELS]]
        lon = slice(REGION["lon_min"] % 360.0, REGION["lon_max"] % 360.0)
    # latitude is stored descending in both archives: the slice runs north→south
    return ds.sel(
        time=slice(t0, t1), latitude=slice(REGION["lat_max"], REGION["lat_min"]), longitude=lon
    )


def run_baseline(kind: str, source: Any, n_time: int, out: Path) -> None:
    from zarr.codecs import ZstdCodec

    # the source's own encoding (Blosc, its chunks) would be carried over: drop it, as the
    # xarray docs advise when changing format
    ds = baseline_open(kind, source, n_time).drop_encoding()
    enc = {
        str(v): {
            "compressors": ZstdCodec(level=3),
            "chunks": (1, ds.sizes["latitude"], ds.sizes["longitude"]),
        }
        for v in ds.data_vars
    }
    ds.to_zarr(out, mode="w", encoding=enc)


def ours_config(n_time: int) -> Any:
    from stratocast.shards.build import ShardsConfig
    from stratocast.shards.target import RegionConfig, TargetConfig

    t0, t1 = (str(np.datetime_as_string(t, unit="h")) for t in time_range(n_time))
    return ShardsConfig(
        target=TargetConfig(source="unused", start=t0, end=t1, region=RegionConfig(**REGION)),
        channels=CHANNELS,
        obs_variables=["t2m"],
        stats_start=t0,
        stats_end=t1,
        shard_steps=SHARD_STEPS,
    )


def _no_world() -> Path:
    raise RuntimeError("the benchmark has no world")


def ours_open(kind: str, source: Any, n_time: int, cache: Path) -> xr.Dataset:
    from stratocast.shards.target import open_target

    cfg = ours_config(n_time).target
    if kind == "zarr":
        return open_target(
            cfg.model_copy(update={"source": str(source)}),
            CHANNELS,
            world_truth=_no_world,
            cache_dir=cache,
        )
    # the daily files as the list a user gives (or a glob): opened once each, joined lazily
    files = [str(f) for f in days_for(source, n_time)]
    return open_target(
        cfg.model_copy(update={"source": files}),
        CHANNELS,
        world_truth=_no_world,
        cache_dir=cache,
    )


def days_for(files: Sequence[Path], n_time: int) -> list[Path]:
    """The daily files holding the first ``n_time`` steps (both jobs open just these)."""
    return list(files[: -(-n_time // 24)])


def stations() -> pd.DataFrame:
    """20 stations in the region, one t2m report each per 6 h (the build needs a station)."""
    rng = np.random.default_rng(7)
    ids = [f"S{i:02d}" for i in range(20)]
    lat = rng.uniform(REGION["lat_min"], REGION["lat_max"], 20)
    lon = rng.uniform(REGION["lon_min"], REGION["lon_max"], 20)
    times = pd.date_range(str(START), periods=64 * 24 // 6, freq="6h", tz="UTC")
    rows = [
        (s, la, lo, 100.0, t, "t2m", 290.0 + i % 7)
        for i, t in enumerate(times)
        for s, la, lo in zip(ids, lat, lon, strict=True)
    ]
    cols = ["station_id", "lat", "lon", "elevation", "time", "variable", "value"]
    return pd.DataFrame(rows, columns=cols)


PHASES: list[tuple[float, float, float]] = []  # ours: (open, init + load_part, finalise) s


def run_ours(kind: str, source: Any, n_time: int, out: Path) -> None:
    """``open_target`` + ``build`` (spelled out as build does it, to time its phases)."""
    from stratocast.shards.build import finalise, init, load_part

    t0 = time.perf_counter()
    truth = ours_open(kind, source, n_time, out.parent / "cache")
    cfg, obs = ours_config(n_time), stations()
    t1 = time.perf_counter()
    init(cfg, truth, obs, out)
    load_part(cfg, truth, obs, out, 0, 1, progress=False)
    t2 = time.perf_counter()
    finalise(cfg, out)
    PHASES.append((t1 - t0, t2 - t1, time.perf_counter() - t2))


def run_previous(kind: str, source: Any, n_time: int, out: Path) -> None:
    """Ours as it was before ``shards.pipeline`` (commit c77f222's ``load_part`` loop, copied
    here): one ``.load()`` per shard through dask's scheduler, then the write, in sequence."""
    from stratocast.shards import build as b
    from stratocast.shards.layout import GRID, OBS, load_manifest

    cfg = ours_config(n_time)
    truth = ours_open(kind, source, n_time, out.parent / "cache")
    obs = stations()
    b.init(cfg, truth, obs, out)
    manifest = load_manifest(out)
    for lo in range(0, manifest.n_time, cfg.shard_steps):
        hi = min(lo + cfg.shard_steps, manifest.n_time)
        fields = truth[list(cfg.channels)].isel(time=slice(lo, hi)).load()
        block = np.stack([fields[c].values.astype(np.float32) for c in cfg.channels], axis=1)
        b._check_complete(block, cfg.channels, manifest, lo)
        b.write_block(out, GRID, lo, block)
        b.write_block(out, OBS, lo, b._obs_windows(obs, manifest, range(lo, hi)))
    b.finalise(cfg, out)


# -- checks ------------------------------------------------------------------------------------


def check_equal(kind: str, base_out: Path, ours_out: Path) -> int:
    """Both outputs hold the same values; returns the number of values compared."""
    import zarr

    from stratocast.shards.layout import GRID

    grid = np.asarray(zarr.open_array(str(ours_out / GRID), mode="r")[...])
    base = xr.open_zarr(base_out)
    names = CHANNELS if kind == "netcdf" else [ARCO_NAMES[c] for c in CHANNELS]
    for k, name in enumerate(names):
        ref = base[name].values[:, ::-1]  # ours: latitude ascending
        if ref.shape != grid[:, k].shape or not np.array_equal(ref, grid[:, k]):
            raise SystemExit(f"{kind}: {name} differs between baseline and ours")
    return int(grid.size)


# -- memory ------------------------------------------------------------------------------------


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


class Peak:
    """Peak ``VmRSS``/``RssAnon`` of this process while the block runs, polled every 2 ms."""

    KEYS = ("VmRSS", "RssAnon")

    def __enter__(self) -> Peak:
        self.base = {k: _status_kb(k) for k in self.KEYS}
        self.peak = dict(self.base)
        self._done = threading.Event()
        self._watcher = threading.Thread(target=self._poll)
        self._watcher.start()
        return self

    def _poll(self) -> None:
        while not self._done.is_set():
            for k in self.KEYS:
                self.peak[k] = max(self.peak[k], _status_kb(k))
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._watcher.join()

    def growth(self, key: str) -> float:
        return (self.peak[key] - self.base[key]) * 1024.0


def probe_memory(kind: str, source: Any, n_time: int, out: Path) -> dict[str, float]:
    """Peak growth of RSS and anonymous memory while ours builds, over the state after the
    imports and the lazy open (which grows with the source's length: coordinates and the
    dask graph's metadata, not data); the shard writing (init + load_part) and the
    statistics pass (finalise) separately."""
    from stratocast.shards.build import finalise, init, load_part

    cfg = ours_config(n_time)
    truth = ours_open(kind, source, n_time, out.parent / "cache")
    obs = stations()
    open_rss = _status_kb("VmRSS") * 1024.0
    t0 = time.perf_counter()
    # tracemalloc sees NumPy's buffers too: Python-level peaks, free of the allocator's
    # habit of keeping freed pages (which RSS counts)
    tracemalloc.start()
    with Peak() as write:
        init(cfg, truth, obs, out)
        load_part(cfg, truth, obs, out, progress=False)
    write_traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    with Peak() as stats:
        finalise(cfg, out)
    stats_traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "n_time": n_time,
        "seconds": time.perf_counter() - t0,
        "open_rss_bytes": open_rss,
        "write_traced_peak_bytes": float(write_traced),
        "finalise_traced_peak_bytes": float(stats_traced),
        "write_rss_growth_bytes": write.growth("VmRSS"),
        "write_anon_growth_bytes": write.growth("RssAnon"),
        "finalise_rss_growth_bytes": stats.growth("VmRSS"),
        "finalise_anon_growth_bytes": stats.growth("RssAnon"),
    }


def memory_bounds(n_lat: int, n_lon: int, src_lat: int, src_lon: int) -> tuple[float, float]:
    """Stated bounds on ours' working set, independent of the number of time steps, with
    B = one shard's output block (shard_steps × channels × lat × lon × 4 B) and S = one
    batched source read (shard_steps × channels × the source's chunk area × 4 B, capped by
    ``pipeline.READ_BUDGET``):

    * load_part: ``K_BOUND`` × B + ``K_STATS`` × B / channels + 2 S. The blocks: two being
      compressed and written with their encoded chunks (4), one waiting in the read-ahead
      queue, and the one being read with the per-channel results it is assembled from (2);
      the statistics each of the two writers takes of its shard, one channel at a time (that
      channel's float32 copy, its float64 values and their tendencies: 5 channel shares
      each); S twice: the read itself and zarr's decoded chunk buffers it is copied from.
    * finalise: merges the writers' partial statistics, one shard's at a time (two time
      steps); only a shard without a valid partial is read back, one at a time: at most
      ``K_FINALISE`` × B (the shard and one channel's statistics temporaries)."""
    from stratocast.shards.pipeline import READ_BUDGET

    block = SHARD_STEPS * len(CHANNELS) * n_lat * n_lon * 4.0
    source_read = min(float(READ_BUDGET), SHARD_STEPS * len(CHANNELS) * src_lat * src_lon * 4.0)
    bound = (K_BOUND + K_STATS / len(CHANNELS)) * block + 2.0 * source_read
    return bound, K_FINALISE * block


# -- driver ------------------------------------------------------------------------------------


def timed(job: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    job()
    return time.perf_counter() - t0


JOBS: dict[str, Callable[[str, Any, int, Path], None]] = {
    "baseline": run_baseline,
    "previous": run_previous,
    "ours": run_ours,
}


def rounds(
    kind: str, source: Any, n_time: int, n_rounds: int, workdir: Path, jobs: Sequence[str]
) -> dict[str, Any]:
    outs = {name: workdir / f"out-{kind}-{name}" for name in jobs}
    # Warm-up, untimed: imports, xarray's file cache and the page cache for every job alike.
    for name in jobs:
        shutil.rmtree(outs[name], ignore_errors=True)
        JOBS[name](kind, source, SHARD_STEPS * 2, outs[name])
    times: dict[str, list[float]] = {name: [] for name in jobs}
    n_values = 0
    PHASES.clear()
    for r in range(n_rounds):
        order = list(jobs) if r % 2 == 0 else list(jobs)[::-1]
        for name in order:
            shutil.rmtree(outs[name], ignore_errors=True)
            job, out = JOBS[name], outs[name]
            times[name].append(timed(partial(job, kind, source, n_time, out)))
        if r == 0:
            for name in jobs:
                if name != "baseline":
                    n_values = check_equal(kind, outs["baseline"], outs[name])
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "source": kind,
        "n_time": n_time,
        "values": n_values,
        "seconds": times,
        "median_s": med,
        "ratio": med["baseline"] / med["ours"],
        "ratio_previous": med["baseline"] / med["previous"] if "previous" in med else None,
        "ours_phases_median_s": [statistics.median(p) for p in zip(*PHASES, strict=True)],
    }


def measure_memory(kind: str, n_time: int, workdir: Path, source_steps: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--probe-memory", kind, "--steps", str(n_time)]
    cmd += ["--workdir", str(workdir), "--source-steps", str(source_steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    res: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return res


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=512, help="hourly steps built in the timed runs")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median quoted)")
    ap.add_argument("--source", nargs="*", choices=["zarr", "netcdf"], default=["zarr", "netcdf"])
    ap.add_argument("--memory-steps", type=int, nargs="*", default=[256, 512, 1024])
    ap.add_argument(
        "--no-previous",
        dest="previous",
        action="store_false",
        help="skip ours as it was before shards.pipeline",
    )
    ap.add_argument("--memory-source", choices=["zarr", "netcdf"], default="zarr")
    ap.add_argument("--workdir", type=Path, default=Path("runs/bench-shards"))
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--probe-memory", choices=["zarr", "netcdf"], help=argparse.SUPPRESS)
    ap.add_argument("--source-steps", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    workdir: Path = args.workdir.resolve()
    source_steps = args.source_steps or max([args.steps, *args.memory_steps])
    sources = ensure_source(workdir, source_steps)
    if args.probe_memory:
        out = workdir / f"mem-{args.probe_memory}-{args.steps}"
        shutil.rmtree(out, ignore_errors=True)
        res = probe_memory(args.probe_memory, sources[args.probe_memory], args.steps, out)
        shutil.rmtree(out, ignore_errors=True)
        print(json.dumps(res))
        return 0

    results: dict[str, Any] = {"cpus": os.cpu_count(), "timing": [], "memory": []}
    print(f"$ python {' '.join(sys.argv)}   (median of {args.rounds} interleaved rounds)\n")
    n_lat, n_lon = _region_shape(sources["zarr"])
    step_mb = len(CHANNELS) * n_lat * n_lon * 4 / 1e6
    print(f"grid {n_lat} × {n_lon}, {len(CHANNELS)} channels: {step_mb:.2f} MB per step\n")
    jobs = ["baseline", *(["previous"] if args.previous else []), "ours"]
    head = "| source | steps | MB | baseline s |" + (
        " previous s | ratio |" if args.previous else ""
    )
    print(head + " ours s | **ratio** | outputs equal |")
    print("|---" * (head.count("|") + 2) + "|")
    for kind in args.source:
        row = rounds(kind, sources[kind], args.steps, args.rounds, workdir, jobs)
        results["timing"].append(row)
        med = row["median_s"]
        prev = f" {med['previous']:.2f} | {row['ratio_previous']:.2f}× |" if args.previous else ""
        print(
            f"| {kind} | {args.steps} | {args.steps * step_mb:.0f} | {med['baseline']:.2f} |"
            f"{prev} {med['ours']:.2f} | **{row['ratio']:.2f}×** | "
            f"yes ({row['values']:,} values) |",
            flush=True,
        )
    print(
        "\nours by phase (median s): open_target | init + load_part | "
        "finalise (checksums, statistics merge)"
    )
    for row in results["timing"]:
        o, w, f = row["ours_phases_median_s"]
        print(f"  {row['source']}: {o:.2f} | {w:.2f} | {f:.2f}")
    if args.memory_steps:
        src_lat, src_lon = sample_fields()[0]["t2m"].shape
        bound, bound_final = memory_bounds(n_lat, n_lon, src_lat, src_lon)
        print(
            f"\nours, peak memory over the lazy open ({args.memory_source}); stated bounds: "
            f"load_part {K_BOUND:g} B + {K_STATS:g} B / {len(CHANNELS)} + 2 S = "
            f"{bound / 1e6:.0f} MB, finalise {K_FINALISE:.2f} B = {bound_final / 1e6:.0f} MB "
            "(B = one shard's block, "
            f"S = one batched source read)\n"
        )
        print(
            "| steps | build s | load_part: traced peak MB | RSS growth MB | anon MB | "
            "finalise: traced peak MB | RSS growth MB | anon MB | RSS after open MB |"
        )
        print("|---" * 9 + "|")
        for n in args.memory_steps:
            m = measure_memory(args.memory_source, n, workdir, source_steps)
            m["bound_bytes"], m["bound_finalise_bytes"] = bound, bound_final
            results["memory"].append(m)
            print(
                f"| {n} | {m['seconds']:.2f} | {m['write_traced_peak_bytes'] / 1e6:.0f} | "
                f"{m['write_rss_growth_bytes'] / 1e6:.0f} | "
                f"{m['write_anon_growth_bytes'] / 1e6:.0f} | "
                f"{m['finalise_traced_peak_bytes'] / 1e6:.0f} | "
                f"{m['finalise_rss_growth_bytes'] / 1e6:.0f} | "
                f"{m['finalise_anon_growth_bytes'] / 1e6:.0f} | {m['open_rss_bytes'] / 1e6:.0f} |",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def _region_shape(store: Path) -> tuple[int, int]:
    ds = baseline_open("zarr", store, 2)
    return int(ds.sizes["latitude"]), int(ds.sizes["longitude"])


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # netCDF4/HDF5 teardown aborts at interpreter exit in this environment (a bare
    # xr.open_dataset of the sample does it too): leave without running it.
    os._exit(code)
