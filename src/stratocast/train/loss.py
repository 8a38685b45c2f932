"""The training loss: latitude-weighted MSE per rollout step."""

from __future__ import annotations

import torch


def latitude_weights(lat_deg: torch.Tensor) -> torch.Tensor:
    """Area weights normalised to mean 1, as in WeatherBench's latitude-weighted RMSE."""
    w = torch.cos(torch.deg2rad(lat_deg)).clamp_min(0.0)
    return w / w.mean()


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, lat_w: torch.Tensor) -> torch.Tensor:
    """Per time step (B, T, C, H, W) → (T,) latitude-weighted MSE averaged over the rest."""
    err = (pred - target) ** 2 * lat_w[None, None, None, :, None]
    return err.mean(dim=(0, 2, 3, 4))
