"""Deterministic forecasts: at each init time, analyse the recent observation windows (cycling
through the model's own backgrounds) and roll the analysis out to the horizon.

The model is loaded once (warm) and all init times are computed in batches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from tqdm import tqdm

from stratocast.errors import StratocastError
from stratocast.infer.config import ForecastConfig as ForecastConfig
from stratocast.infer.warm import WarmModel
from stratocast.infer.writers.zarr_writer import write_zarr
from stratocast.loader.dataset import ShardStore
from stratocast.models.checkpoint import ModelCard
from stratocast.shards.layout import Manifest, ShardError
from stratocast.vocab.variables import get as get_variable


class ForecastError(StratocastError, ValueError):
    """A forecast request the shards and checkpoint cannot serve (the message says why)."""


def check_compatible(card: ModelCard, shards: Path, m: Manifest) -> None:
    """The model's channels, observed variables, grid and time step against the shards' (the
    stations may differ: they are run-time input; the statistics may too: the model's own
    are used)."""
    checkpoint, g = card.path, card.geometry
    if m.time_step_hours != card.time_step_hours:
        raise ShardError(
            f"{checkpoint} was trained with {card.time_step_hours} h steps, shards at "
            f"{shards} have {m.time_step_hours} h steps"
        )
    for what, ours, theirs in (
        ("channels", list(g.channels), list(m.channels)),
        ("observed variables", list(g.obs_variables), list(m.obs_variables)),
    ):
        if ours != theirs:
            raise ShardError(
                f"{checkpoint} has {what} {ours}; the shards at {shards} have {theirs}"
            )
    for axis, ours_a, theirs_a in (("lat", g.lat, m.lat), ("lon", g.lon, m.lon)):
        a, b = np.asarray(ours_a, dtype=np.float64), np.asarray(theirs_a, dtype=np.float64)
        if a.shape != b.shape or not np.allclose(a, b, atol=1e-6):
            raise ShardError(
                f"{checkpoint} was trained on a grid with {a.size} {axis} points "
                f"({a[0]:g}..{a[-1]:g}); the shards at {shards} have {b.size} ({b[0]:g}..{b[-1]:g})"
            )


def run_forecast(
    cfg: ForecastConfig, checkpoint: Path, shards: Path, out: Path, progress: bool = True
) -> Path:
    warm = WarmModel(checkpoint)
    card = warm.card
    store = ShardStore(shards, stats=(card.grid_stats, card.obs_stats))
    m = store.manifest
    check_compatible(card, shards, m)
    warm.set_sites(
        np.asarray(m.station_lat), np.asarray(m.station_lon), np.asarray(m.station_elevation)
    )
    step_h = card.time_step_hours
    if cfg.horizon_hours % step_h:
        raise ForecastError(
            f"horizon {cfg.horizon_hours} h is not a multiple of the {step_h} h step"
        )
    n_lead = cfg.horizon_hours // step_h
    times = m.times()
    first = m.time_index(np.datetime64(cfg.start))
    last = m.time_index(np.datetime64(cfg.end))
    hours = (times.astype("datetime64[h]").astype(np.int64) % 24).astype(int)
    inits = [i for i in range(first, last + 1) if hours[i] in cfg.init_hours]
    if not inits:
        raise ForecastError(f"no init times at hours {cfg.init_hours} in {cfg.start}..{cfg.end}")

    # Each forecast cycles over the same number of windows the model was trained with
    # (`history`): analyses from a cold start, then from the model's own background. Longer
    # free-running cycles drift unless the model was trained on them.
    history = card.history
    if first - (history - 1) < 0:
        raise ShardError(f"first init {cfg.start} needs {history - 1} earlier observation windows")
    n_c, n_y, n_x = len(m.channels), len(m.lat), len(m.lon)
    out_arr = np.empty((len(inits), n_lead + 1, n_c, n_y, n_x), np.float32)
    offsets = np.arange(-history + 1, n_lead + 1)
    for lo in tqdm(
        range(0, len(inits), cfg.batch_size), desc="forecast", disable=not progress, unit="batch"
    ):
        chunk = np.asarray(inits[lo : lo + cfg.batch_size])
        hist = chunk[:, None] + offsets[None, :history]
        # Valid times of every state in the sample (a forecast may run past the end of the
        # shard time axis).
        valid = times[chunk][:, None] + offsets[None, :] * np.timedelta64(step_h, "h")
        out_arr[lo : lo + len(chunk)] = warm.forecast_normalised(
            store.obs[hist], store.obs_mask[hist], valid, n_lead
        )

    ds = forecast_dataset(out_arr, times[inits], step_h, m, card)
    return write_zarr(ds, out)


def forecast_dataset(
    values: np.ndarray, inits: np.ndarray, step_h: int, m: Manifest, card: ModelCard
) -> xr.Dataset:
    """(N, L, C, H, W) physical forecasts → the product dataset every writer reads: one
    variable per channel over (init_time, lead_time, lat, lon), CF units and names."""
    lead = np.arange(values.shape[1]) * step_h
    ds = xr.Dataset(
        {
            c: (
                ("init_time", "lead_time", "lat", "lon"),
                values[:, :, k],
                {"units": get_variable(c).units, "standard_name": get_variable(c).standard_name},
            )
            for k, c in enumerate(m.channels)
        },
        coords={
            "init_time": np.asarray(inits, dtype="datetime64[ns]"),
            "lead_time": ("lead_time", lead, {"units": "hours"}),
            "lat": ("lat", np.asarray(m.lat), {"units": "degrees_north"}),
            "lon": ("lon", np.asarray(m.lon), {"units": "degrees_east"}),
        },
        attrs={
            "title": "stratocast deterministic forecast",
            "model": card.model_name,
            "checkpoint": str(card.path),
            "stratocast_version": card.stratocast_version,
        },
    )
    ds["orography"] = (("lat", "lon"), np.asarray(m.orography, dtype=np.float32), {"units": "m"})
    return ds
