"""A model loaded once and kept warm: the compute step of every forecast product.

Loading a checkpoint (unpickling-free reads, building the model, finding its site pairs) costs
far more than one forecast on a small grid, so the operate worker holds one ``WarmModel`` per
checkpoint and every cycle reuses it. It speaks physical units at its edges: observations in,
states out, normalised with the statistics the checkpoint recorded (never the shards').
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from stratocast.loader.dataset import clock_features, normalise_obs
from stratocast.models.base import ForecastModel
from stratocast.models.checkpoint import ModelCard, load_checkpoint
from stratocast.models.rollout import cycle_and_rollout


class WarmModel:
    def __init__(self, checkpoint: Path) -> None:
        t0 = time.perf_counter()
        module, self.card = load_checkpoint(checkpoint)
        self.model: ForecastModel = module  # type: ignore[assignment]
        self.load_seconds = time.perf_counter() - t0
        c = self.card
        self.grid_mean = np.asarray(c.grid_stats.mean, np.float32)[:, None, None]
        self.grid_std = np.asarray(c.grid_stats.std, np.float32)[:, None, None]
        self.obs_mean = np.asarray(c.obs_stats.mean, np.float32)
        self.obs_std = np.asarray(c.obs_stats.std, np.float32)
        self._sites: tuple[bytes, ...] | None = None

    @property
    def step_hours(self) -> int:
        return self.card.time_step_hours

    @property
    def history(self) -> int:
        return self.card.history

    def set_sites(self, lat: np.ndarray, lon: np.ndarray, elevation: np.ndarray) -> None:
        """The observing sites of the windows that follow (their pairs with the grid are
        found once per site set: a cycle with the same network pays nothing)."""
        arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in (lat, lon, elevation)]
        key = tuple(a.tobytes() for a in arrays)
        if key != self._sites:
            self.model.set_observation_sites(*arrays)
            self._sites = key

    @torch.no_grad()
    def forecast_normalised(
        self, obs: np.ndarray, mask: np.ndarray, valid: np.ndarray, n_lead: int
    ) -> np.ndarray:
        """obs, mask: (N, history, S, V) normalised (float32) and 0/1; valid: (N, history +
        n_lead) datetime64 valid times of every state → (N, n_lead + 1, C, H, W) physical,
        from the last analysis on."""
        states = cycle_and_rollout(
            self.model,
            torch.from_numpy(np.ascontiguousarray(obs, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)),
            torch.from_numpy(clock_features(valid.ravel()).reshape(*valid.shape, 2)),
            n_lead,
        )
        out: np.ndarray = states[:, self.history - 1 :].numpy() * self.grid_std + self.grid_mean
        return out

    def forecast(self, obs: np.ndarray, valid: np.ndarray, n_lead: int) -> np.ndarray:
        """``obs``: (N, history, S, V) physical, NaN where missing; as forecast_normalised."""
        normalised, mask = normalise_obs(obs, self.obs_mean, self.obs_std)
        return self.forecast_normalised(normalised, mask.astype(np.float32), valid, n_lead)


__all__ = ["ModelCard", "WarmModel"]
