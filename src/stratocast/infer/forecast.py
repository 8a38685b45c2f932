"""Deterministic forecasts: cycle the analysis through a period, roll out at each init time.

The model is loaded once (warm), the analysis cycles every observation window (the model's
own forecast is the next background, as in operational data assimilation), and at each
initialisation time the analysis is rolled out to the horizon in batches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import xarray as xr
from pydantic import Field, model_validator
from tqdm import tqdm

from stratocast.config import ComponentConfig
from stratocast.infer.writers.zarr_writer import write_zarr
from stratocast.loader.dataset import ShardStore, clock_features
from stratocast.models.base import ForecastModel
from stratocast.shards.layout import ShardError
from stratocast.train.checkpoint import load_checkpoint
from stratocast.vocab.variables import get as get_variable


class ForecastConfig(ComponentConfig):
    start: str = "2000-11-16T00"
    end: str = "2000-12-28T12"
    init_hours: list[int] = Field(default=[0, 12])
    horizon_hours: int = Field(default=72, ge=0)
    spinup_cycles: int = Field(default=8, ge=0)
    batch_size: int = Field(default=16, ge=1)

    @model_validator(mode="after")
    def _check(self) -> ForecastConfig:
        bad = [h for h in self.init_hours if not 0 <= h < 24]
        if bad:
            raise ValueError(f"init_hours must be in 0..23, got {bad}")
        return self


@torch.no_grad()
def run_forecast(
    cfg: ForecastConfig, checkpoint: Path, shards: Path, out: Path, progress: bool = True
) -> Path:
    model_module, _geometry, meta = load_checkpoint(checkpoint)
    model: ForecastModel = model_module  # type: ignore[assignment]
    store = ShardStore(shards)
    m = store.manifest
    step_h = m.time_step_hours
    if step_h != meta["time_step_hours"]:
        raise ShardError(
            f"{checkpoint} was trained with {meta['time_step_hours']} h steps, shards at "
            f"{shards} have {step_h} h steps"
        )
    if cfg.horizon_hours % step_h:
        raise ValueError(f"horizon {cfg.horizon_hours} h is not a multiple of the {step_h} h step")
    n_lead = cfg.horizon_hours // step_h
    times = m.times()
    first = m.time_index(np.datetime64(cfg.start))
    last = m.time_index(np.datetime64(cfg.end))
    begin = max(0, first - cfg.spinup_cycles)
    hours = (times.astype("datetime64[h]").astype(np.int64) % 24).astype(int)
    inits = [i for i in range(first, last + 1) if hours[i] in cfg.init_hours]
    if not inits:
        raise ValueError(f"no init times at hours {cfg.init_hours} in {cfg.start}..{cfg.end}")

    # 1. Cycle the analysis through every window; keep the analyses at init times.
    analyses: dict[int, torch.Tensor] = {}
    background: torch.Tensor | None = None
    for i in tqdm(range(begin, last + 1), desc="cycle", disable=not progress, unit="window"):
        obs = torch.from_numpy(store.obs[i : i + 1])
        mask = torch.from_numpy(store.obs_mask[i : i + 1].astype(np.float32))
        clock = torch.from_numpy(store.clock[i : i + 1])
        analysis = model.analyse(obs, mask, background, clock)
        if i in inits:
            analyses[i] = analysis[0]
        background = model.step(analysis, clock)

    # 2. Roll out from every init time, a batch of init times at a time.
    out_arr = np.empty(
        (len(inits), n_lead + 1, len(m.channels), len(m.lat), len(m.lon)), np.float32
    )
    mean = store.grid_mean[None]
    std = store.grid_std[None]
    for lo in tqdm(
        range(0, len(inits), cfg.batch_size), desc="rollout", disable=not progress, unit="batch"
    ):
        chunk = inits[lo : lo + cfg.batch_size]
        state = torch.stack([analyses[i] for i in chunk])
        out_arr[lo : lo + len(chunk), 0] = state.numpy() * std + mean
        for k in range(1, n_lead + 1):
            # the clock of the state being stepped, init + (k - 1) steps; computed from the
            # valid time because a forecast may run past the end of the shard time axis
            valid = times[chunk] + np.timedelta64((k - 1) * step_h, "h")
            clock = torch.from_numpy(clock_features(valid))
            state = model.step(state, clock)
            out_arr[lo : lo + len(chunk), k] = state.numpy() * std + mean

    lead = np.arange(n_lead + 1) * step_h
    ds = xr.Dataset(
        {
            c: (
                ("init_time", "lead_time", "lat", "lon"),
                out_arr[:, :, k],
                {"units": get_variable(c).units, "standard_name": get_variable(c).standard_name},
            )
            for k, c in enumerate(m.channels)
        },
        coords={
            "init_time": times[inits],
            "lead_time": ("lead_time", lead, {"units": "hours"}),
            "lat": ("lat", np.asarray(m.lat), {"units": "degrees_north"}),
            "lon": ("lon", np.asarray(m.lon), {"units": "degrees_east"}),
        },
        attrs={
            "title": "stratocast deterministic forecast",
            "model": str(meta["model_name"]),
            "checkpoint": str(checkpoint),
            "stratocast_version": str(meta["stratocast_version"]),
        },
    )
    ds["orography"] = (("lat", "lon"), np.asarray(m.orography, dtype=np.float32), {"units": "m"})
    return write_zarr(ds, out)
