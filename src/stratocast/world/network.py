"""The built-in world's observing network: real airport sites, a noisy observation operator,
and the report files (METAR text, SYNOP BUFR) that the real readers ingest.

Nothing downstream reads the truth directly; it only sees what is written here, with the
errors a real network has (noise, gaps, outages, duplicates, gross errors). Every injected
duplicate and gross error is logged in ``injected.csv`` so QC can be scored against it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import time as _time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import airportsdata
import numpy as np
import pandas as pd
import xarray as xr
from pydantic import Field
from tqdm import tqdm

from stratocast.config import ComponentConfig, count
from stratocast.errors import StratocastError
from stratocast.grid.interp import BilinearWeights, bilinear_weights
from stratocast.world.arrivals import (
    ArrivalConfig,
    correction_rows,
    write_metar_corrections,
    write_schedule,
)
from stratocast.world.metar_writer import write_metar_day
from stratocast.world.synop_bufr_writer import write_synop_file

NETWORKS: tuple[str, ...] = ("metar", "synop")
EARTH_RADIUS_KM = 6371.0
LAPSE_RATE_K_PER_M = 0.0065
GRAVITY = 9.80665
R_DRY = 287.05
KT_PER_MS = 1.0 / 0.514444
_MARKER = ".complete.json"
_FORMAT_VERSION = 1
_TRUTH_VARS = ("t2m", "u10", "v10", "msl")

# Seed-sequence tags, so each random stream is independent of the others and of chunking.
_TAG_SELECT, _TAG_STATION_ERR, _TAG_OUTAGE, _TAG_CHUNK = 11, 12, 13, 14
_TAG_CORRECTIONS = 15

STATION_COLUMNS = [
    "station_id",
    "icao",
    "wmo_block",
    "wmo_station",
    "name",
    "lat",
    "lon",
    "elevation_m",
    "network",
    "role",
    "country",
]


class NetworkError(StratocastError, ValueError):
    """An observing network the config asks for that the world cannot place, or a truth
    store that lacks what the network samples."""


class NetworkConfig(ComponentConfig):
    """Size, seed and error model of the simulated observing network."""

    n_metar: int = count(500, ge=0, le=100_000)
    n_synop: int = count(250, ge=0, le=100_000)
    verify_fraction: float = Field(default=0.15, ge=0.0, le=1.0)
    seed: int = 0
    # 150 km thins the US/European airport clusters while leaving ~2400 candidate sites.
    min_distance_km: float = Field(default=150.0, ge=0.0)
    gross_error_rate: float = Field(default=0.001, ge=0.0, le=1.0)
    duplicate_rate: float = Field(default=0.005, ge=0.0, le=1.0)
    gap_rate: float = Field(default=0.01, ge=0.0, le=1.0)  # reports missing at random
    # per station-day chance that an outage starts
    outage_rate: float = Field(default=0.002, ge=0.0, le=1.0)
    outage_max_days: int = count(5, le=366)
    # Instrument noise (1 sigma), typical of WMO-class AWS sensors.
    temperature_sigma_k: float = Field(default=0.4, ge=0.0)
    dewpoint_sigma_k: float = Field(default=1.0, ge=0.0)
    pressure_sigma_pa: float = Field(default=50.0, ge=0.0)
    wind_sigma_ms: float = Field(default=1.0, ge=0.0)
    # Representativeness: a point is not a grid box. Temperature error grows with the
    # height mismatch between station and grid orography; wind varies with exposure.
    representativeness_t_k: float = Field(default=0.5, ge=0.0)
    representativeness_t_k_per_km: float = Field(default=1.0, ge=0.0)
    representativeness_p_pa: float = Field(default=30.0, ge=0.0)
    exposure_sigma: float = Field(default=0.15, ge=0.0)
    metar_hourly: bool = False  # METARs also at intermediate hours (truth linear in time)
    chunk_days: int = count(16, le=366)  # truth is processed this many days at a time
    # when each report arrives (arrivals.csv) and which gross errors get a COR bulletin
    arrivals: ArrivalConfig = ArrivalConfig()


@dataclass(frozen=True)
class ObservationSummary:
    """What one :func:`write_observations` produced (or found already written)."""

    out_dir: str
    n_times: int
    stations: dict[str, int]
    reports: dict[str, int]  # reports written, duplicates included
    duplicates: dict[str, int]
    gross_errors: dict[str, int]
    gaps: dict[str, int]  # reports not written (random gaps and outages)
    files: dict[str, int]
    seconds: float
    reused: bool = False


# ----------------------------------------------------------------------------- stations


def _unit_vectors(lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)


def _chord2(distance_km: float) -> float:
    """Squared chord length on the unit sphere for a great-circle distance."""
    return float((2.0 * np.sin(distance_km / EARTH_RADIUS_KM / 2.0)) ** 2)


def _airport_candidates() -> pd.DataFrame:
    """Airports with a 4-letter ICAO id; an IATA code marks a larger (scheduled) airport."""
    rows = [
        (a["icao"], a["iata"], a["name"], a["country"], a["lat"], a["lon"], a["elevation"])
        for a in airportsdata.load("ICAO").values()
        if len(a["icao"]) == 4 and a["icao"].isalpha() and a["icao"].isupper()
    ]
    df = pd.DataFrame(rows, columns=["icao", "iata", "name", "country", "lat", "lon", "elev_ft"])
    df["elevation_m"] = df["elev_ft"].astype(float) * 0.3048  # airportsdata is in feet
    df["has_iata"] = df["iata"].astype(bool)
    return df.sort_values("icao", ignore_index=True)


def _thin(xyz: np.ndarray, order: np.ndarray, min_chord2: float, seed_xyz: np.ndarray) -> list[int]:
    """Greedy Poisson-disk thinning: accept in ``order`` unless too close to an accepted site."""
    accepted = np.empty((len(seed_xyz) + len(order), 3))
    accepted[: len(seed_xyz)] = seed_xyz
    k = len(seed_xyz)
    keep: list[int] = []
    for i in order:
        if k == 0 or ((accepted[:k] - xyz[i]) ** 2).sum(axis=1).min() >= min_chord2:
            accepted[k] = xyz[i]
            k += 1
            keep.append(int(i))
    return keep


def _select_sites(cand: pd.DataFrame, n_total: int, cfg: NetworkConfig) -> pd.DataFrame:
    rng = np.random.default_rng([cfg.seed, _TAG_SELECT])
    xyz = _unit_vectors(cand["lat"].to_numpy(), cand["lon"].to_numpy())
    thr = _chord2(cfg.min_distance_km)
    big = np.flatnonzero(cand["has_iata"].to_numpy())
    keep = _thin(xyz, rng.permutation(big), thr, np.empty((0, 3)))
    if len(keep) < n_total:  # fill remaining gaps with smaller airports
        small = np.flatnonzero(~cand["has_iata"].to_numpy())
        keep += _thin(xyz, rng.permutation(small), thr, xyz[keep])
    if len(keep) < n_total:
        raise NetworkError(
            f"NetworkConfig asks for n_metar + n_synop = {n_total} stations but only "
            f"{len(keep)} airports are at least min_distance_km={cfg.min_distance_km} apart; "
            "lower min_distance_km or the station counts"
        )
    chosen = rng.choice(np.asarray(keep), size=n_total, replace=False)
    return cand.iloc[chosen].reset_index(drop=True)


def _spread_subset(
    lat: np.ndarray, lon: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """Indices of ``k`` sites, spatially spread: the largest Poisson-disk radius that still
    yields ``k`` sites, accepted in random order (so not biased towards remote edges)."""
    n = len(lat)
    if k <= 0:
        return np.empty(0, dtype=int)
    xyz = _unit_vectors(lat, lon)
    order = rng.permutation(n)
    for dist_km in np.geomspace(5000.0, 1.0, 40):
        keep = _thin(xyz, order, _chord2(float(dist_km)), np.empty((0, 3)))
        if len(keep) >= k:
            return np.asarray(keep[:k])
    return order[:k]


# Coarse boxes approximating WMO regional block numbers (first match wins).
_WMO_BLOCK_BOXES: tuple[tuple[float, float, float, float, int], ...] = (
    (-90, -60, -180, 180, 89),  # Antarctica
    (35, 72, -25, 40, 10),  # Europe
    (45, 90, 40, 180, 27),  # Russia, northern Asia
    (-35, 38, -20, 52, 64),  # Africa
    (0, 45, 40, 150, 47),  # southern and eastern Asia
    (25, 90, -170, -50, 72),  # North America
    (5, 25, -120, -55, 78),  # Central America, Caribbean
    (-60, 15, -95, -30, 85),  # South America
)
_WMO_BLOCK_OTHER = 94  # Oceania and everything else


def _wmo_block(lat: float, lon: float) -> int:
    for lat0, lat1, lon0, lon1, block in _WMO_BLOCK_BOXES:
        if lat0 <= lat < lat1 and lon0 <= lon < lon1:
            return block
    return _WMO_BLOCK_OTHER


def _assign_wmo_ids(synop: pd.DataFrame) -> pd.DataFrame:
    """Pseudo WMO ids: real airports have no public WMO number in airportsdata, so the block
    comes from a coarse region box and station numbers are 001, 002, ... within each block in
    ICAO order. Deterministic, unique, and never claimed to be the real index number."""
    out = synop.copy()
    out["wmo_block"] = [_wmo_block(la, lo) for la, lo in zip(out["lat"], out["lon"], strict=True)]
    out = out.sort_values(["wmo_block", "icao"], ignore_index=True)
    out["wmo_station"] = out.groupby("wmo_block").cumcount() + 1
    if (out["wmo_station"] > 999).any():
        raise NetworkError("more than 999 SYNOP stations in one WMO block; lower n_synop")
    out["station_id"] = [
        f"{b:02d}{s:03d}" for b, s in zip(out["wmo_block"], out["wmo_station"], strict=True)
    ]
    return out


def build_stations(cfg: NetworkConfig) -> pd.DataFrame:
    """Catalogue of the METAR and SYNOP stations (disjoint), deterministic in ``cfg.seed``."""
    sites = _select_sites(_airport_candidates(), cfg.n_metar + cfg.n_synop, cfg)
    sites["network"] = ["metar"] * cfg.n_metar + ["synop"] * cfg.n_synop
    metar = sites[sites["network"] == "metar"].copy()
    metar["station_id"] = metar["icao"]
    metar["wmo_block"] = -1
    metar["wmo_station"] = -1
    synop = _assign_wmo_ids(sites[sites["network"] == "synop"])
    parts = []
    for net_idx, df in enumerate((metar.sort_values("icao", ignore_index=True), synop)):
        rng = np.random.default_rng([cfg.seed, _TAG_SELECT, net_idx])
        k = round(cfg.verify_fraction * len(df))
        verify = _spread_subset(df["lat"].to_numpy(), df["lon"].to_numpy(), k, rng)
        df = df.reset_index(drop=True)
        df["role"] = "train"
        df.loc[verify, "role"] = "verify"
        parts.append(df)
    out = pd.concat(parts, ignore_index=True)[STATION_COLUMNS]
    out["wmo_block"] = out["wmo_block"].astype(int)
    out["wmo_station"] = out["wmo_station"].astype(int)
    out["lon"] = ((out["lon"] + 180.0) % 360.0) - 180.0
    return out


# ------------------------------------------------------------------ observation operator


@dataclass(frozen=True)
class _StationErrors:
    """Persistent per-station errors (siting, exposure), drawn once per network."""

    t_bias: np.ndarray
    t_sigma: np.ndarray
    p_bias: np.ndarray
    exposure: np.ndarray


def _station_errors(cfg: NetworkConfig, dz_m: np.ndarray, net_idx: int) -> _StationErrors:
    rng = np.random.default_rng([cfg.seed, _TAG_STATION_ERR, net_idx])
    n = len(dz_m)
    repr_t = cfg.representativeness_t_k + cfg.representativeness_t_k_per_km * np.abs(dz_m) / 1000
    t_sigma = np.sqrt(cfg.temperature_sigma_k**2 + (0.5 * repr_t) ** 2)
    return _StationErrors(
        t_bias=rng.normal(0.0, 1.0, n) * 0.5 * repr_t,
        t_sigma=t_sigma,
        p_bias=rng.normal(0.0, cfg.representativeness_p_pa, n),
        exposure=np.clip(1.0 + rng.normal(0.0, cfg.exposure_sigma, n), 0.5, 1.5),
    )


def _plan_outages(
    cfg: NetworkConfig, n_stations: int, t0: np.datetime64, t1: np.datetime64, net_idx: int
) -> pd.DataFrame:
    """Stations down for 1..outage_max_days days; planned for the whole period up front so
    an outage spans chunk boundaries and does not depend on chunking."""
    rng = np.random.default_rng([cfg.seed, _TAG_OUTAGE, net_idx])
    days = max((t1 - t0) / np.timedelta64(1, "D"), 1.0)
    counts = rng.poisson(cfg.outage_rate * days, n_stations)
    station = np.repeat(np.arange(n_stations), counts)
    start = t0 + (rng.random(len(station)) * days * 86400).astype("timedelta64[s]")
    dur = (rng.uniform(1.0, cfg.outage_max_days, len(station)) * 86400).astype("timedelta64[s]")
    return pd.DataFrame({"station": station, "start": start, "end": start + dur})


def _outage_mask(outages: pd.DataFrame, times: np.ndarray, n_stations: int) -> np.ndarray:
    mask = np.zeros((len(times), n_stations), dtype=bool)
    for s, a, b in zip(outages["station"], outages["start"], outages["end"], strict=True):
        mask[(times >= np.datetime64(a)) & (times < np.datetime64(b)), s] = True
    return mask


def _dewpoint_depression(
    lat: np.ndarray, lon: np.ndarray, times: np.ndarray, sigma_k: float, rng: np.random.Generator
) -> np.ndarray:
    """The truth has no humidity, so the dewpoint depression (K) is synthesised: a smooth
    field that is dry in the subtropics (~|lat| 25), moist in the tropics and high latitudes,
    with a seasonal and zonal wave, plus ``sigma_k`` noise; clipped to 0.3..20 K."""
    doy = (times.astype("datetime64[D]") - times.astype("datetime64[Y]")).astype(float)[:, None]
    dry = np.exp(-(((np.abs(lat) - 25.0) / 12.0) ** 2))
    wave = 0.5 + 0.5 * np.sin(np.radians(2 * lon) + 2 * np.pi * doy / 365.25)
    base = 2.0 + 9.0 * dry + 4.0 * wave
    return np.clip(base + rng.normal(0.0, sigma_k, base.shape), 0.3, 20.0)


def station_pressure_pa(msl_pa: np.ndarray, t_k: np.ndarray, elevation_m: np.ndarray) -> np.ndarray:
    """Hypsometric reduction of msl to station level, mean layer temperature from the
    station temperature and the standard lapse rate."""
    t_mean = t_k + 0.5 * LAPSE_RATE_K_PER_M * elevation_m
    return msl_pa * np.exp(-GRAVITY * elevation_m / (R_DRY * t_mean))


def qnh_pa(p_station_pa: np.ndarray, elevation_m: np.ndarray) -> np.ndarray:
    """QNH: station pressure reduced with the ICAO standard atmosphere (not the actual
    temperature), the standard aviation altimeter-setting formula."""
    p_hpa = p_station_pa / 100.0
    return 100.0 * (p_hpa**0.190263 + 8.417286e-5 * elevation_m) ** (1.0 / 0.190263)


def wind_direction_deg(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Meteorological direction the wind blows FROM, in [0, 360)."""
    return np.mod(270.0 - np.degrees(np.arctan2(v, u)), 360.0)


@dataclass
class _NetworkState:
    """Everything about one network that is fixed across time chunks."""

    name: str
    index: int
    stations: pd.DataFrame
    weights: BilinearWeights
    grid_orography: np.ndarray
    errors: _StationErrors
    outages: pd.DataFrame


def _sample_chunk(
    truth: xr.Dataset, state: _NetworkState, hourly: bool, has_extra: bool
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Truth at the stations, ``[time, station]``, optionally linearly interpolated in time
    to hourly; ``has_extra``: the last truth step belongs to the next chunk and only serves
    as the end point of the interpolation."""
    times = truth["time"].to_numpy()
    vals = {v: state.weights.apply(truth[v].to_numpy().astype(np.float64)) for v in _TRUTH_VARS}
    if not hourly or len(times) < 2:
        return times, vals
    one_hour = np.timedelta64(1, "h")
    hours = np.arange(times[0], times[-1] if has_extra else times[-1] + one_hour, one_hour)
    pos = (hours - times[0]) / (times[1] - times[0])
    k = np.minimum(pos.astype(int), len(times) - 2)
    f = (pos - k)[:, None]
    return hours, {v: a[k] * (1 - f) + a[k + 1] * f for v, a in vals.items()}


def _apply_noise(
    vals: dict[str, np.ndarray], state: _NetworkState, cfg: NetworkConfig, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    st, err = state.stations, state.errors
    elev = st["elevation_m"].to_numpy()
    shape = vals["t2m"].shape
    t_station = vals["t2m"] - LAPSE_RATE_K_PER_M * (elev - state.grid_orography)
    t = t_station + err.t_bias + rng.normal(0.0, 1.0, shape) * err.t_sigma
    msl = vals["msl"] + err.p_bias + rng.normal(0.0, cfg.pressure_sigma_pa, shape)
    u = vals["u10"] * err.exposure + rng.normal(0.0, cfg.wind_sigma_ms, shape)
    v = vals["v10"] * err.exposure + rng.normal(0.0, cfg.wind_sigma_ms, shape)
    speed = np.hypot(u, v)
    direction = wind_direction_deg(u, v)
    calm = speed < 0.5
    speed[calm], direction[calm] = 0.0, 0.0
    return {"t2m": t, "msl": msl, "wind_speed": speed, "wind_direction": direction}


def _weather_extras(
    obs: dict[str, np.ndarray], depression: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Gusts, visibility and cloud: plausible, tied loosely to wind and humidity, not truth."""
    speed = obs["wind_speed"]
    gusty = (speed > 5.0) & (rng.random(speed.shape) < 0.25)
    gust = np.where(gusty, speed + rng.uniform(5.5, 12.0, speed.shape), np.nan)
    visibility = np.where(depression < 1.0, rng.uniform(800, 5000, speed.shape), 10000.0)
    oktas = np.clip(
        np.round(8.0 * np.exp(-depression / 6.0) + rng.normal(0, 1.5, speed.shape)), 0, 8
    )
    cloud_base_ft = np.round(
        np.clip(depression * 400.0 + rng.uniform(0, 1500, speed.shape), 200, 12000), -2
    )
    return {
        "wind_gust": gust,
        "visibility_m": visibility,
        "cloud_oktas": oktas,
        "cloud_base_ft": cloud_base_ft,
    }


GROSS_KINDS = ("temperature_sign", "pressure_offset", "wind_spike")
WIND_SPIKE_MS = 99.0 / KT_PER_MS  # the classic 99 kt spike


def _inject_gross(df: pd.DataFrame, rate: float, rng: np.random.Generator) -> pd.DataFrame:
    """Corrupt a few reports in place; return the log (original and written values)."""
    hit = np.flatnonzero(rng.random(len(df)) < rate)
    kinds = rng.integers(0, len(GROSS_KINDS), len(hit))
    t_c = df["t2m"].to_numpy()[hit] - 273.15
    kinds[(kinds == 0) & (np.abs(t_c) < 3.0)] = 1  # a sign flip near 0 C is not an error
    log = []
    for row, kind in zip(hit, kinds, strict=True):
        name = GROSS_KINDS[kind]
        if name == "temperature_sign":
            var, old = "t2m", df.at[row, "t2m"]
            new = 2 * 273.15 - old
        elif name == "pressure_offset":
            var, old = "msl", df.at[row, "msl"]
            new = old + float(rng.choice([-2000.0, -1000.0, 1000.0, 2000.0]))
            delta = new - old
            df.at[row, "station_pressure"] += delta
            df.at[row, "qnh"] += delta
        else:
            var, old, new = "wind_speed", df.at[row, "wind_speed"], WIND_SPIKE_MS
            if df.at[row, "wind_direction"] == 0.0:
                df.at[row, "wind_direction"] = 360.0 * rng.random()
            df.at[row, "wind_gust"] = np.nan
        df.at[row, var] = new
        df.at[row, "gross_error"] = name
        log.append((name, df.at[row, "station_id"], df.at[row, "time"], var, old, new))
    return pd.DataFrame(
        log, columns=["kind", "station_id", "time", "variable", "original_value", "written_value"]
    )


def _duplicate(
    df: pd.DataFrame, rate: float, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Repeat a few reports verbatim, right after the original (as real feeds do)."""
    dup = rng.random(len(df)) < rate
    reps = np.where(dup, 2, 1)
    out = df.loc[df.index.repeat(reps)].reset_index(drop=True)
    is_dup = np.zeros(len(out), dtype=bool)
    is_dup[(np.cumsum(reps) - 1)[dup]] = True  # the second copy is the duplicate
    out["is_duplicate"] = is_dup
    log = df.loc[dup, ["station_id", "time"]].assign(
        kind="duplicate", variable="", original_value=np.nan, written_value=np.nan
    )
    return out, log


@dataclass
class ChunkReports:
    """Reports of one network over one time chunk, plus what was injected into them."""

    network: str
    reports: pd.DataFrame  # one row per written report (duplicates included), time-sorted
    injected: pd.DataFrame
    n_gaps: int
    times: np.ndarray = field(repr=False)


def _chunk_reports(
    truth: xr.Dataset, state: _NetworkState, cfg: NetworkConfig, has_extra: bool
) -> ChunkReports:
    hourly = cfg.metar_hourly and state.name == "metar"
    times, vals = _sample_chunk(truth, state, hourly, has_extra)
    hours0 = int(times[0].astype("datetime64[h]").astype(np.int64))
    rng = np.random.default_rng([cfg.seed, _TAG_CHUNK, state.index, hours0])
    st = state.stations
    lat, lon = st["lat"].to_numpy(), st["lon"].to_numpy()
    obs = _apply_noise(vals, state, cfg, rng)
    depression = _dewpoint_depression(lat, lon, times, cfg.dewpoint_sigma_k, rng)
    elev = st["elevation_m"].to_numpy()
    obs["dewpoint"] = obs["t2m"] - depression
    obs["station_pressure"] = station_pressure_pa(obs["msl"], obs["t2m"], elev)
    obs["qnh"] = qnh_pa(obs["station_pressure"], elev)
    obs.update(_weather_extras(obs, depression, rng))
    missing = (rng.random(obs["t2m"].shape) < cfg.gap_rate) | _outage_mask(
        state.outages, times, len(st)
    )
    ti, si = np.nonzero(~missing)  # row-major: time-sorted, station order within a time
    df = pd.DataFrame({k: v[ti, si] for k, v in obs.items()})
    df.insert(0, "time", times[ti])
    df.insert(0, "station_id", st["station_id"].to_numpy()[si])
    df["station_index"] = si
    df["gross_error"] = ""
    gross = _inject_gross(df, cfg.gross_error_rate, rng)
    df, dups = _duplicate(df, cfg.duplicate_rate, rng)
    injected = pd.concat([gross, dups[gross.columns]], ignore_index=True) if len(dups) else gross
    injected.insert(1, "network", state.name)
    return ChunkReports(state.name, df, injected, int(missing.sum()), times)


def _network_states(
    truth: xr.Dataset, stations: pd.DataFrame, cfg: NetworkConfig
) -> list[_NetworkState]:
    glat, glon = truth["lat"].to_numpy(), truth["lon"].to_numpy()
    orog = truth["orography"].to_numpy().astype(np.float64)
    t = truth["time"].to_numpy()
    states = []
    for idx, name in enumerate(NETWORKS):
        st = stations[stations["network"] == name].reset_index(drop=True)
        w = bilinear_weights(glat, glon, st["lat"].to_numpy(), st["lon"].to_numpy())
        z = w.apply(orog)
        errors = _station_errors(cfg, st["elevation_m"].to_numpy() - z, idx)
        outages = _plan_outages(cfg, len(st), t[0], t[-1], idx)
        states.append(_NetworkState(name, idx, st, w, z, errors, outages))
    return states


def _day_chunks(times: np.ndarray, chunk_days: int) -> list[tuple[int, int]]:
    """Index ranges ``[a, b)`` of whole UTC days, ``chunk_days`` days each."""
    day = times.astype("datetime64[D]")
    starts = np.flatnonzero(np.concatenate([[True], day[1:] != day[:-1]]))
    bounds = [*starts[::chunk_days].tolist(), len(times)]
    return list(itertools.pairwise(bounds))


def iter_reports(
    truth: xr.Dataset, stations: pd.DataFrame, cfg: NetworkConfig
) -> Iterator[ChunkReports]:
    """The observation operator, one network-chunk at a time (memory bounded). The values are
    exactly those the writers encode (before their quantisation)."""
    _check_truth(truth)
    states = _network_states(truth, stations, cfg)
    n = truth.sizes["time"]
    for a, b in _day_chunks(truth["time"].to_numpy(), cfg.chunk_days):
        for state in states:
            if len(state.stations) == 0:
                continue
            # hourly METARs interpolate towards the next chunk's first truth step
            extra = 1 if (cfg.metar_hourly and state.name == "metar" and b < n) else 0
            chunk = truth[list(_TRUTH_VARS)].isel(time=slice(a, b + extra)).load()
            yield _chunk_reports(chunk, state, cfg, has_extra=extra == 1)


def _check_truth(truth: xr.Dataset) -> None:
    missing = [v for v in (*_TRUTH_VARS, "orography") if v not in truth]
    if missing:
        raise NetworkError(f"truth dataset lacks variables {missing} (contract in docs/design.md)")
    for v in _TRUTH_VARS:
        if truth[v].dims != ("time", "lat", "lon"):
            raise NetworkError(f"truth[{v!r}] has dims {truth[v].dims}, expected (time, lat, lon)")
    if truth.sizes["time"] == 0:
        raise NetworkError("truth dataset has no time steps")


# ------------------------------------------------------------------------------ writing


def _truth_identity(truth: xr.Dataset) -> str:
    """Cheap identity of a truth: coordinates, variables and data at a few time steps.
    Hashing every value of a year of truth would cost more than writing the reports."""
    h = hashlib.sha256()
    for c in ("time", "lat", "lon"):
        h.update(np.ascontiguousarray(truth[c].to_numpy()).tobytes())
    n = truth.sizes["time"]
    for v in sorted(str(name) for name in truth.data_vars):
        da = truth[v]
        h.update(f"{v}{da.dims}{da.dtype}".encode())
        sample = da.isel(time=sorted({0, n // 2, n - 1})) if "time" in da.dims else da
        h.update(np.ascontiguousarray(sample.to_numpy()).tobytes())
    return h.hexdigest()


def _run_key(truth: xr.Dataset, cfg: NetworkConfig) -> str:
    blob = json.dumps(
        {"v": _FORMAT_VERSION, "cfg": cfg.model_dump(), "truth": _truth_identity(truth)},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _reuse(out_dir: Path, key: str) -> ObservationSummary | None:
    marker = out_dir / _MARKER
    if not marker.is_file():
        return None
    data = json.loads(marker.read_text())
    if data.get("key") != key:
        return None
    summary = dict(data["summary"], reused=True, out_dir=str(out_dir))
    return ObservationSummary(**summary)


class _Counts:
    def __init__(self) -> None:
        self.reports = dict.fromkeys(NETWORKS, 0)
        self.duplicates = dict.fromkeys(NETWORKS, 0)
        self.gross = dict.fromkeys(NETWORKS, 0)
        self.gaps = dict.fromkeys(NETWORKS, 0)
        self.files = dict.fromkeys(NETWORKS, 0)

    def add(self, rep: ChunkReports, n_files: int) -> None:
        net = rep.network
        self.reports[net] += len(rep.reports)
        self.duplicates[net] += int(rep.reports["is_duplicate"].sum())
        self.gross[net] += int((rep.reports["gross_error"] != "").sum())
        self.gaps[net] += rep.n_gaps
        self.files[net] += n_files


def _write_chunk(rep: ChunkReports, stations: pd.DataFrame, tmp: Path) -> int:
    if rep.network == "metar":
        st = stations.set_index("station_id")
        us = st["country"].eq("US")
        days = rep.reports["time"].to_numpy().astype("datetime64[D]")
        for day in np.unique(rep.times.astype("datetime64[D]")):
            path = tmp / "metar" / f"{pd.Timestamp(day):%Y%m%d}.txt"
            write_metar_day(path, rep.reports[days == day], us)
        return len(np.unique(rep.times.astype("datetime64[D]")))
    st = stations.set_index("station_id")
    times = rep.reports["time"].to_numpy()
    for t in rep.times:
        path = tmp / "synop_bufr" / f"{pd.Timestamp(t):%Y%m%d%H}.bufr"
        write_synop_file(path, rep.reports[times == t], st, pd.Timestamp(t))
    return len(rep.times)


def _prepare_tmp(out_dir: Path) -> Path:
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / _MARKER).is_file():
        raise FileExistsError(
            f"{out_dir} exists and is not a stratocast observation directory "
            "(no .complete.json); refusing to overwrite it"
        )
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "metar").mkdir(parents=True)
    (tmp / "synop_bufr").mkdir()
    return tmp


def write_observations(
    truth: xr.Dataset, cfg: NetworkConfig, out_dir: Path, progress: bool = True
) -> ObservationSummary:
    """Write stations.csv, injected.csv, metar/YYYYMMDD.txt and synop_bufr/YYYYMMDDHH.bufr,
    plus the feeds' view of them: corrections/metar/*.txt (COR bulletins for some gross
    errors) and the arrival schedule arrivals.csv / arrivals.json
    (:mod:`stratocast.world.arrivals`). The first four do not depend on ``cfg.arrivals``.

    Idempotent: a complete ``out_dir`` written from the same config and truth is reused.
    Files are written to a sibling temp directory and renamed into place at the end, so an
    interrupted run never leaves a half-written directory that looks complete."""
    out_dir = Path(out_dir)
    key = _run_key(truth, cfg)
    reused = _reuse(out_dir, key)
    if reused is not None:
        return reused
    start = _time.perf_counter()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = _prepare_tmp(out_dir)
    stations = build_stations(cfg)
    stations.to_csv(tmp / "stations.csv", index=False)
    counts, injected, corrections = _Counts(), [], []
    n_steps = len(_day_chunks(truth["time"].to_numpy(), cfg.chunk_days)) * len(NETWORKS)
    with tqdm(total=n_steps, disable=not progress, desc="observations", unit="chunk") as bar:
        for rep in iter_reports(truth, stations, cfg):
            counts.add(rep, _write_chunk(rep, stations, tmp))
            injected.append(rep.injected)
            if rep.network == "metar":
                corrections.append(_corrections(rep, cfg))
            bar.update()
    _write_injected(tmp / "injected.csv", injected)
    if corrections:
        us = stations.set_index("station_id")["country"].eq("US")
        write_metar_corrections(pd.concat(corrections, ignore_index=True), us, tmp)
    write_schedule(tmp, cfg.arrivals, cfg.seed)
    summary = ObservationSummary(
        out_dir=str(out_dir),
        n_times=int(truth.sizes["time"]),
        stations={n: int((stations["network"] == n).sum()) for n in NETWORKS},
        reports=counts.reports,
        duplicates=counts.duplicates,
        gross_errors=counts.gross,
        gaps=counts.gaps,
        files=counts.files,
        seconds=round(_time.perf_counter() - start, 3),
    )
    (tmp / _MARKER).write_text(json.dumps({"key": key, "summary": asdict(summary)}, indent=1))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return summary


def _corrections(rep: ChunkReports, cfg: NetworkConfig) -> pd.DataFrame:
    """The corrected reports of one METAR chunk (its own random stream: chunking-stable)."""
    hours0 = int(rep.times[0].astype("datetime64[h]").astype(np.int64))
    rng = np.random.default_rng([cfg.seed, _TAG_CORRECTIONS, hours0])
    return correction_rows(rep.reports, rep.injected, cfg.arrivals.correction_fraction, rng)


INJECTED_COLUMNS = [
    "kind",
    "network",
    "station_id",
    "time",
    "variable",
    "original_value",
    "written_value",
]


def _write_injected(path: Path, parts: list[pd.DataFrame]) -> None:
    parts = [p for p in parts if len(p)]
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=INJECTED_COLUMNS)
    df = df[INJECTED_COLUMNS]
    df["time"] = pd.to_datetime(df["time"]).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    df.to_csv(path, index=False, float_format="%.3f")
